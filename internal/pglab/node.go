package pglab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node is one PostgreSQL server of a cluster.
type Node struct {
	Name    string // pg0, pg1, ...; also its application_name as a standby
	Host    string // always Host
	Port    int
	Dir     string // holds DataDir and LogFile
	DataDir string
	LogFile string // the server's stderr

	c *Cluster

	mu   sync.Mutex
	pid  int             // postmaster we started, 0 if none
	done <-chan struct{} // closed when that postmaster is reaped
}

// timeouts for the methods without a context.
const (
	startTimeout = 60 * time.Second
	stopTimeout  = 30 * time.Second
)

// DSN is a URL for connecting to the node over TCP.
func (n *Node) DSN(user, password, db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     n.Host + ":" + strconv.Itoa(n.Port),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Addr is host:port.
func (n *Node) Addr() string { return n.Host + ":" + strconv.Itoa(n.Port) }

// PID returns the postmaster's process ID, or 0 when the node is not
// running.
func (n *Node) PID() int {
	n.mu.Lock()
	pid, done := n.pid, n.done
	n.mu.Unlock()
	if pid != 0 {
		select {
		case <-done:
		default:
			return pid
		}
	}
	pf, ok := readPidFile(n.DataDir)
	if ok && alive(pf.pid) {
		return pf.pid
	}
	return 0
}

// Running reports whether the node's postmaster is alive (it may be
// frozen).
func (n *Node) Running() bool { return n.PID() != 0 }

// Frozen reports whether the postmaster is stopped by SIGSTOP.
func (n *Node) Frozen() bool {
	pid := n.PID()
	if pid == 0 {
		return false
	}
	p, ok := readProc(pid)
	return ok && p.state == 'T'
}

// Start starts the postmaster and waits until it accepts connections (a
// standby: until it is consistent and accepts read-only connections).
func (n *Node) Start() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	return n.start(ctx)
}

// startNew starts a node that was just made: the port is still free to
// choose, so a port taken by someone else since freePort is retried.
func (n *Node) startNew(ctx context.Context) error {
	var err error
	for range 5 {
		if n.Port, err = freePort(); err != nil {
			return err
		}
		if err = n.setAutoConf(map[string]string{"port": strconv.Itoa(n.Port)}); err != nil {
			return err
		}
		err = n.start(ctx)
		if !errors.Is(err, errPortTaken) {
			return err
		}
		n.c.logf("pglab: %s: port %d taken, trying another", n.Name, n.Port)
	}
	return err
}

var errPortTaken = errors.New("port already in use")

func (n *Node) start(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pf, ok := readPidFile(n.DataDir); ok && alive(pf.pid) {
		return fmt.Errorf("pglab: %s already running (pid %d)", n.Name, pf.pid)
	}
	// A killed postmaster that nobody has reaped yet still answers
	// kill(pid, 0), and PostgreSQL would refuse to start.
	removeStaleLock(filepath.Join(n.DataDir, "postmaster.pid"))
	removeStaleLock(filepath.Join(n.c.SocketDir, fmt.Sprintf(".s.PGSQL.%d.lock", n.Port)))
	log, err := os.OpenFile(n.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close() // the postmaster has its own copy
	if err := n.c.chown(n.LogFile); err != nil {
		return err
	}
	from := fileSize(n.LogFile)
	cmd := n.c.command(nil, "postgres", "-D", n.DataDir)
	cmd.Stdout, cmd.Stderr = log, log
	done, err := launch(cmd, n.c.detach)
	if err != nil {
		return fmt.Errorf("pglab: start %s: %w", n.Name, err)
	}
	pid := cmd.Process.Pid
	n.pid, n.done = pid, done
	for {
		// The pid must match: a killed server leaves a stale
		// postmaster.pid that says "ready".
		if pf, ok := readPidFile(n.DataDir); ok && pf.pid == pid && (pf.status == "ready" || pf.status == "standby") {
			n.c.logf("pglab: %s started on port %d (pid %d)", n.Name, n.Port, pid)
			return nil
		}
		select {
		case <-done:
			tail := tailFile(n.LogFile, from, 20)
			if strings.Contains(tail, "Address already in use") {
				return errPortTaken
			}
			return errTail(fmt.Errorf("pglab: %s exited while starting", n.Name), tail)
		case <-ctx.Done():
			n.killLocked()
			return errTail(fmt.Errorf("pglab: %s did not start: %w", n.Name, ctx.Err()), tailFile(n.LogFile, from, 20))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StopFast stops the node with a fast shutdown (SIGINT: sessions are ended,
// a shutdown checkpoint is written, standbys get all WAL).
func (n *Node) StopFast() error { return n.stop(syscall.SIGINT) }

// StopImmediate stops the node with an immediate shutdown (SIGQUIT: no
// checkpoint; the next start runs crash recovery).
func (n *Node) StopImmediate() error { return n.stop(syscall.SIGQUIT) }

// stop sends sig to a running postmaster (thawing it first) and waits until
// every process of the node is gone; after stopTimeout it kills them.
func (n *Node) stop(sig syscall.Signal) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	pid, done := n.runningLocked()
	if pid == 0 {
		return nil
	}
	w := newWaiter(pid, done, tree(pid)...)
	signalTree(pid, syscall.SIGCONT)
	_ = syscall.Kill(pid, sig)
	if w.wait(stopTimeout) {
		n.c.logf("pglab: %s stopped", n.Name)
		return nil
	}
	n.killLocked()
	return fmt.Errorf("pglab: %s did not stop within %s; killed", n.Name, stopTimeout)
}

// runningLocked returns the live postmaster's pid and, if we started it,
// its done channel.
func (n *Node) runningLocked() (int, <-chan struct{}) {
	if n.pid != 0 {
		select {
		case <-n.done:
		default:
			return n.pid, n.done
		}
	}
	if pf, ok := readPidFile(n.DataDir); ok && alive(pf.pid) {
		return pf.pid, nil
	}
	return 0, nil
}

// Kill sends SIGKILL to the postmaster and every process of the node, as a
// crash or a power cut would end them, and waits until they are gone. The
// next Start runs crash recovery.
func (n *Node) Kill() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.killLocked() {
		return fmt.Errorf("pglab: %s: processes survived SIGKILL", n.Name)
	}
	n.c.logf("pglab: %s killed", n.Name)
	return nil
}

func (n *Node) killLocked() bool {
	pid, done := n.runningLocked()
	if pid == 0 {
		return true
	}
	w := newWaiter(pid, done, killTree(pid)...)
	return w.wait(stopTimeout)
}

// Freeze stops (SIGSTOP) the postmaster and all its processes: the node
// keeps its sockets open but answers nothing, like a hung machine. It
// returns once every process has stopped (a signal is delivered when its
// process next runs, which on a busy machine is not at once).
func (n *Node) Freeze() error {
	pid := n.PID()
	if pid == 0 {
		return fmt.Errorf("pglab: %s is not running", n.Name)
	}
	// The postmaster first, so that it forks nothing we would miss.
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	signalTree(pid, syscall.SIGSTOP)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		running := 0
		for _, q := range tree(pid) {
			if p, ok := readProc(q); ok && p.state != 'T' && p.state != 't' && p.state != 'Z' && p.state != 'X' {
				running++
			}
		}
		if running == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pglab: %s: %d processes still running 5s after SIGSTOP", n.Name, running)
		}
	}
	n.c.logf("pglab: %s frozen", n.Name)
	return nil
}

// Thaw resumes (SIGCONT) a frozen node.
func (n *Node) Thaw() error {
	pid := n.PID()
	if pid == 0 {
		return fmt.Errorf("pglab: %s is not running", n.Name)
	}
	signalTree(pid, syscall.SIGCONT)
	n.c.logf("pglab: %s thawed", n.Name)
	return nil
}

// Promote promotes a standby (pg_ctl promote) and waits until
// pg_is_in_recovery() is false.
func (n *Node) Promote() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := n.c.run(ctx, nil, "pg_ctl", "promote", "-D", n.DataDir, "-w", "-t", "60"); err != nil {
		return err
	}
	for {
		v, err := n.Query(ctx, "SELECT pg_is_in_recovery()")
		if err == nil && v == "f" {
			n.c.logf("pglab: %s promoted", n.Name)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pglab: %s still in recovery after promote (%v): %w", n.Name, err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// reload makes the postmaster reread its configuration (SIGHUP).
func (n *Node) reload() error {
	pid := n.PID()
	if pid == 0 {
		return fmt.Errorf("pglab: %s is not running", n.Name)
	}
	return syscall.Kill(pid, syscall.SIGHUP)
}

// Query runs sql as the superuser on database postgres, through psql over
// the node's unix socket, and returns the first column of the first row as
// text ("" when there is no row; NULL is ""). Booleans come back as "t"/"f".
func (n *Node) Query(ctx context.Context, sql string) (string, error) {
	row, err := n.QueryRow(ctx, sql)
	if err != nil || len(row) == 0 {
		return "", err
	}
	return row[0], nil
}

// QueryRow is Query returning every column of the first row.
func (n *Node) QueryRow(ctx context.Context, sql string) ([]string, error) {
	const fieldSep, recordSep = "\x1f", "\x1e"
	cmd := n.c.command(ctx, "psql", "-X", "-q", "-A", "-t",
		"-F", fieldSep, "-R", recordSep, "-v", "ON_ERROR_STOP=1",
		"-h", n.c.SocketDir, "-p", strconv.Itoa(n.Port), "-U", SuperUser, "-d", "postgres",
		"-c", sql)
	cmd.Env = append(cmd.Env, "PGCONNECT_TIMEOUT=5")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pglab: %s: query %q: %w", n.Name, sql, ctx.Err())
		}
		return nil, fmt.Errorf("pglab: %s: query %q: %w: %s", n.Name, sql, err, strings.TrimSpace(stderr.String()))
	}
	out := strings.TrimSuffix(stdout.String(), "\n")
	if out == "" {
		return nil, nil
	}
	first, _, _ := strings.Cut(out, recordSep)
	return strings.Split(first, fieldSep), nil
}
