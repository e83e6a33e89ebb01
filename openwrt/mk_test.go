package openwrt

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"pgwrt/openwrt/ipk"
)

func needMake(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
}

func mkFile(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(repoRoot, "openwrt", "openwrt.mk"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMakeCrossMatchesArchTable dry-runs "make cross" and checks that
// openwrt.mk builds every arch of the Go table, static, stripped, with the
// same Go settings and the version stamped in.
func TestMakeCrossMatchesArchTable(t *testing.T) {
	needMake(t)
	cmd := exec.Command("make", "-n", "-f", mkFile(t), "cross", "VERSION=1.2.3", "DIST=d")
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make -n cross: %v\n%s", err, out)
	}
	builds := map[string][]string{} // arch -> words of its go build line
	for _, line := range strings.Split(string(out), "\n") {
		w := strings.Fields(line)
		i := slices.Index(w, "build")
		if i < 1 || w[i-1] != "go" {
			continue
		}
		o := slices.Index(w, "-o")
		if o < 0 || o+1 >= len(w) {
			t.Fatalf("go build without -o: %q", line)
		}
		arch := strings.TrimSuffix(strings.TrimPrefix(w[o+1], "d/"), "/pgwrt")
		builds[arch] = w
		if !strings.Contains(line, ` build -tags `+RouterTags+` -trimpath -ldflags "-s -w -X main.version=1.2.3" `) || !strings.HasSuffix(line, " ./cmd/pgwrt") {
			t.Errorf("%s: %q lacks openwrt.mk's flags", arch, line)
		}
	}
	if len(builds) != len(Arches) {
		t.Errorf("make cross builds %d arches, the table has %d:\n%s", len(builds), len(Arches), out)
	}
	for _, a := range Arches {
		w, ok := builds[a.Name]
		if !ok {
			t.Errorf("make cross does not build %s", a.Name)
			continue
		}
		for _, kv := range a.Env() {
			if !slices.Contains(w, kv) {
				t.Errorf("%s: make sets %v, the table wants %s", a.Name, w[:slices.Index(w, "go")], kv)
			}
		}
		for _, kv := range w[:slices.Index(w, "go")] {
			if !slices.Contains(a.Env(), kv) {
				t.Errorf("%s: make sets %s, the table does not", a.Name, kv)
			}
		}
	}
}

// TestMakeVersion runs openwrt.mk's version logic in a scratch git
// repository through the life of a project: no commits, untagged commits,
// a release tag, commits after it, a release candidate.
func TestMakeVersion(t *testing.T) {
	needMake(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	mk := mkFile(t)
	dir := t.TempDir()
	env := append(os.Environ(),
		"HOME="+dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid",
	)
	sh := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	commit := func() string {
		t.Helper()
		sh("git", "commit", "-q", "--allow-empty", "-m", "c")
		return sh("git", "rev-parse", "--short=7", "HEAD")
	}
	check := func(want string, vars ...string) {
		t.Helper()
		got := sh("make", append([]string{"-s", "-f", mk, "openwrt-version"}, vars...)...)
		if got != want {
			t.Errorf("make openwrt-version %v = %q, want %q", vars, got, want)
		}
		// Whatever it says must be a version opkg accepts.
		f := strings.Fields(got)
		p := &ipk.Package{Name: "pgwrt", Version: f[len(f)-1], Architecture: "all", Description: "x",
			Files: []ipk.File{{Path: "/x", Mode: 0o644}}, ModTime: time.Unix(0, 0)}
		if err := p.Validate(); err != nil {
			t.Errorf("%q: %v", got, err)
		}
	}

	check("0.1.0 0.1.0-r1") // not a git repository
	sh("git", "init", "-q")
	check("0.1.0 0.1.0-r1") // no commit yet
	c := commit()
	check("0.1.0+g" + c + " 0.1.0+g" + c + "-r1")
	sh("git", "tag", "v1.2.3")
	check("1.2.3 1.2.3-r1")
	check("1.2.3 1.2.3-r4", "OPENWRT_RELEASE=4")
	commit()
	c = commit()
	check("1.2.3+2.g" + c + " 1.2.3+2.g" + c + "-r1")
	sh("git", "tag", "not-a-version") // only v<digit> tags count
	check("1.2.3+2.g" + c + " 1.2.3+2.g" + c + "-r1")
	commit()
	sh("git", "tag", "v2.0.0-rc1")
	check("2.0.0~rc1 2.0.0~rc1-r1")
	check("9.9.9 9.9.9-r1", "VERSION=9.9.9")
}
