package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"pgwrt/internal/pglab"
)

// waitLog waits until the daemon's log matches re.
func (p *pgwrtProc) waitLog(t *testing.T, re string, d time.Duration) {
	t.Helper()
	rx := regexp.MustCompile(re)
	end := time.Now().Add(d)
	for !rx.MatchString(p.Log()) {
		if time.Now().After(end) {
			t.Fatalf("log never matched %q:\n%s", re, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSIGHUPReload reloads a running daemon, TOML and UCI: a bad file is
// refused with file:line and the old config keeps serving; a good one adds
// a backend — all with a session open in a transaction the whole time.
func TestSIGHUPReload(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := labCluster(t)
	p0, p1 := c.Nodes[0], c.Nodes[1]
	toml := func(extra string, nodes ...*pglab.Node) string {
		var b strings.Builder
		fmt.Fprintf(&b, "listen = \"127.0.0.1:0\"\nhealth_check_password = %q\nhealth_check_period = \"300ms\"\n%s", pglab.SuperPassword, extra)
		for _, n := range nodes {
			fmt.Fprintf(&b, "\n[[backend]]\nname = %q\nhost = %q\nport = %d\n", n.Name, n.Host, n.Port)
		}
		b.WriteString("\n[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"all\"\nmethod = \"password\"\n")
		return b.String()
	}
	uci := func(extra string, nodes ...*pglab.Node) string {
		var b strings.Builder
		fmt.Fprintf(&b, "config pgwrt 'main'\n\toption listen '127.0.0.1:0'\n\toption health_check_password '%s'\n\toption health_check_period '300ms'\n%s", pglab.SuperPassword, extra)
		for _, n := range nodes {
			fmt.Fprintf(&b, "\nconfig backend '%s'\n\toption host '%s'\n\toption port '%d'\n", n.Name, n.Host, n.Port)
		}
		b.WriteString("\nconfig hba\n\toption database 'all'\n\toption user 'all'\n\toption address 'all'\n\toption method 'password'\n")
		return b.String()
	}
	for _, tc := range []struct {
		name, file, flag string
		good             func(string, ...*pglab.Node) string
		bad              string
		badRE            string
	}{
		{"toml", "pgwrt.toml", "-c", toml, "client_wait_timeout = \"soon\"\n", `reload failed.*pgwrt\.toml:\d+: client_wait_timeout: bad duration`},
		{"uci", "pgwrt", "--uci", uci, "\toption max_pool 'many'\n", `reload failed.*pgwrt:\d+: max_pool: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tc.file)
			write := func(s string) {
				if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			write(tc.good("", p0))
			p := startPgwrtArgs(t, pgwrtBinary(t), "run", tc.flag, path)
			ctx := context.Background()
			live := p.connect(t)
			if _, err := live.Exec(ctx, "BEGIN"); err != nil {
				t.Fatal(err)
			}
			// bad config: refused, old one serves on
			write(tc.good(tc.bad, p0))
			p.cmd.Process.Signal(syscall.SIGHUP)
			p.waitLog(t, tc.badRE, 5*time.Second)
			if _, err := live.Exec(ctx, "SELECT 1"); err != nil {
				t.Fatalf("live session after a bad reload: %v", err)
			}
			fresh := p.connect(t)
			fresh.Close(ctx)
			// good config with a second backend
			write(tc.good("", p0, p1))
			p.cmd.Process.Signal(syscall.SIGHUP)
			p.waitLog(t, `msg="config reloaded".*added=\[`+p1.Name+`\]`, 5*time.Second)
			end := time.Now().Add(5 * time.Second)
			for {
				out := p.psql(t, "-At", "-c", "SHOW POOL_NODES")
				if strings.Count(out, "|up|") == 2 && strings.Contains(out, "|standby|") {
					break
				}
				if time.Now().After(end) {
					t.Fatalf("SHOW POOL_NODES after reload:\n%s", out)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if _, err := live.Exec(ctx, "COMMIT"); err != nil {
				t.Fatalf("live transaction across reloads: %v", err)
			}
		})
	}
}
