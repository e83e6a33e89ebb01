package patronilab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrMissingBinary is wrapped by Start when Patroni, etcd or PostgreSQL is
// not installed.
var ErrMissingBinary = errors.New("patronilab: binary missing")

// Cluster is a running lab. Its exported fields are what the state file
// holds.
type Cluster struct {
	BaseDir   string         `json:"base_dir"`
	EtcdToken string         `json:"etcd_token"`
	Options   Options        `json:"options"`
	Etcd      []*EtcdMember  `json:"etcd"`
	Nodes     []*PatroniNode `json:"nodes"`

	ra runAs
	mu sync.Mutex // serialises starting and stopping processes
}

// resolveBinaries fills in the binary paths and checks they exist.
func (o *Options) resolveBinaries() error {
	var missing []string
	look := func(p *string, name string) {
		if *p == "" {
			*p = name
		}
		path, err := exec.LookPath(*p)
		if err != nil {
			missing = append(missing, name)
			return
		}
		*p = path
	}
	look(&o.Patroni, "patroni")
	look(&o.Patronictl, "patronictl")
	look(&o.Etcd, "etcd")
	for _, b := range []string{"postgres", "initdb", "pg_ctl", "pg_basebackup", "pg_rewind", "psql"} {
		if _, err := os.Stat(filepath.Join(o.PGBinDir, b)); err != nil {
			missing = append(missing, filepath.Join(o.PGBinDir, b))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrMissingBinary, strings.Join(missing, ", "))
	}
	return nil
}

// Start starts a lab and returns when a leader exists, its PostgreSQL is a
// primary and every other node streams from it. On failure it stops what
// it started and the error carries the tails of the logs; the base
// directory stays for inspection.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	o = o.withDefaults()
	if err := o.resolveBinaries(); err != nil {
		return nil, err
	}
	ra, err := lookupRunAs()
	if err != nil {
		return nil, err
	}
	base := o.BaseDir
	if base == "" {
		if base, err = os.MkdirTemp("", "patronilab-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, err
	}
	if base, err = filepath.Abs(base); err != nil {
		return nil, err
	}
	// The postgres user must reach its node directories.
	if err := os.Chmod(base, 0o755); err != nil {
		return nil, err
	}
	o.BaseDir = base

	ports, err := freePorts(2*o.EtcdMembers + 2*o.Nodes)
	if err != nil {
		return nil, err
	}
	token := make([]byte, 6)
	_, _ = rand.Read(token)
	c := &Cluster{
		BaseDir:   base,
		EtcdToken: "patronilab-" + hex.EncodeToString(token),
		Options:   o,
		Etcd:      etcdMembers(base, ports[:2*o.EtcdMembers]),
		Nodes:     patroniNodes(base, ports[2*o.EtcdMembers:], o.PGBinDir),
		ra:        ra,
	}
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, o.StartTimeout)
	defer cancel()
	if err := c.start(ctx); err != nil {
		stopErr := c.Stop()
		return nil, fmt.Errorf("patronilab: start in %s: %w (stop: %v)\n%s", base, err, stopErr, c.LogTails(20))
	}
	o.logf("patronilab: cluster up in %s (%s)", time.Since(began).Round(time.Millisecond), base)
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	o := &c.Options
	cluster := initialCluster(c.Etcd)
	for _, m := range c.Etcd {
		if err := m.start(o, c.EtcdToken, cluster); err != nil {
			return err
		}
	}
	for _, m := range c.Etcd {
		if err := m.waitHealthy(ctx); err != nil {
			return err
		}
	}
	o.logf("patronilab: etcd up: %s", c.EtcdEndpoints())

	script := filepath.Join(c.BaseDir, "post_bootstrap.sh")
	if err := os.WriteFile(script, []byte(postBootstrapScript(o.PGBinDir)), 0o755); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := n.prepare(o, c.ra, c.Etcd, script); err != nil {
			return err
		}
		if err := n.start(o, c.ra); err != nil {
			return err
		}
	}
	if err := c.Save(); err != nil {
		return err
	}
	if _, err := c.WaitHealthy(ctx); err != nil {
		return err
	}
	return nil
}

// EtcdEndpoints lists the etcd client URLs, comma separated (etcdctl's
// --endpoints form).
func (c *Cluster) EtcdEndpoints() string {
	urls := make([]string, len(c.Etcd))
	for i, m := range c.Etcd {
		urls[i] = m.ClientURL()
	}
	return strings.Join(urls, ",")
}

// Node returns the node called name, or nil.
func (c *Cluster) Node(name string) *PatroniNode {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Stop stops every process of the lab: the Patroni daemons first (each
// stops its PostgreSQL), then any postmaster left behind, then etcd
// (SIGKILL). It
// removes the state file and keeps the logs. Stop may be called twice.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	began := time.Now()
	defer func() { c.Options.logf("patronilab: stopped in %s", time.Since(began).Round(time.Millisecond)) }()
	timeout := c.Options.StopTimeout
	var (
		wg   sync.WaitGroup
		emu  sync.Mutex
		errs []error
	)
	addErr := func(err error) {
		if err != nil {
			emu.Lock()
			errs = append(errs, err)
			emu.Unlock()
		}
	}
	for _, n := range c.Nodes {
		_ = n.Thaw() // a frozen postmaster would hold up Patroni's shutdown
		wg.Add(1)
		go func() {
			defer wg.Done()
			addErr(n.proc.stop(timeout))
		}()
	}
	wg.Wait()
	for _, n := range c.Nodes {
		addErr(n.killPostmaster(10 * time.Second))
	}
	// etcd is crash safe and its data dies with the lab. SIGTERM would
	// make the raft leader try to hand over leadership to members that are
	// stopping too, which costs seconds.
	for _, m := range c.Etcd {
		m.proc.killGroup()
	}
	for _, m := range c.Etcd {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := m.proc.wait(ctx); err != nil {
			addErr(fmt.Errorf("%s survives SIGKILL", m.Name))
		}
		cancel()
	}
	if err := os.Remove(c.statePath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		addErr(err)
	}
	return errors.Join(errs...)
}

// killPostmaster kills a postmaster that outlived its Patroni, with its
// children, and waits for it to go.
func (n *PatroniNode) killPostmaster(timeout time.Duration) error {
	pid, err := n.PostmasterPID()
	if err != nil {
		return nil // not running
	}
	pm := adopt(pid, n.DataDir)
	kids := children(pid)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := pm.wait(ctx); err != nil {
		return fmt.Errorf("%s: postmaster %d survives SIGKILL", n.Name, pid)
	}
	return nil
}

// Leader returns the node holding the leader key. Its PostgreSQL may not
// be a primary yet; WaitLeader waits for that.
func (c *Cluster) Leader(ctx context.Context) (*PatroniNode, error) {
	s, err := c.ClusterStatus(ctx)
	if err != nil {
		return nil, err
	}
	l := s.Leader()
	if l == nil {
		return nil, errors.New("patronilab: no leader")
	}
	n := c.Node(l.Name)
	if n == nil {
		return nil, fmt.Errorf("patronilab: leader %q is not a lab node", l.Name)
	}
	return n, nil
}

// pollInterval is how often the Wait methods look.
const pollInterval = 200 * time.Millisecond

// WaitLeader waits until a node other than notName (any node, if notName
// is empty) holds the leader key and its PostgreSQL runs as a primary.
func (c *Cluster) WaitLeader(ctx context.Context, notName string) (*PatroniNode, error) {
	var last error
	for {
		n, err := c.Leader(ctx)
		switch {
		case err != nil:
			last = err
		case n.Name == notName:
			last = fmt.Errorf("%s still leads", n.Name)
		default:
			s, err := n.Status(ctx)
			if err == nil && s.IsPrimary() {
				return n, nil
			}
			if err != nil {
				last = err
			} else {
				last = fmt.Errorf("leader %s: postgres %s as %s", n.Name, s.State, s.Role)
			}
		}
		if err := sleepCtx(ctx, pollInterval); err != nil {
			return nil, fmt.Errorf("patronilab: wait for leader: %v: %w", last, err)
		}
	}
}

// WaitHealthy waits until a leader's PostgreSQL is a primary and every
// other node runs and streams from it. It fails at once if a node's
// Patroni is not running.
func (c *Cluster) WaitHealthy(ctx context.Context) (*PatroniNode, error) {
	var last error
	stuck := map[string]time.Time{} // replica → since when it runs without streaming
	reinit := map[string]bool{}
	for {
		l, err := c.healthy(ctx)
		if err == nil {
			return l, nil
		}
		if errors.Is(err, errNodeDown) {
			return nil, fmt.Errorf("patronilab: wait for healthy cluster: %w", err)
		}
		// A replica that runs but does not stream from the leader for a
		// minute will not by itself: after a frozen leader comes back and
		// takes the leader key again, a replica that followed the interim
		// leader can be left on a timeline it cannot rewind from. An
		// operator reinitialises it; so does the lab, once per wait.
		var ns *notStreamingError
		if errors.As(err, &ns) {
			if since, ok := stuck[ns.node]; !ok {
				stuck[ns.node] = time.Now()
			} else if time.Since(since) > reinitStuckAfter && !reinit[ns.node] {
				reinit[ns.node] = true
				out, rerr := c.Patronictl(ctx, "reinit", Scope, ns.node, "--force")
				c.Options.logf("patronilab: %s did not stream from %s for %s; patronictl reinit: %v %s", ns.node, ns.leader, reinitStuckAfter, rerr, strings.TrimSpace(out))
			}
		}
		last = err
		if err := sleepCtx(ctx, pollInterval); err != nil {
			return nil, fmt.Errorf("patronilab: wait for healthy cluster: %v: %w", last, err)
		}
	}
}

// reinitStuckAfter is how long WaitHealthy lets a replica run without
// streaming before it reinitialises it.
const reinitStuckAfter = 60 * time.Second

// notStreamingError: a running replica does not stream from the leader.
type notStreamingError struct{ node, leader string }

func (e *notStreamingError) Error() string {
	return fmt.Sprintf("%s does not stream from %s", e.node, e.leader)
}

// errNodeDown ends WaitHealthy early: a node whose Patroni exited will not
// stream again by itself.
var errNodeDown = errors.New("Patroni is not running")

func (c *Cluster) healthy(ctx context.Context) (*PatroniNode, error) {
	for _, n := range c.Nodes {
		if !n.Running() {
			return nil, fmt.Errorf("%s: %w; see %s", n.Name, errNodeDown, n.LogPath)
		}
	}
	l, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	s, err := l.Status(ctx)
	if err != nil {
		return nil, err
	}
	if !s.IsPrimary() {
		return nil, fmt.Errorf("leader %s: postgres %s as %s", l.Name, s.State, s.Role)
	}
	cs, err := c.ClusterStatus(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range c.Nodes {
		if n == l {
			continue
		}
		if m := cs.Member(n.Name); m == nil || m.State != "running" {
			return nil, fmt.Errorf("%s not running", n.Name)
		}
		streaming := false
		for _, r := range s.Replication {
			if r.ApplicationName == n.Name && r.State == "streaming" {
				streaming = true
			}
		}
		if !streaming {
			return nil, &notStreamingError{node: n.Name, leader: l.Name}
		}
	}
	return l, nil
}

// Switchover asks Patroni to hand leadership to candidate (any healthy
// replica, if empty) and returns when the new leader's PostgreSQL is a
// primary. The old leader rejoins as a replica later; WaitHealthy waits
// for that.
func (c *Cluster) Switchover(ctx context.Context, candidate string) error {
	l, err := c.Leader(ctx)
	if err != nil {
		return err
	}
	if candidate == l.Name {
		return fmt.Errorf("patronilab: %s already leads", candidate)
	}
	if candidate != "" && c.Node(candidate) == nil {
		return fmt.Errorf("patronilab: no node %q", candidate)
	}
	req := map[string]string{"leader": l.Name}
	if candidate != "" {
		req["candidate"] = candidate
	}
	began := time.Now()
	b, err := rest(ctx, http.MethodPost, l.RESTURL()+"/switchover", req, nil, false)
	if err != nil {
		return fmt.Errorf("patronilab: switchover %s -> %q: %w", l.Name, candidate, err)
	}
	n, err := c.WaitLeader(ctx, l.Name)
	if err != nil {
		return err
	}
	if candidate != "" && n.Name != candidate {
		return fmt.Errorf("patronilab: switchover went to %s, not %s (%s)", n.Name, candidate, b)
	}
	c.Options.logf("patronilab: switchover %s -> %s in %s", l.Name, n.Name, time.Since(began).Round(time.Millisecond))
	return nil
}

// Pause stops Patroni's automatic failover (maintenance mode) and returns
// when every running node reports it.
func (c *Cluster) Pause(ctx context.Context) error { return c.setPause(ctx, true) }

// Resume ends maintenance mode.
func (c *Cluster) Resume(ctx context.Context) error { return c.setPause(ctx, false) }

func (c *Cluster) setPause(ctx context.Context, pause bool) error {
	var last error
	patched := false
	for {
		if !patched {
			for _, n := range c.Nodes {
				if !n.Running() {
					continue
				}
				_, last = rest(ctx, http.MethodPatch, n.RESTURL()+"/config", map[string]any{"pause": pause}, nil, false)
				if last == nil {
					patched = true
					break
				}
			}
		}
		if patched {
			last = nil
			for _, n := range c.Nodes {
				if !n.Running() {
					continue
				}
				s, err := n.Status(ctx)
				if err != nil {
					last = err
				} else if s.Pause != pause {
					last = fmt.Errorf("%s: pause=%v", n.Name, s.Pause)
				}
			}
			if last == nil {
				return nil
			}
		}
		if err := sleepCtx(ctx, pollInterval); err != nil {
			return fmt.Errorf("patronilab: set pause=%v: %v: %w", pause, last, err)
		}
	}
}

// StopEtcd stops etcd member i (SIGTERM) and waits for it to exit.
func (c *Cluster) StopEtcd(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.Etcd) {
		return fmt.Errorf("patronilab: no etcd member %d", i)
	}
	return c.Etcd[i].proc.stop(c.Options.StopTimeout)
}

// StartEtcd starts etcd member i again and waits until it is healthy.
func (c *Cluster) StartEtcd(ctx context.Context, i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.Etcd) {
		return fmt.Errorf("patronilab: no etcd member %d", i)
	}
	m := c.Etcd[i]
	if m.Running() {
		return nil
	}
	if err := m.start(&c.Options, c.EtcdToken, initialCluster(c.Etcd)); err != nil {
		return err
	}
	if err := c.saveLocked(); err != nil {
		return err
	}
	return m.waitHealthy(ctx)
}

// StopNode stops a node's Patroni with SIGTERM; Patroni stops its
// PostgreSQL and, if it led, releases the leader key at once.
func (c *Cluster) StopNode(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.Node(name)
	if n == nil {
		return fmt.Errorf("patronilab: no node %q", name)
	}
	_ = n.Thaw()
	if err := n.proc.stop(c.Options.StopTimeout); err != nil {
		return err
	}
	return n.killPostmaster(10 * time.Second)
}

// KillNode kills a node's Patroni and its postmaster with SIGKILL, as a
// machine crash would: a leader's key lingers until its TTL expires.
func (c *Cluster) KillNode(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.Node(name)
	if n == nil {
		return fmt.Errorf("patronilab: no node %q", name)
	}
	_ = n.Thaw()
	n.proc.killGroup()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.proc.wait(ctx); err != nil {
		return fmt.Errorf("patronilab: %s survives SIGKILL", name)
	}
	return n.killPostmaster(10 * time.Second)
}

// StartNode starts a stopped node's Patroni again. It does not wait; use
// WaitHealthy.
func (c *Cluster) StartNode(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.Node(name)
	if n == nil {
		return fmt.Errorf("patronilab: no node %q", name)
	}
	if n.Running() {
		return nil
	}
	if err := n.start(&c.Options, c.ra); err != nil {
		return err
	}
	return c.saveLocked()
}

// Patronictl runs patronictl with the first node's configuration and
// returns its combined output.
func (c *Cluster) Patronictl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Options.Patronictl, append([]string{"-c", c.Nodes[0].ConfigPath}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "LANG=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("patronictl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// LogTails returns the last lines of every log of the lab.
func (c *Cluster) LogTails(lines int) string {
	var b strings.Builder
	paths := make([]string, 0, len(c.Etcd)+len(c.Nodes))
	for _, m := range c.Etcd {
		paths = append(paths, m.LogPath)
	}
	for _, n := range c.Nodes {
		paths = append(paths, n.LogPath)
	}
	for _, p := range paths {
		fmt.Fprintf(&b, "----- %s (last %d lines)\n%s\n", p, lines, tail(p, lines))
	}
	return b.String()
}

// tail returns the last n lines of a file, reading at most 64 KiB.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	const max = 64 << 10
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := st.Size() - max
	if off < 0 {
		off = 0
	}
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
