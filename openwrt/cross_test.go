package openwrt

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testVersion is what the test builds put into main.version.
const testVersion = "0.0.0+test"

// crossDir holds this test run's cross builds; TestMain removes it.
var crossDir string

func TestMain(m *testing.M) {
	var err error
	crossDir, err = os.MkdirTemp("", "pgwrt-cross-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(crossDir)
	os.Exit(code)
}

var (
	crossMu    sync.Mutex // one cross build at a time: the machine is shared
	crossBuilt = map[string]crossBin{}
)

// crossBin is a pgwrt binary for one architecture.
type crossBin struct {
	path    string
	version string // what "pgwrt version" should print after "pgwrt "; "" = unknown
}

// crossBinary returns ./cmd/pgwrt built for the OpenWrt arch name with the
// flags and tags of openwrt.mk, building it once per test run. With
// PGWRT_CROSS_DIST=dir (e.g. the dist/ of "make cross") it uses
// dir/<arch>/pgwrt instead when that exists. Skipped with -short.
func crossBinary(t *testing.T, name string) crossBin {
	t.Helper()
	if testing.Short() {
		t.Skip("cross build skipped with -short")
	}
	a, ok := Lookup(name)
	if !ok {
		t.Fatalf("unknown arch %q", name)
	}
	if dist := os.Getenv("PGWRT_CROSS_DIST"); dist != "" {
		p := filepath.Join(dist, name, "pgwrt")
		if _, err := os.Stat(p); err == nil {
			return crossBin{path: p}
		}
		t.Logf("PGWRT_CROSS_DIST: no %s, building", p)
	}
	crossMu.Lock()
	defer crossMu.Unlock()
	if b, ok := crossBuilt[name]; ok {
		return b
	}
	out := filepath.Join(crossDir, name, "pgwrt")
	start := time.Now()
	cmd := exec.Command("go", "build", "-tags", RouterTags, "-trimpath", "-ldflags", "-s -w -X main.version="+testVersion, "-o", out, "./cmd/pgwrt")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), a.Env()...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s go build: %v\n%s", strings.Join(a.Env(), " "), err, b)
	}
	t.Logf("built %s in %v", name, time.Since(start).Round(time.Second))
	b := crossBin{path: out, version: testVersion}
	crossBuilt[name] = b
	return b
}

// lockedBuffer collects a process's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// qemuProcess is a cross-built pgwrt running under qemu-user.
type qemuProcess struct {
	*exec.Cmd
	Output *lockedBuffer // stdout and stderr together
	Arch   Arch
	Bin    crossBin
}

// startUnderQEMU starts ./cmd/pgwrt, built for the OpenWrt arch name, under
// qemu-user pinned to the target's CPU, with args, and returns the running
// process. The test's cleanup kills it if it is still running. Skipped
// when qemu-user-static is missing or with -short.
//
// This is the hook for running the router builds against real PostgreSQL:
// start one with "run --uci FILE" (a UCI file whose listen and backend
// ports are the test's free loopback ports), wait for the listener, and
// send queries through it with pgx, exactly as for a native build
// (TestRouterBuildsAgainstPostgreSQL in pgqemu_test.go). qemu gets SIGKILL
// from the kernel when the test binary dies, so none is left behind.
func startUnderQEMU(t *testing.T, name string, args ...string) *qemuProcess {
	t.Helper()
	if testing.Short() {
		t.Skip("qemu skipped with -short")
	}
	a, ok := Lookup(name)
	if !ok {
		t.Fatalf("unknown arch %q", name)
	}
	qemu, err := a.QEMUPath()
	if err != nil {
		t.Skip(err)
	}
	bin := crossBinary(t, name)
	argv := a.QEMUArgs(qemu, bin.path, args...)
	p := &qemuProcess{Cmd: exec.Command(argv[0], argv[1:]...), Output: &lockedBuffer{}, Arch: a, Bin: bin}
	p.Stdout, p.Stderr = p.Output, p.Output
	p.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.Start(); err != nil {
		t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	t.Cleanup(func() {
		if p.ProcessState == nil {
			p.Process.Kill()
			p.Wait()
		}
	})
	return p
}

// wait waits for p to exit, at most d.
func (p *qemuProcess) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		p.Process.Kill()
		<-done
		t.Fatalf("%s did not exit within %v; output:\n%s", p.Arch.Name, d, p.Output)
		return nil
	}
}
