package main

// systemd integration, seen from outside: the built binary runs with a
// fake NOTIFY_SOCKET (a unixgram socket of the test) and with a listening
// socket handed down as fd 3 (LISTEN_FDS), as systemd would. The same runs
// against a -tags nosystemd build show that the router build ignores all
// of it. No PostgreSQL is needed: the one backend, 127.0.0.1:1, refuses.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// buildPgwrt builds this package with the given build tags ("" for none)
// into a temporary directory and returns the binary's path.
func buildPgwrt(t *testing.T, tags string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the pgwrt binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "pgwrt")
	args := []string{"build", "-o", bin}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command("go", append(args, ".")...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags %q: %v\n%s", tags, err, out)
	}
	return bin
}

// sdConfig is a TOML config listening on listen with one backend that
// refuses connections.
func sdConfig(t *testing.T, listen string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pgwrt.toml")
	cfg := fmt.Sprintf("listen = %q\nhealth_check_period = \"1s\"\n\n[[backend]]\nname = \"pg1\"\nhost = \"127.0.0.1\"\nport = 1\n", listen)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// daemonProc is a running "pgwrt run" whose log the test reads.
type daemonProc struct {
	cmd     *exec.Cmd
	started chan string // the listen= of the "pgwrt started" line
	done    chan struct{}
	waitErr error

	mu  sync.Mutex
	log bytes.Buffer
}

var startedRE = regexp.MustCompile(`msg="pgwrt started".* listen=(\S+)`)

// startDaemon starts cmd (whose stderr must be unset), and stops it with
// SIGKILL when the test ends if it still runs.
func startDaemon(t *testing.T, cmd *exec.Cmd) *daemonProc {
	t.Helper()
	p := &daemonProc{cmd: cmd, started: make(chan string, 1), done: make(chan struct{})}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := startedRE.FindStringSubmatch(sc.Text()); m != nil {
				p.started <- m[1]
			}
		}
		io.Copy(io.Discard, stderr)
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("pgwrt log:\n%s", p.Log())
		}
	})
	return p
}

func (p *daemonProc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// waitStarted returns the address the daemon says it listens on.
func (p *daemonProc) waitStarted(t *testing.T) string {
	t.Helper()
	select {
	case addr := <-p.started:
		return addr
	case <-p.done:
		t.Fatalf("pgwrt exited at start: %v", p.waitErr)
	case <-time.After(20 * time.Second):
		t.Fatal("pgwrt did not start within 20s")
	}
	return ""
}

// stop sends SIGTERM and waits for a clean exit.
func (p *daemonProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitExit(t)
}

// waitExit waits for a clean exit.
func (p *daemonProc) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("pgwrt did not exit within 15s of SIGTERM")
	}
	if p.waitErr != nil {
		t.Fatalf("pgwrt exited with %v after SIGTERM", p.waitErr)
	}
}

// notifySocket is a fake systemd notification socket.
type notifySocket struct {
	path string
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	// A short path: sun_path holds 108 bytes, t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ns := &notifySocket{path: filepath.Join(dir, "notify"), msgs: make(chan string, 1024)}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ns.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(ns.msgs)
				return
			}
			ns.msgs <- string(buf[:n])
		}
	}()
	return ns
}

// next returns the next message that is not only WATCHDOG=1, and how many
// WATCHDOG=1 came before it.
func (ns *notifySocket) next(t *testing.T, d time.Duration) (msg string, pings int) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case m, ok := <-ns.msgs:
			if !ok {
				t.Fatal("notify socket closed")
			}
			if m == "WATCHDOG=1" {
				pings++
				continue
			}
			return m, pings
		case <-deadline:
			t.Fatalf("no notification within %v (%d watchdog pings)", d, pings)
		}
	}
}

// expect waits for the next notification and checks it (see notifyVars).
func (ns *notifySocket) expect(t *testing.T, want ...string) map[string]string {
	t.Helper()
	m, _ := ns.next(t, 15*time.Second)
	return notifyVars(t, m, want...)
}

// notifyVars checks that notification m sets every variable of want (e.g.
// "READY=1") and returns all its variables.
func notifyVars(t *testing.T, m string, want ...string) map[string]string {
	t.Helper()
	vars := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(m), "\n") {
		k, v, _ := strings.Cut(l, "=")
		vars[k] = v
	}
	for _, w := range want {
		k, v, _ := strings.Cut(w, "=")
		if vars[k] != v {
			t.Fatalf("notification %q: want %s", m, w)
		}
	}
	return vars
}

func monotonicUsec(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// TestSystemdNotify runs the daemon as a Type=notify service with
// WatchdogSec: READY=1 once it listens, watchdog pings, RELOADING=1 with
// MONOTONIC_USEC and READY=1 around SIGHUP (a bad config too: the old one
// keeps running), STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	bin := buildPgwrt(t, "")
	ns := newNotifySocket(t)
	path := sdConfig(t, "127.0.0.1:0")
	cmd := exec.Command(bin, "run", "-c", path)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+ns.path, "WATCHDOG_USEC=200000")
	p := startDaemon(t, cmd)
	addr := p.waitStarted(t)

	ready := ns.expect(t, "READY=1")
	if !strings.Contains(ready["STATUS"], addr) {
		t.Errorf("READY=1 with STATUS=%q, want the listen address %s in it", ready["STATUS"], addr)
	}
	// WatchdogSec=200ms: a ping every 100ms.
	time.Sleep(time.Second)

	for _, bad := range []bool{false, true} {
		if bad {
			if err := os.WriteFile(path, []byte("listen = 'x'\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		before := monotonicUsec(t)
		p.cmd.Process.Signal(syscall.SIGHUP)
		m, pings := ns.next(t, 15*time.Second)
		if !bad && pings < 3 {
			t.Errorf("%d watchdog pings before the reload, want about 10", pings)
		}
		vars := notifyVars(t, m, "RELOADING=1")
		usec, err := strconv.ParseInt(vars["MONOTONIC_USEC"], 10, 64)
		if err != nil || usec < before || usec > monotonicUsec(t) {
			t.Errorf("RELOADING=1 with MONOTONIC_USEC=%q, want a CLOCK_MONOTONIC time after %d", vars["MONOTONIC_USEC"], before)
		}
		ns.expect(t, "READY=1")
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	ns.expect(t, "STOPPING=1")
	p.waitExit(t)
	if !strings.Contains(p.Log(), "reload failed; keeping the running config") {
		t.Errorf("the log does not tell of the failed reload")
	}
}

// activationCmd runs bin as systemd would for a socket unit: the listening
// socket as fd 3, LISTEN_FDS=1 and LISTEN_PID set to the pid of bin itself
// (the shell execs it, so $$ is that pid).
func activationCmd(t *testing.T, bin string, ln net.Listener, args ...string) *exec.Cmd {
	t.Helper()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	cmd := exec.Command("sh", append([]string{"-c", `LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"`, bin}, args...)...)
	cmd.Env = append(os.Environ(), "LISTEN_FDS=1")
	cmd.ExtraFiles = []*os.File{f}
	return cmd
}

// TestSocketActivation hands the daemon a listening socket on an address
// it could not bind itself (the test holds it, and listen names it): it
// must serve that socket.
func TestSocketActivation(t *testing.T) {
	bin := buildPgwrt(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := activationCmd(t, bin, ln, "run", "-c", sdConfig(t, ln.Addr().String()))
	p := startDaemon(t, cmd)
	if got := p.waitStarted(t); got != ln.Addr().String() {
		t.Errorf("pgwrt says it listens on %s, want the passed socket's %s", got, ln.Addr())
	}
	if !strings.Contains(p.Log(), "socket activation") {
		t.Errorf("the log does not mention socket activation")
	}
	ln.Close() // only the daemon's copy of the socket is left
	sslRequest(t, ln.Addr().String())
	p.stop(t)
}

// sslRequest sends an SSLRequest to a pgwrt at addr and checks the 'N'.
func sslRequest(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil || b[0] != 'N' {
		t.Fatalf("SSLRequest to %s: %q, %v; want N", addr, b, err)
	}
}

// TestNoSystemdBuild runs the -tags nosystemd build under the same
// environment: it sends no notifications and listens itself, ignoring the
// passed socket.
func TestNoSystemdBuild(t *testing.T) {
	bin := buildPgwrt(t, "nosystemd")
	ns := newNotifySocket(t)
	passed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer passed.Close()
	cmd := activationCmd(t, bin, passed, "run", "-c", sdConfig(t, "127.0.0.1:0"))
	cmd.Env = append(cmd.Env, "NOTIFY_SOCKET="+ns.path, "WATCHDOG_USEC=100000")
	p := startDaemon(t, cmd)
	addr := p.waitStarted(t)
	if addr == passed.Addr().String() {
		t.Fatalf("the nosystemd build serves the passed socket %s", addr)
	}
	sslRequest(t, addr)
	p.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	p.stop(t)
	select {
	case m := <-ns.msgs:
		t.Errorf("the nosystemd build sent %q to NOTIFY_SOCKET", m)
	default:
	}
}
