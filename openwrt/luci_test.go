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

// viewHarness runs a LuCI view under node with just enough of LuCI
// stubbed (E, _, String.format, view, rpc, poll, dom, cbi_update_table):
// it renders the view file argv[1] with the status argv[2] (JSON) and prints the page's text, the
// poll interval and the rpc declaration as JSON.
const viewHarness = `
const fs = require('fs');
const src = fs.readFileSync(process.argv[1], 'utf8');
const status = JSON.parse(process.argv[2]);
function E(tag, attrs, children) {
	if (children === undefined && (attrs === null || typeof attrs !== 'object' || Array.isArray(attrs))) { children = attrs; attrs = {}; }
	let kids = [].concat(children === undefined ? [] : children);
	if (Array.isArray(tag)) { kids = tag.concat(kids); tag = 'fragment'; }
	return { tag: tag, attrs: attrs || {}, children: kids };
}
function text(n) {
	if (n == null) return '';
	if (typeof n !== 'object') return String(n);
	return n.children.map(text).join(n.tag === 'tr' || n.tag === 'p' ? ' | ' : ' ') + (n.tag === 'tr' ? '\n' : '');
}
String.prototype.format = function() {
	let i = 0; const args = arguments;
	return this.replace(/%([dst])/g, function(m, t) { const a = args[i++]; return t === 't' ? a + 's' : String(a); });
};
let polled = null, declared = null;
const view = { extend: function(o) { return o; } };
const rpc = { declare: function(d) { declared = d; return function() { return Promise.resolve(status); }; } };
const poll = { add: function(fn, n) { polled = n; } };
const dom = { content: function(node, c) { node.children = [c]; } };
function cbi_update_table(table, rows, placeholder) {
	table.children = table.children.slice(0, 1).concat(rows.length
		? rows.map(function(r) { return E('tr', {}, r.map(function(c) { return E('td', {}, [c]); })); })
		: [placeholder]);
}
const v = new Function('view', 'dom', 'poll', 'rpc', 'E', '_', 'cbi_update_table', src)(
	view, dom, poll, rpc, E, function(s) { return s; }, cbi_update_table);
const page = v.render(status);
console.log(JSON.stringify({ text: text(page), poll: polled, declared: declared }));
`

// TestLuCIStatusView renders the status page under node with LuCI stubbed,
// for a healthy cluster and for a failed status call.
func TestLuCIStatusView(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	view, err := filepath.Abs(filepath.Join(luciApp, "htdocs/luci-static/resources/view/pgwrt/status.js"))
	if err != nil {
		t.Fatal(err)
	}
	render := func(status string) (text string, poll int) {
		t.Helper()
		out, err := exec.Command(node, "-e", viewHarness, view, status).CombinedOutput()
		if err != nil {
			t.Fatalf("render %s: %v\n%s", status, err, out)
		}
		var r struct {
			Text     string
			Poll     int
			Declared struct{ Object, Method string }
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if r.Declared.Object != "pgwrt" || r.Declared.Method != "status" {
			t.Errorf("declared %+v", r.Declared)
		}
		return r.Text, r.Poll
	}
	text, poll := render(`{"epoch":3,"primary":"node2","slots_in_use":2,"max_clients":32,"sessions":2,"backends_open":3,"backends_idle":1,
		"nodes":[{"name":"node1","host":"192.168.9.11","port":5432,"up":true,"role":"standby","replication_lag_bytes":2048,"timeline":4,"last_status_change":"2026-01-02T03:04:05Z"},
		{"name":"node2","host":"fd00::12","port":5432,"up":true,"role":"primary","replication_lag_bytes":-1,"timeline":4,"last_status_change":"0001-01-01T00:00:00Z"},
		{"name":"node3","host":"192.168.9.13","port":5432,"up":false,"role":"unknown","replication_lag_bytes":-1,"timeline":0,"last_error":"connection refused"}]}`)
	for _, want := range []string{
		"Primary | node2", "Client slots in use | 2 / 32", "3 open, 1 idle",
		"node1 | 192.168.9.11:5432 | standby | yes | 2.0 KiB | 4 |",
		"node2 | [fd00::12]:5432 | primary | yes | - | 4 | - | -",
		"node3 | 192.168.9.13:5432 | unknown | no | - | - | - | connection refused",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("page lacks %q:\n%s", want, text)
		}
	}
	if poll != 5 {
		t.Errorf("polls every %d s, want 5", poll)
	}
	text, _ = render(`{"error":"cannot reach pgwrt at 127.0.0.1:5480"}`)
	if !strings.Contains(text, "Cannot read the status of pgwrt: cannot reach pgwrt at 127.0.0.1:5480") || !strings.Contains(text, "No data") {
		t.Errorf("error page:\n%s", text)
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
