package pglab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Roles every cluster has, with their passwords. Host is the only address
// the servers listen on.
const (
	Host = "127.0.0.1"

	SuperUser     = "postgres"
	SuperPassword = "postgres-secret"

	AppUser     = "app"
	AppPassword = "app-secret"
	AppDatabase = "app"

	ReplicationUser     = "replicator"
	ReplicationPassword = "replicator-secret"
)

// DefaultStandbys is the number of standbys when Options.Standbys is 0.
const DefaultStandbys = 2

// StateFile is the name of the state file in the base directory.
const StateFile = "lab.json"

// Options says what cluster to start.
type Options struct {
	// Standbys is the number of streaming standbys: 0 means
	// DefaultStandbys, a negative number means none.
	Standbys int
	// BaseDir holds all data; "" makes a temporary directory under
	// os.TempDir() that Stop removes. Every parent must be traversable by
	// the postgres OS user.
	BaseDir string
	// Fsync turns fsync on; tests leave it off for speed.
	Fsync bool
	// Detach starts postmasters that outlive this process (pgwrt-lab).
	// Otherwise they are killed by the kernel when this process dies.
	Detach bool
	// Conf lines are appended to every node's postgresql.conf.
	Conf []string
	// Logf, if set, hears what the harness is doing.
	Logf func(format string, args ...any)
}

// Cluster is a running (or loaded) set of nodes. Nodes[0] is the node
// created as the primary; after a promotion ask Primary.
type Cluster struct {
	Nodes     []*Node
	BaseDir   string
	SocketDir string
	PGBin     string

	ownBase bool                // Stop removes BaseDir itself
	detach  bool                // postmasters outlive this process
	cred    *syscall.Credential // run PostgreSQL programs as this user; nil: as ourselves
	logf    func(string, ...any)

	stopOnce sync.Once
	stopErr  error
}

// PGBin returns the directory of the PostgreSQL programs: $PGWRT_PGBIN, the
// Debian PostgreSQL 15 directory, or `pg_config --bindir`. It fails when
// one of the programs the harness runs is missing.
func PGBin() (string, error) {
	var dirs []string
	if d := os.Getenv("PGWRT_PGBIN"); d != "" {
		dirs = []string{d}
	} else {
		dirs = append(dirs, "/usr/lib/postgresql/15/bin")
		if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
			dirs = append(dirs, strings.TrimSpace(string(out)))
		}
	}
	var errs []error
	for _, d := range dirs {
		if err := checkBin(d); err != nil {
			errs = append(errs, err)
			continue
		}
		return d, nil
	}
	if len(errs) == 0 {
		return "", errors.New("pglab: no PostgreSQL bin directory found (set PGWRT_PGBIN)")
	}
	return "", fmt.Errorf("pglab: no usable PostgreSQL bin directory (set PGWRT_PGBIN): %w", errors.Join(errs...))
}

func checkBin(dir string) error {
	for _, p := range []string{"initdb", "postgres", "pg_ctl", "pg_basebackup", "psql"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return fmt.Errorf("%s: %s missing", dir, p)
		}
	}
	return nil
}

// runAs returns the credential PostgreSQL programs run with: the postgres
// OS user when we are root, else nil (ourselves).
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pglab: running as root needs a postgres OS user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Start creates and starts a cluster: a primary and its standbys, and waits
// until every standby streams from the primary. On error nothing is left
// running.
func Start(ctx context.Context, opt Options) (*Cluster, error) {
	pgbin, err := PGBin()
	if err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	c := &Cluster{PGBin: pgbin, cred: cred, detach: opt.Detach, logf: opt.Logf}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if err := c.makeBase(opt.BaseDir); err != nil {
		return nil, err
	}
	if err := c.create(ctx, opt); err != nil {
		_ = c.Stop()
		return nil, err
	}
	return c, nil
}

// makeBase creates the base and socket directories, owned by the user the
// servers run as.
func (c *Cluster) makeBase(dir string) error {
	if dir == "" {
		tmp := os.TempDir()
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return err
		}
		d, err := os.MkdirTemp(tmp, "pglab-")
		if err != nil {
			return err
		}
		dir, c.ownBase = d, true
	} else {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); errors.Is(err, os.ErrNotExist) {
			c.ownBase = true
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return err
		}
		dir = abs
	}
	c.BaseDir = dir
	if err := c.checkTraversable(dir); err != nil {
		return err
	}
	c.SocketDir = filepath.Join(dir, "sock")
	for _, d := range []string{dir, c.SocketDir} {
		if err := c.mkdir(d); err != nil {
			return err
		}
	}
	return nil
}

// checkTraversable fails early, with a clear message, when the postgres OS
// user could not reach the base directory.
func (c *Cluster) checkTraversable(dir string) error {
	if c.cred == nil {
		return nil
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("pglab: %s is not traversable by the postgres user (mode %v); choose another base directory", d, st.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// mkdir makes a 0755 directory owned by the server user.
func (c *Cluster) mkdir(d string) error {
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(d, 0o755); err != nil {
		return err
	}
	return c.chown(d)
}

func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

// create builds the nodes (lifecycle steps 2 to 4).
func (c *Cluster) create(ctx context.Context, opt Options) error {
	n := opt.Standbys
	if n == 0 {
		n = DefaultStandbys
	}
	if n < 0 {
		n = 0
	}
	primary := c.newNode("pg0")
	c.Nodes = append(c.Nodes, primary)
	c.logf("pglab: initdb %s", primary.DataDir)
	if err := c.initPrimary(ctx, primary, opt); err != nil {
		return err
	}
	if err := primary.startNew(ctx); err != nil {
		return err
	}
	if err := c.createRoles(ctx, primary); err != nil {
		return err
	}
	var standbys []*Node
	for i := 1; i <= n; i++ {
		s := c.newNode("pg" + strconv.Itoa(i))
		c.Nodes = append(c.Nodes, s)
		c.logf("pglab: pg_basebackup %s from %s", s.Name, primary.Name)
		if err := c.baseBackup(ctx, primary, s); err != nil {
			return err
		}
		if err := s.startNew(ctx); err != nil {
			return err
		}
		standbys = append(standbys, s)
	}
	if err := c.WaitStreaming(ctx, primary, standbys...); err != nil {
		return err
	}
	if err := c.save(); err != nil {
		return err
	}
	c.logf("pglab: cluster up in %s: %s", c.BaseDir, c.describe())
	return nil
}

func (c *Cluster) describe() string {
	var b strings.Builder
	for i, n := range c.Nodes {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%s:%d", n.Name, n.Host, n.Port)
	}
	return b.String()
}

func (c *Cluster) newNode(name string) *Node {
	dir := filepath.Join(c.BaseDir, name)
	return &Node{
		Name:    name,
		Host:    Host,
		Dir:     dir,
		DataDir: filepath.Join(dir, "data"),
		LogFile: filepath.Join(dir, "postgres.log"),
		c:       c,
	}
}

// Node returns the node called name, or the node at index name ("1").
func (c *Cluster) Node(name string) (*Node, error) {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	if i, err := strconv.Atoi(name); err == nil && i >= 0 && i < len(c.Nodes) {
		return c.Nodes[i], nil
	}
	return nil, fmt.Errorf("pglab: no node %q", name)
}

// Stop stops every node at once (immediate shutdown, then SIGKILL if need
// be) and removes the nodes' directories, the socket directory and the state
// file; the base directory too when Start created it. It is idempotent.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		errs := make([]error, len(c.Nodes))
		var wg sync.WaitGroup
		for i, n := range c.Nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = n.StopImmediate()
			}()
		}
		wg.Wait()
		for _, n := range c.Nodes {
			if n.Running() {
				c.stopErr = errors.Join(append(errs, fmt.Errorf("pglab: %s still running; %s kept", n.Name, c.BaseDir))...)
				return // never remove the files of a live server
			}
		}
		if c.ownBase {
			errs = append(errs, os.RemoveAll(c.BaseDir))
		} else {
			for _, n := range c.Nodes {
				errs = append(errs, os.RemoveAll(n.Dir))
			}
			errs = append(errs, os.RemoveAll(c.SocketDir), os.RemoveAll(filepath.Join(c.BaseDir, StateFile)))
			_ = os.Remove(c.BaseDir) // only if empty
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// Primary returns the one running node that is not in recovery. Frozen and
// stopped nodes are skipped.
func (c *Cluster) Primary(ctx context.Context) (*Node, error) {
	var found []*Node
	for _, n := range c.Nodes {
		if !n.Running() || n.Frozen() {
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := n.Query(qctx, "SELECT pg_is_in_recovery()")
		cancel()
		if err == nil && v == "f" {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 0:
		return nil, errors.New("pglab: no primary")
	case 1:
		return found[0], nil
	default:
		return nil, fmt.Errorf("pglab: %d nodes say they are primary", len(found))
	}
}

// WaitStreaming waits until pg_stat_replication on primary shows each
// standby (by application_name, which is the node's name) streaming.
func (c *Cluster) WaitStreaming(ctx context.Context, primary *Node, standbys ...*Node) error {
	if len(standbys) == 0 {
		return nil
	}
	names := make([]string, len(standbys))
	for i, s := range standbys {
		names[i] = "'" + s.Name + "'"
	}
	q := fmt.Sprintf("SELECT count(DISTINCT application_name) FROM pg_stat_replication WHERE state = 'streaming' AND application_name IN (%s)", strings.Join(names, ","))
	want := strconv.Itoa(len(standbys))
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last string
	var lastErr error
	for {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		last, lastErr = primary.Query(qctx, q)
		qcancel()
		if lastErr == nil && last == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pglab: standbys %s not streaming from %s (%s of %s; last error %v): %w",
				strings.Join(names, ","), primary.Name, last, want, lastErr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Follow points standby at newPrimary: primary_conninfo and
// recovery_target_timeline=latest in its postgresql.auto.conf, and a
// standby.signal. A running standby is reloaded (PostgreSQL 13+ restarts the
// WAL receiver when primary_conninfo changes); a running primary is
// restarted as a standby. Follow then waits until it streams from
// newPrimary. A stopped node is only reconfigured.
func (c *Cluster) Follow(standby, newPrimary *Node) error {
	if standby == newPrimary {
		return fmt.Errorf("pglab: %s cannot follow itself", standby.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	running := standby.Running()
	inRecovery := true
	if running {
		v, err := standby.Query(ctx, "SELECT pg_is_in_recovery()")
		if err != nil {
			return err
		}
		inRecovery = v == "t"
	}
	if err := c.pointAt(standby, newPrimary); err != nil {
		return err
	}
	c.logf("pglab: %s follows %s", standby.Name, newPrimary.Name)
	if !running {
		return nil
	}
	if inRecovery {
		if err := standby.reload(); err != nil {
			return err
		}
	} else {
		if err := standby.StopFast(); err != nil {
			return err
		}
		if err := standby.Start(); err != nil {
			return err
		}
	}
	return c.WaitStreaming(ctx, newPrimary, standby)
}

// pointAt writes the standby configuration of s for primary p.
func (c *Cluster) pointAt(s, p *Node) error {
	conninfo := fmt.Sprintf("host=%s port=%d user=%s password=%s application_name=%s sslmode=disable connect_timeout=2",
		p.Host, p.Port, ReplicationUser, ReplicationPassword, s.Name)
	if err := s.setAutoConf(map[string]string{
		"primary_conninfo":         conninfo,
		"recovery_target_timeline": "latest",
	}); err != nil {
		return err
	}
	sig := filepath.Join(s.DataDir, "standby.signal")
	if err := os.WriteFile(sig, nil, 0o600); err != nil {
		return err
	}
	return c.chown(sig)
}

// state is the JSON of the state file.
type state struct {
	BaseDir   string      `json:"base_dir"`
	SocketDir string      `json:"socket_dir"`
	PGBin     string      `json:"pgbin"`
	OwnBase   bool        `json:"own_base"`
	Nodes     []nodeState `json:"nodes"`
}

type nodeState struct {
	Name    string `json:"name"`
	Host    string `json:"host"`
	Port    int    `json:"port"`
	Dir     string `json:"dir"`
	DataDir string `json:"data_dir"`
	LogFile string `json:"log_file"`
}

func (c *Cluster) save() error {
	st := state{BaseDir: c.BaseDir, SocketDir: c.SocketDir, PGBin: c.PGBin, OwnBase: c.ownBase}
	for _, n := range c.Nodes {
		st.Nodes = append(st.Nodes, nodeState{Name: n.Name, Host: n.Host, Port: n.Port, Dir: n.Dir, DataDir: n.DataDir, LogFile: n.LogFile})
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.BaseDir, StateFile), append(b, '\n'), 0o644)
}

// Load rebuilds a cluster from the state file in dir. The nodes keep
// whatever state they are in; nodes it starts are detached.
func Load(dir string) (*Cluster, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("pglab: %s: %w", filepath.Join(dir, StateFile), err)
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	pgbin := st.PGBin
	if checkBin(pgbin) != nil {
		if pgbin, err = PGBin(); err != nil {
			return nil, err
		}
	}
	c := &Cluster{
		BaseDir: st.BaseDir, SocketDir: st.SocketDir, PGBin: pgbin,
		ownBase: st.OwnBase, detach: true, cred: cred, logf: func(string, ...any) {},
	}
	for _, ns := range st.Nodes {
		c.Nodes = append(c.Nodes, &Node{
			Name: ns.Name, Host: ns.Host, Port: ns.Port,
			Dir: ns.Dir, DataDir: ns.DataDir, LogFile: ns.LogFile, c: c,
		})
	}
	return c, nil
}

// SetLogf sets where the cluster tells what it does.
func (c *Cluster) SetLogf(f func(string, ...any)) {
	if f == nil {
		f = func(string, ...any) {}
	}
	c.logf = f
}
