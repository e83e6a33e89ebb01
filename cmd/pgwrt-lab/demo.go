package main

// pgwrt-lab demo: a three-node cluster, the pgwrt binary in front of it,
// clients writing through pgwrt, a switchover under that load, and what
// the clients saw. It is what `make demo` runs.
//
// The steps, each printed with the time since the start:
//
//  1. build pgwrt (unless -pgwrt names a binary);
//  2. start a Patroni cluster (internal/patronilab), or with -plain or
//     without Patroni/etcd installed, plain streaming replication
//     (internal/pglab);
//  3. start pgwrt with a config naming the three nodes; SHOW POOL_NODES;
//  4. start the ledger load (internal/ledger): session clients and
//     reconnect clients, one row every 50 ms each, through pgwrt;
//  5. switch over to a standby; a watcher on every node tells when the new
//     primary accepts writes; keep the load going, SHOW POOL_NODES again;
//  6. stop the load, check every acknowledged row on the new primary, and
//     print what the clients saw and what pgwrt logged;
//  7. stop pgwrt and the cluster (also on Ctrl-C and on errors).
//
// The demo fails (exit 1) when an acknowledged row is missing or two nodes
// took writes at the same time.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"pgwrt/internal/ledger"
	"pgwrt/internal/patronilab"
	"pgwrt/internal/pglab"
)

const demoUsage = `usage: pgwrt-lab demo [-pgwrt PATH] [-plain] [-before 5s] [-after 8s] [-session 10] [-reconnect 5] [-v]`

// demoOptions are demo's flags.
type demoOptions struct {
	pgwrt     string        // binary; "" builds one
	plain     bool          // plain streaming replication instead of Patroni
	before    time.Duration // load before the switchover
	after     time.Duration // load after the new primary accepts writes
	session   int           // session-mode clients
	reconnect int           // reconnect-mode clients
	verbose   bool          // the lab harness's own lines on stderr
}

func parseDemoFlags(args []string, stderr io.Writer) (demoOptions, error) {
	fs := flag.NewFlagSet("pgwrt-lab demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, demoUsage); fs.PrintDefaults() }
	var o demoOptions
	fs.StringVar(&o.pgwrt, "pgwrt", "", "pgwrt binary (default: go build ./cmd/pgwrt into a temporary directory)")
	fs.BoolVar(&o.plain, "plain", false, "plain streaming replication instead of Patroni (the switchover is then stop, promote, follow)")
	fs.DurationVar(&o.before, "before", 5*time.Second, "load before the switchover")
	fs.DurationVar(&o.after, "after", 8*time.Second, "load after the new primary accepts writes")
	fs.IntVar(&o.session, "session", 10, "clients keeping one connection open")
	fs.IntVar(&o.reconnect, "reconnect", 5, "clients opening a new connection for every write")
	fs.BoolVar(&o.verbose, "v", false, "also print what the lab harness does (stderr)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, errors.New(demoUsage)
	}
	if o.before < time.Second || o.after < time.Second {
		return o, errors.New("-before and -after must be at least 1s")
	}
	if o.session < 0 || o.reconnect < 0 || o.session+o.reconnect == 0 {
		return o, errors.New("-session and -reconnect: not negative, and at least one client")
	}
	return o, nil
}

// demo runs the whole demo and stops everything it started before it
// returns.
func demo(args []string, stdout, stderr io.Writer) error {
	opt, err := parseDemoFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demoRun{opt: opt, out: stdout, t0: time.Now()}
	d.harness = func(string, ...any) {}
	if opt.verbose {
		d.harness = func(format string, a ...any) { fmt.Fprintf(stderr, "    lab: "+format+"\n", a...) }
	}
	err = d.run(ctx)
	if err != nil && ctx.Err() != nil {
		d.step("interrupted; everything the demo started is stopped")
		return errors.New("demo interrupted")
	}
	return err
}

// demoRun is one run of the demo.
type demoRun struct {
	opt     demoOptions
	out     io.Writer
	t0      time.Time
	harness func(string, ...any)
	pgbin   string
	lab     demoLab
	p       *pgwrtProcess
	dsn     string // pgwrt, as the app user
}

// step prints one line of the story with the time since the start.
func (d *demoRun) step(format string, a ...any) {
	fmt.Fprintf(d.out, "[%5.1fs] %s\n", time.Since(d.t0).Seconds(), fmt.Sprintf(format, a...))
}

// detail prints an indented line under a step.
func (d *demoRun) detail(format string, a ...any) {
	fmt.Fprintf(d.out, "         %s\n", fmt.Sprintf(format, a...))
}

// section prints a heading of the final report.
func (d *demoRun) section(title string) {
	fmt.Fprintf(d.out, "\n== %s ==\n", title)
}

func (d *demoRun) run(ctx context.Context) (err error) {
	d.step("pgwrt demo: a PostgreSQL cluster, pgwrt in front of it, clients writing through pgwrt, a switchover, what the clients saw")
	if d.pgbin, err = pglab.PGBin(); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "pgwrt-demo-")
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // the postgres user reaches the lab under it
		return err
	}
	defer func() {
		if err != nil && ctx.Err() == nil {
			d.detail("files kept for inspection in %s", tmp)
			return
		}
		os.RemoveAll(tmp)
	}()

	bin := d.opt.pgwrt
	if bin == "" {
		bin = filepath.Join(tmp, "pgwrt")
		d.step("building pgwrt (go build ./cmd/pgwrt)")
		if err := buildPgwrt(ctx, bin); err != nil {
			return err
		}
	}

	// 2. The cluster.
	if d.lab, err = d.startLab(ctx, filepath.Join(tmp, "lab")); err != nil {
		return err
	}
	defer func() {
		d.step("stopping the cluster")
		if serr := d.lab.stop(); serr != nil && err == nil {
			err = serr
		}
	}()
	primary, err := d.lab.primary(ctx)
	if err != nil {
		return err
	}
	d.step("%s is up", d.lab.describe())
	for _, n := range d.lab.nodes() {
		role := "standby"
		if n.name == primary {
			role = "primary"
		}
		d.detail("%-6s 127.0.0.1:%d  %s", n.name, n.port, role)
	}

	// 3. pgwrt.
	httpAddr, err := freeLoopbackAddr()
	if err != nil {
		return err
	}
	cfg := demoConfig(d.lab.nodes(), httpAddr)
	d.step("starting pgwrt (%s run -c pgwrt.toml) with this config:", bin)
	for _, l := range strings.Split(strings.TrimSpace(cfg), "\n") {
		d.detail("  %s", l)
	}
	if d.p, err = startPgwrt(ctx, bin, filepath.Join(tmp, "pgwrt.toml"), cfg); err != nil {
		return err
	}
	defer func() {
		d.step("stopping pgwrt")
		d.p.stop()
	}()
	if err := d.p.waitLogin(ctx, filepath.Join(d.pgbin, "psql"), 30*time.Second); err != nil {
		return err
	}
	d.dsn = "postgres://" + pglab.AppUser + ":" + pglab.AppPassword + "@" + d.p.addr + "/" + pglab.AppDatabase + "?sslmode=disable"
	d.step("pgwrt listens on %s (clients connect here); status page http://%s/status, /healthz says %s",
		d.p.addr, httpAddr, healthz(ctx, httpAddr))
	if err := d.showPoolNodes(ctx); err != nil {
		return err
	}

	// 4. The load.
	d.step("creating table ledger through pgwrt")
	if err := ledger.Prepare(ctx, d.dsn, ""); err != nil {
		return fmt.Errorf("create the ledger table through pgwrt: %w", err)
	}
	var targets []ledger.Target
	for _, n := range d.lab.nodes() {
		targets = append(targets, ledger.Target{Key: strconv.Itoa(n.port), DSN: n.dsn})
	}
	watch := ledger.Watch(targets, 50*time.Millisecond)
	defer watch.Stop()
	d.step("starting the load through pgwrt: %d session clients (one connection each, kept open) and %d reconnect clients (a new connection for every write), each writing a ledger row every 50 ms",
		d.opt.session, d.opt.reconnect)
	load, err := startDemoLoad(d.dsn, d.opt.session, d.opt.reconnect)
	if err != nil {
		return err
	}
	defer load.stop() // on errors; the normal path stops it earlier
	if err := sleepCtx(ctx, d.opt.before); err != nil {
		return err
	}
	if n, err := countRows(ctx, d.dsn); err == nil {
		d.step("%d rows in the ledger so far (counted through pgwrt)", n)
	}

	// 5. The switchover.
	to := ""
	for _, n := range d.lab.nodes() {
		if n.name != primary {
			to = n.name
			break
		}
	}
	requested := time.Now()
	d.step("switchover %s -> %s requested (%s)", primary, to, d.lab.how())
	swErr := make(chan error, 1)
	go func() { swErr <- d.lab.switchover(ctx, primary, to) }()
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	key, accepted, err := watch.WaitNewWritable(wctx, requested)
	cancel()
	if err != nil {
		<-swErr
		return err
	}
	newName := nodeName(d.lab, key)
	d.step("%s accepts writes, %s after the request (seen directly on the node, not through pgwrt)",
		newName, accepted.Sub(requested).Round(time.Millisecond))
	if err := <-swErr; err != nil {
		return err
	}
	d.step("switchover done: %s is the primary; %s", newName, d.lab.afterwards())
	d.step("keeping the load %s more", d.opt.after)
	if err := sleepCtx(ctx, time.Until(accepted.Add(d.opt.after))); err != nil {
		return err
	}
	if err := d.showPoolNodes(ctx); err != nil {
		return err
	}

	// 6. What the clients saw.
	d.step("stopping the load")
	sess, recon := load.stop()
	watch.Stop()
	var newNode demoNode
	for _, n := range d.lab.nodes() {
		if n.name == newName {
			newNode = n
		}
	}
	d.step("checking every acknowledged row on %s, the new primary (directly, not through pgwrt)", newName)
	all := ledger.Merge(sess, recon)
	ck, err := ledger.Verify(ctx, newNode.dsn, "", all)
	if err != nil {
		return err
	}
	rep := demoReport{d: d, sess: sess, recon: recon, ck: ck, oldName: primary, newName: newName, newKey: key,
		requested: requested, accepted: accepted}
	rep.print()
	if len(ck.Lost) > 0 || len(ck.Overlaps) > 0 {
		return fmt.Errorf("%d acknowledged rows lost, %d overlapping writers", len(ck.Lost), len(ck.Overlaps))
	}
	return nil
}

// startLab starts the Patroni lab, or pglab when asked to or when Patroni
// or etcd is missing.
func (d *demoRun) startLab(ctx context.Context, dir string) (demoLab, error) {
	if !d.opt.plain {
		d.step("starting a 3-node Patroni cluster (3 etcd members, 3 Patroni daemons each running PostgreSQL 15) on 127.0.0.1")
		c, err := patronilab.Start(ctx, patronilab.Options{BaseDir: dir, Logf: d.harness})
		if err == nil {
			return &patroniDemoLab{c: c}, nil
		}
		if !errors.Is(err, patronilab.ErrMissingBinary) {
			return nil, err
		}
		d.step("Patroni or etcd is not installed (%v): using plain streaming replication instead", err)
	}
	d.step("starting PostgreSQL 15 with plain streaming replication (a primary and 2 standbys, no Patroni) on 127.0.0.1")
	c, err := pglab.Start(ctx, pglab.Options{Standbys: 2, BaseDir: dir, Logf: d.harness})
	if err != nil {
		return nil, err
	}
	return &plainDemoLab{c: c}, nil
}

// showPoolNodes runs psql -c 'SHOW POOL_NODES' through pgwrt.
func (d *demoRun) showPoolNodes(ctx context.Context) error {
	host, port, _ := strings.Cut(d.p.addr, ":")
	d.step("psql through pgwrt: SHOW POOL_NODES")
	qctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(qctx, filepath.Join(d.pgbin, "psql"), "-X", "-h", host, "-p", port,
		"-U", pglab.AppUser, "-d", pglab.AppDatabase, "-c", "SHOW POOL_NODES")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pglab.AppPassword, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("psql SHOW POOL_NODES through pgwrt: %v: %s", err, out)
	}
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			d.detail("  %s", l)
		}
	}
	var names []string
	for _, n := range d.lab.nodes() {
		names = append(names, fmt.Sprintf("%d is %s", n.port, n.name))
	}
	d.detail("  (port %s)", strings.Join(names, ", "))
	return nil
}

// demoConfig is pgwrt's config for the demo: the lab's nodes, passwords
// checked, health checks as the lab's superuser, the HTTP status page on.
func demoConfig(nodes []demoNode, httpAddr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen = %q\nhttp_listen = %q\nlog_level = \"info\"\n", "127.0.0.1:0", httpAddr)
	fmt.Fprintf(&b, "health_check_user = %q\nhealth_check_password = %q\n", pglab.SuperUser, pglab.SuperPassword)
	for _, n := range nodes {
		fmt.Fprintf(&b, "\n[[backend]]\nname = %q\nhost = \"127.0.0.1\"\nport = %d\n", n.name, n.port)
	}
	b.WriteString("\n[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"all\"\nmethod = \"password\"\n")
	return b.String()
}

// freeLoopbackAddr returns 127.0.0.1:PORT with a port free right now.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// healthz returns the status line of GET /healthz.
func healthz(ctx context.Context, addr string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	resp.Body.Close()
	return resp.Status
}

func countRows(ctx context.Context, dsn string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	var n int
	err = c.QueryRow(ctx, "SELECT count(*) FROM ledger").Scan(&n)
	return n, err
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ---- the load ----

// demoLoad is the two ledger runs, one per mode.
type demoLoad struct {
	sess, recon *ledger.Run
	stopped     bool
	sessRes     *ledger.Result
	reconRes    *ledger.Result
}

// reconnectFirstID numbers the reconnect clients apart from the session
// clients in the shared table.
const reconnectFirstID = 1000

func startDemoLoad(dsn string, session, reconnect int) (*demoLoad, error) {
	l := &demoLoad{}
	var err error
	if session > 0 {
		if l.sess, err = ledger.Start(ledger.Options{DSN: dsn, Clients: session, Mode: ledger.Session}); err != nil {
			return nil, err
		}
	}
	if reconnect > 0 {
		if l.recon, err = ledger.Start(ledger.Options{DSN: dsn, Clients: reconnect, FirstID: reconnectFirstID, Mode: ledger.Reconnect}); err != nil {
			l.stop()
			return nil, err
		}
	}
	return l, nil
}

// stop ends both runs (once) and returns their results; a mode without
// clients has an empty Result.
func (l *demoLoad) stop() (sess, recon *ledger.Result) {
	if !l.stopped {
		l.stopped = true
		l.sessRes, l.reconRes = &ledger.Result{}, &ledger.Result{}
		if l.sess != nil {
			l.sessRes = l.sess.Stop()
		}
		if l.recon != nil {
			l.reconRes = l.recon.Stop()
		}
	}
	return l.sessRes, l.reconRes
}

// ---- the clusters ----

// demoNode is one PostgreSQL node of the lab.
type demoNode struct {
	name string
	port int
	dsn  string // the superuser on the app database, directly
}

// demoLab is what the demo needs of a cluster, Patroni or plain.
type demoLab interface {
	describe() string
	nodes() []demoNode
	primary(ctx context.Context) (string, error)
	how() string // how a switchover is done
	// switchover makes to the primary and returns when it accepts writes.
	switchover(ctx context.Context, from, to string) error
	afterwards() string // what happens to the old primary
	stop() error
}

// name returns the name of the node whose port is key, or key.
func nodeName(l demoLab, key string) string {
	for _, n := range l.nodes() {
		if strconv.Itoa(n.port) == key {
			return n.name
		}
	}
	return key
}

type patroniDemoLab struct{ c *patronilab.Cluster }

func (l *patroniDemoLab) describe() string {
	return fmt.Sprintf("Patroni cluster (etcd %s)", l.c.EtcdEndpoints())
}

func (l *patroniDemoLab) nodes() []demoNode {
	var ns []demoNode
	for _, n := range l.c.Nodes {
		ns = append(ns, demoNode{name: n.Name, port: n.PGPort, dsn: n.DSN(patronilab.SuperUser, patronilab.SuperPassword, patronilab.AppDatabase)})
	}
	return ns
}

func (l *patroniDemoLab) primary(ctx context.Context) (string, error) {
	n, err := l.c.WaitLeader(ctx, "")
	if err != nil {
		return "", err
	}
	return n.Name, nil
}

func (l *patroniDemoLab) how() string {
	return "POST /switchover to Patroni's REST API, as patronictl switchover does"
}

func (l *patroniDemoLab) switchover(ctx context.Context, from, to string) error {
	return l.c.Switchover(ctx, to)
}

func (l *patroniDemoLab) afterwards() string {
	return "Patroni restarts the old primary as a standby of the new one"
}

func (l *patroniDemoLab) stop() error { return l.c.Stop() }

type plainDemoLab struct{ c *pglab.Cluster }

func (l *plainDemoLab) describe() string { return "streaming replication cluster" }

func (l *plainDemoLab) nodes() []demoNode {
	var ns []demoNode
	for _, n := range l.c.Nodes {
		ns = append(ns, demoNode{name: n.Name, port: n.Port, dsn: n.DSN(pglab.SuperUser, pglab.SuperPassword, pglab.AppDatabase)})
	}
	return ns
}

func (l *plainDemoLab) primary(ctx context.Context) (string, error) {
	n, err := l.c.Primary(ctx)
	if err != nil {
		return "", err
	}
	return n.Name, nil
}

func (l *plainDemoLab) how() string {
	return "no Patroni: stop the primary (fast shutdown), promote the standby, point the others at it"
}

// switchover is what Patroni does, by hand: a clean shutdown of the
// primary (its standbys receive all of its WAL), promotion of a standby,
// then every other node follows the new primary, the old one restarted
// as a standby.
func (l *plainDemoLab) switchover(ctx context.Context, from, to string) error {
	old, err := l.c.Node(from)
	if err != nil {
		return err
	}
	nw, err := l.c.Node(to)
	if err != nil {
		return err
	}
	if err := old.StopFast(); err != nil {
		return err
	}
	if err := nw.Promote(); err != nil {
		return err
	}
	var others []*pglab.Node
	for _, n := range l.c.Nodes {
		if n == nw {
			continue
		}
		if err := l.c.Follow(n, nw); err != nil {
			return err
		}
		others = append(others, n)
	}
	if err := old.Start(); err != nil {
		return err
	}
	return l.c.WaitStreaming(ctx, nw, others...)
}

func (l *plainDemoLab) afterwards() string {
	return "the old primary was restarted as a standby of the new one and the other standby follows it"
}

func (l *plainDemoLab) stop() error { return l.c.Stop() }

// ---- the report ----

type demoReport struct {
	d                        *demoRun
	sess, recon              *ledger.Result
	ck                       *ledger.Check
	oldName, newName, newKey string
	requested, accepted      time.Time
}

// sqlstateNames are the SQLSTATEs a client may see in a failover.
var sqlstateNames = map[string]string{
	"57P01":   "admin_shutdown: the server (or pgwrt) closed the session",
	"57P02":   "crash_shutdown",
	"57P03":   "cannot_connect_now: no primary within failover_wait, or a server starting up or shutting down",
	"25006":   "read_only_sql_transaction: a write reached a standby",
	"53300":   "too_many_connections",
	"08006":   "connection_failure",
	"08P01":   "protocol_violation",
	"net":     "no SQLSTATE: the connection broke or was refused",
	"timeout": "the call hung until the client's timeout",
}

func (r *demoReport) print() {
	d := r.d
	d.section("What the clients saw")
	r.mode("session mode", "one connection each, kept open", r.sess)
	r.mode("reconnect mode", "a new connection for every write", r.recon)
	all := ledger.Merge(r.sess, r.recon)
	s := all.Summary()
	fmt.Fprintf(d.out, "  all clients: %d rows written (acknowledged), %d errors\n", s.Acks, s.Errors)
	fmt.Fprintf(d.out, "  lost rows: %d  (of %d acknowledged writes, every one looked up on %s, the new primary; %d rows there)\n",
		len(r.ck.Lost), r.ck.Acked, r.newName, r.ck.Rows)
	for i, l := range r.ck.Lost {
		if i == 10 {
			fmt.Fprintf(d.out, "    ... %d more\n", len(r.ck.Lost)-10)
			break
		}
		fmt.Fprintf(d.out, "    lost: client/seq@node %s\n", l)
	}
	fmt.Fprintf(d.out, "  who took the writes (by the rows' server time):\n")
	for _, w := range r.ck.Windows {
		fmt.Fprintf(d.out, "    %-6s %s .. %s  %d rows\n", nodeName(d.lab, w.Node),
			w.First.Format("15:04:05.000"), w.Last.Format("15:04:05.000"), w.Rows)
	}
	if len(r.ck.Overlaps) == 0 {
		fmt.Fprintf(d.out, "    never two nodes at the same time\n")
	} else {
		for _, o := range r.ck.Overlaps {
			fmt.Fprintf(d.out, "    TWO WRITERS AT ONCE: %s\n", o)
		}
	}

	d.section("What pgwrt logged about the failover")
	r.pgwrtLog()
	if hwm, rss, err := procMem(d.p.pid()); err == nil {
		fmt.Fprintf(d.out, "  pgwrt's memory: %s resident now, %s at most (VmRSS, VmHWM)\n", mbText(rss), mbText(hwm))
	}
	fmt.Fprintln(d.out)
}

// mode prints one mode's part of the report.
func (r *demoReport) mode(title, what string, res *ledger.Result) {
	out := r.d.out
	if len(res.Clients) == 0 {
		return
	}
	s := res.Summary()
	fmt.Fprintf(out, "  %s (%d clients, %s):\n", title, s.Clients, what)
	fmt.Fprintf(out, "    rows written: %d\n", s.Acks)
	hit := 0
	for _, c := range res.Clients {
		if len(c.Errors) > 0 {
			hit++
		}
	}
	fmt.Fprintf(out, "    errors: %d (%d of %d clients saw one)\n", s.Errors, hit, s.Clients)
	var codes []string
	for c := range s.Codes {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	for _, code := range codes {
		fmt.Fprintf(out, "      %-7s x%-4d %s\n", code, s.Codes[code], sqlstateNames[code])
		for _, m := range distinctMessages(res, code, 4) {
			fmt.Fprintf(out, "               %s\n", m)
		}
	}
	fmt.Fprintf(out, "    longest gap between two writes of one client: %s\n", s.MaxGap.Round(time.Millisecond))
	var longest *ledger.Client
	for _, c := range res.Clients {
		if longest == nil || c.MaxCall > longest.MaxCall {
			longest = c
		}
	}
	fmt.Fprintf(out, "    longest single call: %s, a %s at %s\n", longest.MaxCall.Round(time.Millisecond), longest.CallOp,
		longest.CallAt.Format("15:04:05.000"))
	if first, last, ok := res.ResumeAfter(r.newKey, r.accepted); ok {
		fmt.Fprintf(out, "    resumed on %s: the first client %s after it accepted writes, every client by %s\n",
			r.newName, first.Round(time.Millisecond), last.Round(time.Millisecond))
	} else {
		fmt.Fprintf(out, "    resumed on %s: no client wrote there\n", r.newName)
	}
	if s.Hangs > 0 {
		fmt.Fprintf(out, "    calls that hung until the client's timeout: %d\n", s.Hangs)
	}
}

// distinctMessages lists the messages of res's errors with SQLSTATE code,
// most frequent first, at most max (then how many more).
func distinctMessages(res *ledger.Result, code string, max int) []string {
	count := map[string]int{}
	for _, c := range res.Clients {
		for _, e := range c.Errors {
			ec := e.Code
			if ec == "" {
				ec = "net"
			}
			if ec == code {
				count[e.Op+": "+e.Msg]++
			}
		}
	}
	msgs := make([]string, 0, len(count))
	for m := range count {
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool {
		if count[msgs[i]] != count[msgs[j]] {
			return count[msgs[i]] > count[msgs[j]]
		}
		return msgs[i] < msgs[j]
	})
	var out []string
	for i, m := range msgs {
		if i == max {
			out = append(out, fmt.Sprintf("... and %d other messages", len(msgs)-max))
			break
		}
		out = append(out, fmt.Sprintf("x%-4d %q", count[m], m))
	}
	return out
}

// failoverMsgs are the pgwrt log messages shown in the report.
var failoverMsgs = map[string]bool{
	"primary changed":                       true,
	"held client released":                  true,
	"closed connections to the old primary": true,
	"node down":                             true,
	"node state changed":                    true,
	"primary alarm":                         true,
	"cannot reach the primary":              true,
}

// pgwrtLog prints pgwrt's log lines about the failover, from the
// switchover request on (at most logRepeat of one message), and the hold
// times ledger.LogWatch finds in them.
func (r *demoReport) pgwrtLog() {
	const logRepeat = 3
	out := r.d.out
	lw := ledger.NewLogWatch(nil)
	seen := map[string]int{}
	var first time.Time
	var msgs []string // in order of first appearance
	for _, l := range strings.Split(r.d.p.logTail(), "\n") {
		rec, ok := parseLogLine(l)
		if !ok {
			continue
		}
		if first.IsZero() {
			first = rec.Time
			if first.After(r.requested) {
				fmt.Fprintf(out, "  (pgwrt's log lines before %s are no longer in the demo's buffer)\n", first.Format("15:04:05.000"))
			}
		}
		_ = lw.Handle(context.Background(), rec)
		if rec.Time.Before(r.requested) || !failoverMsgs[rec.Message] {
			continue
		}
		if seen[rec.Message]++; seen[rec.Message] == 1 {
			msgs = append(msgs, rec.Message)
		}
		if seen[rec.Message] > logRepeat {
			continue
		}
		_, rest, _ := strings.Cut(l, " ") // without time=, the elapsed time instead
		fmt.Fprintf(out, "  [%5.1fs] %s\n", rec.Time.Sub(r.d.t0).Seconds(), rest)
	}
	for _, m := range msgs {
		if n := seen[m]; n > logRepeat {
			fmt.Fprintf(out, "  ... and %d more %q lines\n", n-logRepeat, m)
		}
	}
	noPrimary, client, clients := lw.Held(r.requested)
	fmt.Fprintf(out, "  in short: pgwrt knew no primary for %s", noPrimary.Round(time.Millisecond))
	if clients == 0 {
		fmt.Fprintf(out, "; it logged no \"held client released\"\n")
	} else {
		fmt.Fprintf(out, "; it logged %d \"held client released\", the longest hold %s\n", clients, client.Round(time.Millisecond))
	}
}

// parseLogLine reads one line of slog's text format (pgwrt's log) into a
// record: time, level and msg, the other keys as string attributes.
func parseLogLine(line string) (slog.Record, bool) {
	var (
		at    time.Time
		level slog.Level
		msg   string
		attrs []slog.Attr
	)
	s := line
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			break
		}
		k, rest, ok := strings.Cut(s, "=")
		if !ok || k == "" || strings.ContainsAny(k, ` "`) {
			return slog.Record{}, false
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return slog.Record{}, false
			}
			v, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			i := strings.IndexByte(rest, ' ')
			if i < 0 {
				i = len(rest)
			}
			v, rest = rest[:i], rest[i:]
		}
		s = rest
		switch k {
		case "time":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return slog.Record{}, false
			}
			at = t
		case "level":
			if err := level.UnmarshalText([]byte(v)); err != nil {
				return slog.Record{}, false
			}
		case "msg":
			msg = v
		default:
			attrs = append(attrs, slog.String(k, v))
		}
	}
	if at.IsZero() || msg == "" {
		return slog.Record{}, false
	}
	rec := slog.NewRecord(at, level, msg, 0)
	rec.AddAttrs(attrs...)
	return rec, true
}
