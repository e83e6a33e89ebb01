package openwrt

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	hostOnce sync.Once
	hostBin  string
	hostErr  error
)

// hostRouterBinary is ./cmd/pgwrt built for this machine with RouterTags,
// once per test run.
func hostRouterBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds ./cmd/pgwrt; skipped with -short")
	}
	hostOnce.Do(func() {
		hostBin = filepath.Join(crossDir, "host", "pgwrt")
		cmd := exec.Command("go", "build", "-tags", RouterTags, "-o", hostBin, "./cmd/pgwrt")
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			hostErr = fmt.Errorf("go build -tags %s ./cmd/pgwrt: %v\n%s", RouterTags, err, out)
		}
	})
	if hostErr != nil {
		t.Fatal(hostErr)
	}
	return hostBin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestProcdReload runs the router build as procd runs the instance the
// init script describes (command "pgwrt run --uci /etc/config/pgwrt",
// reload_signal HUP), edits the UCI file as "uci commit" would, sends
// SIGHUP, and reads the result the way the LuCI plugin does, with
// "pgwrt status --json --uci FILE". A broken edit keeps the old config
// running. SIGTERM ends it well within term_timeout.
func TestProcdReload(t *testing.T) {
	bin := hostRouterBinary(t)
	uci := filepath.Join(t.TempDir(), "pgwrt")
	httpAddr := freePort(t)
	write := func(backends ...string) {
		t.Helper()
		var b strings.Builder
		fmt.Fprintf(&b, "config pgwrt 'main'\n\toption enabled '1'\n\toption nofile '256'\n\toption listen '127.0.0.1:0'\n\toption http_listen '%s'\n", httpAddr)
		for i, name := range backends { // ports 1, 2, ...: refused
			fmt.Fprintf(&b, "\nconfig backend '%s'\n\toption host '127.0.0.1'\n\toption port '%d'\n", name, i+1)
		}
		if err := os.WriteFile(uci, []byte(b.String()), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	nodes := func() []string {
		t.Helper()
		out, err := exec.Command(bin, "status", "--json", "--uci", uci).Output()
		if err != nil {
			t.Fatalf("pgwrt status --json: %v\n%s", err, out)
		}
		var st struct{ Nodes []struct{ Name string } }
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatalf("pgwrt status --json: %v\n%s", err, out)
		}
		var names []string
		for _, n := range st.Nodes {
			names = append(names, n.Name)
		}
		return names
	}
	waitNodes := func(want string) {
		t.Helper()
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			got := strings.Join(nodes(), " ")
			if got == want {
				return
			}
			if time.Now().After(end) {
				t.Fatalf("nodes %q, want %q", got, want)
			}
		}
	}

	write("node1")
	cmd := exec.Command(bin, "run", "--uci", uci)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var log lockedBuffer
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			log.Write([]byte(sc.Text() + "\n"))
			if strings.Contains(sc.Text(), `msg="pgwrt started"`) {
				once.Do(func() { close(started) })
			}
		}
		io.Copy(io.Discard, stderr)
		done <- cmd.Wait()
	}()
	defer func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("pgwrt log:\n%s", log.String())
		}
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("pgwrt exited at start: %v\n%s", err, log.String())
	case <-time.After(15 * time.Second):
		t.Fatal("pgwrt did not start")
	}
	waitNodes("node1")

	write("node1", "node2")
	cmd.Process.Signal(syscall.SIGHUP)
	waitNodes("node1 node2")

	if err := os.WriteFile(uci, []byte("config pgwrt 'main'\n\toption nofile 'many'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if !strings.Contains(log.String(), "reload failed; keeping the running config") {
		t.Errorf("no reload failure logged for a broken file")
	}
	write("node1", "node2") // status reads http_listen from the file
	if got := strings.Join(nodes(), " "); got != "node1 node2" {
		t.Errorf("after a broken reload: nodes %q, want the old config's", got)
	}

	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
		t.Logf("stopped %v after SIGTERM (term_timeout 10s)", time.Since(start).Round(time.Millisecond))
	case <-time.After(10 * time.Second):
		t.Fatal("pgwrt still running 10s (term_timeout) after SIGTERM")
	}
}
