package patronilab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is one daemon of the lab. A proc started by this process has done,
// closed when its Wait returns; a proc adopted from a state file has only
// its pid and a marker that must appear in its command line, so a pid
// reused by an unrelated process is never signalled.
type proc struct {
	pid    int
	marker string
	done   chan struct{}
}

// spawnSpec says how to start a daemon.
type spawnSpec struct {
	path    string
	args    []string
	env     []string
	dir     string
	logPath string
	cred    *syscall.Credential
	// detach keeps the daemon running after this process dies.
	detach bool
}

// spawn starts a daemon in its own session, with stdout and stderr
// appended to its log file. The file is handed to the child directly, so
// no goroutine of ours copies its output and a CLI may exit.
func spawn(s spawnSpec, marker string) (*proc, error) {
	logf, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== patronilab %s: %s %s\n", time.Now().Format(time.RFC3339Nano), s.path, strings.Join(s.args, " "))

	cmd := exec.Command(s.path, s.args...)
	cmd.Env = s.env
	cmd.Dir = s.dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Credential: s.cred}
	if !s.detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{pid: cmd.Process.Pid, marker: marker, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// adopt returns a proc for a pid read from a state file.
func adopt(pid int, marker string) *proc {
	if pid <= 0 {
		return nil
	}
	return &proc{pid: pid, marker: marker}
}

// alive reports whether the daemon still runs.
func (p *proc) alive() bool {
	if p == nil {
		return false
	}
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	return pidAlive(p.pid) && cmdlineHas(p.pid, p.marker)
}

// signal sends sig to the daemon if it still runs.
func (p *proc) signal(sig syscall.Signal) error {
	if !p.alive() {
		return nil
	}
	err := syscall.Kill(p.pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// wait blocks until the daemon exited or ctx ends.
func (p *proc) wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if p.done != nil {
		select {
		case <-p.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for p.alive() {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// stop sends SIGTERM (after SIGCONT, in case it is frozen), waits up to
// timeout, then kills the daemon's whole process group.
func (p *proc) stop(timeout time.Duration) error {
	if !p.alive() {
		return nil
	}
	_ = p.signal(syscall.SIGCONT)
	if err := p.signal(syscall.SIGTERM); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if p.wait(ctx) == nil {
		return nil
	}
	p.killGroup()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := p.wait(ctx2); err != nil {
		return fmt.Errorf("pid %d survives SIGKILL: %w", p.pid, err)
	}
	return nil
}

// killGroup sends SIGKILL to the process group the daemon leads (it was
// started with setsid, so the group id is its pid).
func (p *proc) killGroup() {
	if !p.alive() {
		return
	}
	if pgid, err := syscall.Getpgid(p.pid); err == nil && pgid == p.pid {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		return
	}
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

// cmdlineHas reports whether pid's command line contains marker.
func cmdlineHas(pid int, marker string) bool {
	if marker == "" {
		return true
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	return strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), marker)
}

type procStat struct {
	state byte
	ppid  int
}

// readStat parses /proc/<pid>/stat. The command name may hold spaces and
// parentheses, so the fields are counted from the last ')'.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("malformed stat of pid %d", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return procStat{}, fmt.Errorf("malformed stat of pid %d", pid)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, err
	}
	return procStat{state: f[0][0], ppid: ppid}, nil
}

// children lists the live processes whose parent is pid.
func children(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := readStat(c); err == nil && st.ppid == pid && st.state != 'Z' {
			out = append(out, c)
		}
	}
	return out
}

// runAs is the OS user the PostgreSQL side of the lab runs as: postgres
// when we are root, ourselves otherwise.
type runAs struct {
	cred     *syscall.Credential
	uid, gid int
}

func lookupRunAs() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return runAs{}, fmt.Errorf("running as root needs the postgres OS user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return runAs{
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true},
		uid:  uid,
		gid:  gid,
	}, nil
}

// chown hands path to the run-as user when we are root.
func (r runAs) chown(path string) error {
	if r.cred == nil {
		return nil
	}
	return os.Chown(path, r.uid, r.gid)
}
