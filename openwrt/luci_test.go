package openwrt

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var luciApp = filepath.Join(repoRoot, "openwrt", "luci-app-pgwrt")

func readJSON(t *testing.T, rel string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(luciApp, rel))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
}

// TestLuCIAppFiles: menu.d and acl.d parse, and they, the view and the
// rpcd plugin agree on names: the menu's view exists, the menu depends on
// the ACL that grants ubus pgwrt.status and uci pgwrt, and the view calls
// that very object and method.
func TestLuCIAppFiles(t *testing.T) {
	var menu map[string]struct {
		Title   string
		Order   int
		Action  struct{ Type, Path string }
		Depends struct {
			ACL []string
			UCI map[string]bool
		}
	}
	readJSON(t, "root/usr/share/luci/menu.d/luci-app-pgwrt.json", &menu)
	top, ok := menu["admin/services/pgwrt"]
	if !ok || !slices.Contains(top.Depends.ACL, "luci-app-pgwrt") || !top.Depends.UCI["pgwrt"] {
		t.Errorf("menu admin/services/pgwrt: %+v, want it to depend on acl luci-app-pgwrt and uci pgwrt", top)
	}
	st, ok := menu["admin/services/pgwrt/status"]
	if !ok || st.Action.Type != "view" || st.Action.Path != "pgwrt/status" {
		t.Fatalf("menu admin/services/pgwrt/status: %+v", st)
	}
	view := filepath.Join(luciApp, "htdocs/luci-static/resources/view", st.Action.Path+".js")
	js, err := os.ReadFile(view)
	if err != nil {
		t.Fatalf("the menu's view: %v", err)
	}

	var acl map[string]struct {
		Description string
		Read        struct {
			Ubus map[string][]string
			UCI  []string
		}
		Write struct{ UCI []string }
	}
	readJSON(t, "root/usr/share/rpcd/acl.d/luci-app-pgwrt.json", &acl)
	a, ok := acl["luci-app-pgwrt"]
	if !ok || !slices.Contains(a.Read.Ubus["pgwrt"], "status") || !slices.Contains(a.Read.UCI, "pgwrt") || !slices.Contains(a.Write.UCI, "pgwrt") {
		t.Errorf("acl luci-app-pgwrt: %+v", a)
	}

	decl := regexp.MustCompile(`rpc\.declare\(\{\s*object:\s*'([^']+)',\s*method:\s*'([^']+)'`).FindSubmatch(js)
	if decl == nil || string(decl[1]) != "pgwrt" || string(decl[2]) != "status" {
		t.Errorf("%s does not rpc.declare object 'pgwrt', method 'status'", view)
	}
	for _, req := range []string{"view", "rpc", "poll"} {
		if !strings.Contains(string(js), "'require "+req+"';") {
			t.Errorf("%s lacks 'require %s'", view, req)
		}
	}

	// LuCI loads a view as the body of a function (it ends in a
	// top-level return); check it parses as one.
	node, err := exec.LookPath("node")
	if err != nil {
		t.Log("node not installed: the view's syntax is not checked")
		return
	}
	wrapped := filepath.Join(t.TempDir(), "status.js")
	if err := os.WriteFile(wrapped, []byte("(function() {\n"+string(js)+"\n});\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(node, "--check", wrapped).CombinedOutput(); err != nil {
		t.Errorf("%s: %v\n%s", view, err, out)
	}
}

// TestRPCDPlugin runs the rpcd exec plugin as rpcd does ("list", then
// "call status" with the arguments on stdin), under /bin/sh and busybox
// ash, with a stand-in pgwrt first on PATH.
func TestRPCDPlugin(t *testing.T) {
	plugin, err := filepath.Abs(filepath.Join(luciApp, "root/usr/libexec/rpcd/pgwrt"))
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(plugin); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("%s is not executable: %v", plugin, err)
	}
	const status = `{"epoch":3,"primary":"node2","nodes":[{"name":"node1","role":"standby"},{"name":"node2","role":"primary"}]}`
	stub := func(t *testing.T, body string) (dir string) {
		dir = t.TempDir()
		script := "#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\n" + body
		if err := os.WriteFile(filepath.Join(dir, "pgwrt"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	// rpc runs the plugin; pathDir goes first on PATH.
	rpc := func(t *testing.T, sh []string, pathDir string, args ...string) map[string]any {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, sh[0], append(append(slices.Clone(sh[1:]), plugin), args...)...)
		cmd.Env = append(os.Environ(), "PATH="+pathDir+":/usr/bin:/bin")
		cmd.Stdin = strings.NewReader("{}")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%v %v: %v\n%s", sh, args, err, out)
		}
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%v %v: not a JSON object: %v\n%s", sh, args, err, out)
		}
		return v
	}
	for _, sh := range shells(t) {
		t.Run(filepath.Base(sh[0]), func(t *testing.T) {
			if got := rpc(t, sh, t.TempDir(), "list"); len(got) != 1 || got["status"] == nil {
				t.Errorf("list: %v, want {\"status\": {}}", got)
			}

			dir := stub(t, "echo '"+status+"'\n")
			got := rpc(t, sh, dir, "call", "status")
			if got["primary"] != "node2" || len(got["nodes"].([]any)) != 2 {
				t.Errorf("call status: %v", got)
			}
			if args, _ := os.ReadFile(filepath.Join(dir, "args")); strings.TrimSpace(string(args)) != "status --json --timeout 3s" {
				t.Errorf("pgwrt was run with %q", args)
			}

			// pgwrt status --json fails with a JSON error and exit 1.
			dir = stub(t, "echo '{\"error\":\"cannot reach pgwrt at 127.0.0.1:5480\"}'\nexit 1\n")
			if got := rpc(t, sh, dir, "call", "status"); got["error"] != "cannot reach pgwrt at 127.0.0.1:5480" {
				t.Errorf("failing pgwrt: %v", got)
			}
			dir = stub(t, "echo 'Segmentation fault' >&2\nexit 139\n")
			if got := rpc(t, sh, dir, "call", "status"); got["error"] != "pgwrt status gave no answer" {
				t.Errorf("crashing pgwrt: %v", got)
			}
			if _, err := os.Stat("/usr/sbin/pgwrt"); err != nil {
				if got := rpc(t, sh, t.TempDir(), "call", "status"); got["error"] != "pgwrt is not installed" {
					t.Errorf("no pgwrt: %v", got)
				}
			}
			if got := rpc(t, sh, dir, "call", "nope"); got["error"] != "unknown method" {
				t.Errorf("call nope: %v", got)
			}
		})
	}
}
