package main

// What a router build of pgwrt may contain. The OpenWrt packages are built
// with openwrt.RouterTags; flash is 8 to 16 MB, so every heavy package that
// slips in is a regression: net/http's server (2.3 MB of a mipsle binary),
// crypto/tls, the TOML decoder, go-systemd.

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pgwrt/openwrt"
)

// goList runs "go list -deps" on this package for a linux/mipsle router
// build and returns each package with its imports.
func goList(t *testing.T, tags string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-tags", tags, "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=mipsle", "GOMIPS=softfloat")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		deps[f[0]] = f[1:]
	}
	return deps
}

// TestRouterDeps: the router build imports no go-systemd, and the heavy
// packages are imported only by the packages listed here, whose use of
// them is dead code the linker drops (TestRouterSymbols checks that).
func TestRouterDeps(t *testing.T) {
	deps := goList(t, openwrt.RouterTags)
	for p := range deps {
		if strings.HasPrefix(p, "github.com/coreos/go-systemd") {
			t.Errorf("-tags %s imports %s", openwrt.RouterTags, p)
		}
	}
	allowed := map[string][]string{
		// metrics' push.go (InitPush…, never called) imports net/http,
		// and with it crypto/tls and crypto/x509.
		"net/http":    {"github.com/VictoriaMetrics/metrics"},
		"crypto/tls":  {},
		"crypto/x509": {},
		// config.LoadTOML, which a notoml build never calls.
		"github.com/BurntSushi/toml": {"pgwrt/config"},
	}
	for p, imports := range deps {
		if isStd(p) {
			continue
		}
		for _, imp := range imports {
			if ok, heavy := allowed[imp]; heavy && !slices.Contains(ok, p) {
				t.Errorf("%s imports %s (in -tags %s): the router build should not carry it", p, imp, openwrt.RouterTags)
			}
		}
	}
	if testing.Verbose() {
		t.Logf("-tags %s: %d packages", openwrt.RouterTags, len(deps))
	}
}

// isStd reports whether p is a standard library package (no dot in its
// first path element; the module's own packages start with "pgwrt/").
func isStd(p string) bool {
	first, _, _ := strings.Cut(p, "/")
	return !strings.Contains(first, ".") && first != "pgwrt"
}

// TestRouterSymbols links the router build (for the host, not stripped)
// and looks at what is really in it.
func TestRouterSymbols(t *testing.T) {
	bin := buildPgwrt(t, openwrt.RouterTags)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []string{
		"net/http.(*Server)",
		"net/http.(*conn)",
		"net/http.(*Transport)",
		"net/http.(*Client)",
		"crypto/tls.(*Conn)",
		"crypto/x509.(*Certificate).Verify",
		"github.com/BurntSushi/toml.(*parser)",
		"github.com/BurntSushi/toml.(*lexer)",
		"github.com/coreos/go-systemd",
		// "pgwrt status" prints the daemon's /status.txt and decodes no
		// JSON: the decoder and time.Parse would add 190 KB.
		"encoding/json.(*decodeState)",
	}
	exact := []string{"time.Parse", "time.parse"}
	found := map[string]int{}
	for _, s := range syms {
		for _, p := range forbidden {
			if strings.HasPrefix(s.Name, p) {
				found[p]++
			}
		}
		if slices.Contains(exact, s.Name) {
			found[s.Name]++
		}
	}
	forbidden = append(forbidden, exact...)
	for _, p := range forbidden {
		if found[p] > 0 {
			t.Errorf("the -tags %s build links %d symbols %s…", openwrt.RouterTags, found[p], p)
		}
	}
	// The guard must see something: the status server and UCI are in.
	for _, want := range []string{"main.(*httpServer).exchange", "pgwrt/config.LoadUCI"} {
		if !slices.ContainsFunc(syms, func(s elf.Symbol) bool { return s.Name == want }) {
			t.Errorf("no symbol %s in %s", want, filepath.Base(bin))
		}
	}
}
