package openwrt

import (
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"pgwrt/config"
)

// TestDefaultConfigPassesCheck runs "pgwrt check --uci" (a host router
// build of ./cmd/pgwrt) on the /etc/config/pgwrt the package installs, including
// enabled and nofile, the options only the init script reads: the daemon's
// loader checks and skips them.
func TestDefaultConfigPassesCheck(t *testing.T) {
	shipped := filepath.Join(repoRoot, "openwrt", "files", "pgwrt.config")
	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	for _, opt := range []string{"enabled", "nofile"} {
		if !regexp.MustCompile(`(?m)^\toption ` + opt + ` '`).Match(b) {
			t.Errorf("%s: no option %s in config pgwrt 'main'", shipped, opt)
		}
	}
	out, err := exec.Command(hostRouterBinary(t), "check", "--uci", shipped).CombinedOutput()
	if err != nil {
		t.Fatalf("pgwrt check --uci %s: %v\n%s", shipped, err, out)
	}
	if !strings.Contains(string(out), ": ok (3 backends)") {
		t.Errorf("pgwrt check --uci %s: %s", shipped, out)
	}
}

// TestDefaultConfigServesStatus: the shipped config turns the status server
// on, on loopback only: "pgwrt status" and the LuCI page need /status, and
// nothing outside the router should reach it unasked.
func TestDefaultConfigServesStatus(t *testing.T) {
	cfg, err := config.LoadUCI(filepath.Join(repoRoot, "openwrt", "files", "pgwrt.config"))
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(cfg.HTTPListen)
	if err != nil {
		t.Fatalf("http_listen %q: %v", cfg.HTTPListen, err)
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		t.Errorf("http_listen %q is not a loopback address", cfg.HTTPListen)
	}
}
