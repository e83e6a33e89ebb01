package pglab

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procInfo is one line of /proc/PID/stat, the parts we need.
type procInfo struct {
	pid, ppid, pgrp int
	state           byte // R, S, D, T (stopped), Z (zombie), ...
}

// readProc reads /proc/PID/stat; ok is false when the process is gone.
func readProc(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	return parseStat(b)
}

// parseStat parses "pid (comm) state ppid pgrp ...". comm may hold spaces
// and parentheses, so the fields are read after the last ')'.
func parseStat(b []byte) (procInfo, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:bytes.IndexByte(b, ' ')])))
	if err != nil {
		return procInfo{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 || len(f[0]) != 1 {
		return procInfo{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return procInfo{}, false
	}
	return procInfo{pid: pid, ppid: ppid, pgrp: pgrp, state: f[0][0]}, true
}

// allProcs lists every process on the machine.
func allProcs() []procInfo {
	ents, _ := os.ReadDir("/proc")
	ps := make([]procInfo, 0, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			ps = append(ps, p)
		}
	}
	return ps
}

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	p, ok := readProc(pid)
	return ok && p.state != 'Z'
}

// tree returns the live processes of a node: the postmaster pid and its
// descendants, postmaster first. PostgreSQL puts each child in a session of
// its own, so the process group of the postmaster is not enough. Once the
// postmaster is dead its children are orphans and tree no longer finds them:
// take the list before killing it.
func tree(pid int) []int {
	if !alive(pid) {
		return nil
	}
	children := map[int][]int{}
	for _, p := range allProcs() {
		if p.state != 'Z' {
			children[p.ppid] = append(children[p.ppid], p.pid)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// signalTree sends sig to every process of the node whose postmaster is pid.
// It scans twice: a child forked while the first pass ran is caught by the
// second.
func signalTree(pid int, sig syscall.Signal) {
	for range 2 {
		for _, q := range tree(pid) {
			_ = syscall.Kill(q, sig)
		}
	}
}

// killTree kills the postmaster pid and all its processes: it stops the
// postmaster first so that it forks no more, takes the list, then kills.
// It returns every process it killed.
func killTree(pid int) []int {
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	pids := tree(pid)
	for _, q := range pids {
		_ = syscall.Kill(q, syscall.SIGKILL)
	}
	return pids
}

// waiter waits for the end of a node's processes. It remembers every
// process it has seen in the tree, so orphans left when the postmaster
// dies first are waited for too.
type waiter struct {
	pid  int
	done <-chan struct{} // closed when the postmaster is reaped; may be nil
	seen map[int]bool
}

func newWaiter(pid int, done <-chan struct{}, known ...int) *waiter {
	w := &waiter{pid: pid, done: done, seen: map[int]bool{}}
	for _, q := range known {
		w.seen[q] = true
	}
	return w
}

// gone reports whether the postmaster and every process seen so far are
// gone.
func (w *waiter) gone() bool {
	for _, q := range tree(w.pid) {
		w.seen[q] = true
	}
	postmasterGone := !alive(w.pid)
	if w.done != nil {
		select {
		case <-w.done:
			postmasterGone = true
		default:
			postmasterGone = false
		}
	}
	if !postmasterGone {
		return false
	}
	for q := range w.seen {
		if alive(q) {
			return false
		}
	}
	return true
}

// wait waits until gone or the timeout passes.
func (w *waiter) wait(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !w.gone() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// removeStaleLock removes a PostgreSQL lock file (postmaster.pid or a
// socket's .lock) whose process is dead or a zombie.
func removeStaleLock(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err == nil && pid > 0 && alive(pid) {
		return
	}
	_ = os.Remove(path)
}

// pidFile is what postmaster.pid says: line 1 is the postmaster's PID and
// line 8 its status ("starting", "stopping", "ready", "standby").
type pidFile struct {
	pid    int
	status string
}

func readPidFile(dataDir string) (pidFile, bool) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return pidFile{}, false
	}
	lines := strings.Split(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return pidFile{}, false
	}
	pf := pidFile{pid: pid}
	if len(lines) >= 8 {
		pf.status = strings.TrimSpace(lines[7])
	}
	return pf, true
}

// launch starts cmd. An attached process is the leader of a new process
// group and gets SIGKILL when the thread that started it exits; the thread
// is locked to a goroutine that lives until the process is reaped, so that
// is when this process exits. A detached process is the leader of a new
// session and outlives this process. done is closed once cmd is reaped.
func launch(cmd *exec.Cmd, detach bool) (done <-chan struct{}, err error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	ch := make(chan struct{})
	if detach {
		cmd.SysProcAttr.Setsid = true
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		go func() { _ = cmd.Wait(); close(ch) }()
		return ch, nil
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the starting OS thread exits, not the
		// process: keep this thread until the child is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(ch)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return ch, nil
}

// tailFile returns the last n lines of a file from offset on, for error
// messages.
func tailFile(path string, from int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if from > 0 && from <= int64(len(b)) {
		b = b[from:]
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// errTail wraps err with the tail of a log, if there is one.
func errTail(err error, tail string) error {
	if tail == "" {
		return err
	}
	return fmt.Errorf("%w\n--- log ---\n%s", err, tail)
}
