package main

// pgwrt-lab bench: pgbench directly against a fresh primary, through a
// pgwrt binary in front of it and through the comparison proxies that are
// installed (PgBouncer, HAProxy), side by side, with pgwrt's memory.
//
// The machine is shared and its speed drifts between runs minutes apart, so
// each (workload, clients) pair runs several rounds; a round is one run
// direct, one through pgwrt and one through each comparison proxy back to
// back, the order rotated from round to round. A row reports medians over the rounds,
// and the ratio is the median of the per-round ratios: each ratio compares
// runs made under the same conditions.
//
// pgbench connects anew for every run, and a fresh PostgreSQL backend is
// slow for its first seconds (on a small VM, ~15 s: the hypervisor's cost of
// new processes), while a pooler's backends are already warm. A whole-run
// average therefore flatters the pooler; the headline figures are the
// steady state, the mean of pgbench's per-second progress over the second
// half of each run. The whole-run ratio is reported alongside.
//
// The rows come in two sets, one per pool mode (-pool-modes): in session
// mode pgwrt and PgBouncer give each client a backend of its own; in
// transaction mode both share a pool of -pool-size backends between the
// clients, and each row also runs with a query protocol (pgbench -M) and
// compares pgwrt with PgBouncer directly. Each set has its own pgwrt and
// PgBouncer processes, stopped before the next set starts. HAProxy, which
// does not pool, runs in the session rows only.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"pgwrt/internal/pglab"
)

const benchUsage = `usage: pgwrt-lab bench [-pgwrt PATH] [-T 30s] [-standbys 0] [-scale 10]
                       [-clients 8,32] [-workloads select-only,tpcb-like] [-rounds 3]
                       [-pool-modes session,transaction] [-pool-size 16] [-txn-protocols simple,extended]
                       [-pgbouncer PATH|none] [-haproxy PATH|none] [-io-engine auto] [-out FILE.md]`

// Pool modes, of pgwrt and PgBouncer alike.
const (
	poolSession     = "session"
	poolTransaction = "transaction"
)

// benchOptions are bench's flags.
type benchOptions struct {
	pgwrt     string        // binary; "" builds one
	pgbouncer string        // PgBouncer binary; "" looks for one, "none" runs none
	haproxy   string        // HAProxy binary; likewise
	engine    string        // pgwrt's io_engine
	duration  time.Duration // pgbench -T per run
	standbys  int
	scale     int
	clients   []int
	workloads []string
	rounds    int      // rounds per (workload, clients)
	out       string   // markdown file, "" for none
	poolModes []string // poolSession, poolTransaction: a set of rows for each, in this order
	poolSize  int      // transaction mode: pgwrt's pool_size and PgBouncer's default_pool_size
	// txnProtocols are the query protocols (pgbench -M) of the
	// transaction-mode rows; the session rows use pgbench's default, simple.
	txnProtocols []string
}

// benchResult is tps and average latency, of a run or over rounds.
type benchResult struct {
	tps       float64
	latencyMS float64
}

// benchRun is one pgbench run.
type benchRun struct {
	whole  benchResult // pgbench's summary: the whole run, without initial connection time
	steady benchResult // the second half of the run, from its per-second progress
	// cpuUS is the proxy process's CPU time (user + system) per
	// transaction over the whole run, in µs; 0 for direct runs. It moves
	// far less from run to run than tps on a shared machine.
	cpuUS float64
}

// benchRound is one run direct, one through pgwrt and one through each
// comparison proxy, back to back.
type benchRound struct {
	direct, pgwrt benchRun
	others        []benchRun // the comparison proxies', in the report's order
}

// ratioOf is a over b; ok is false without a b above 0.
func ratioOf(a, b float64) (ratio float64, ok bool) {
	if b <= 0 {
		return 0, false
	}
	return a / b, true
}

// ratio is pgwrt's steady-state tps over direct's.
func (r benchRound) ratio() (float64, bool) { return r.ratioOver(r.pgwrt) }

// wholeRatio is pgwrt's whole-run tps over direct's.
func (r benchRound) wholeRatio() (float64, bool) {
	return ratioOf(r.pgwrt.whole.tps, r.direct.whole.tps)
}

// ratioOver is run's steady-state tps over the round's direct run's.
func (r benchRound) ratioOver(run benchRun) (float64, bool) {
	return ratioOf(run.steady.tps, r.direct.steady.tps)
}

// ratioStats summarises per-round ratios.
type ratioStats struct {
	median, min, max float64
	n                int // rounds with a ratio
}

func newRatioStats(qs []float64) ratioStats {
	if len(qs) == 0 {
		return ratioStats{}
	}
	return ratioStats{median: median(qs), min: slices.Min(qs), max: slices.Max(qs), n: len(qs)}
}

// text is the median, "0.75", or "-" without any ratio.
func (s ratioStats) text() string { return ratioText(s.median, s.n > 0) }

// rangeText is the smallest and largest ratio, "0.70–0.78".
func (s ratioStats) rangeText() string {
	if s.n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f–%.2f", s.min, s.max)
}

// benchRow is one line of the table: a workload at a client count, direct,
// through pgwrt and through each comparison proxy, summarised over its
// rounds.
type benchRow struct {
	workload   string
	clients    int
	protocol   string      // pgbench -M; "" for its default (simple), as in session mode
	direct     benchResult // steady-state medians over the rounds, tps and latency
	pgwrt      sideStats
	wholeRatio ratioStats  // per-round whole-run ratios pgwrt/direct
	others     []sideStats // the comparison proxies', in the rounds' order
}

// sideStats summarises the runs through one proxy: medians of the
// steady-state tps and latency, the per-round steady-state ratios to
// direct, and the median CPU µs per transaction of the proxy process.
// For a comparison proxy, pgwrtOver is the per-round ratios of pgwrt's
// steady-state tps to its.
type sideStats struct {
	benchResult
	ratio     ratioStats
	cpuUS     float64
	pgwrtOver ratioStats
}

// newBenchRow summarises rounds: medians of the steady-state tps and
// latency on each side, and the median and range of the per-round ratios
// (not the ratio of the median tps, which may pair runs from different
// rounds).
func newBenchRow(workload string, clients int, rounds []benchRound) benchRow {
	row := benchRow{workload: workload, clients: clients}
	var dTPS, dLat, whole []float64
	for _, r := range rounds {
		dTPS = append(dTPS, r.direct.steady.tps)
		dLat = append(dLat, r.direct.steady.latencyMS)
		if q, ok := r.wholeRatio(); ok {
			whole = append(whole, q)
		}
	}
	row.direct = benchResult{tps: median(dTPS), latencyMS: median(dLat)}
	row.wholeRatio = newRatioStats(whole)
	row.pgwrt = newSideStats(rounds, func(r benchRound) benchRun { return r.pgwrt })
	if len(rounds) > 0 {
		for i := range rounds[0].others {
			row.others = append(row.others, newSideStats(rounds, func(r benchRound) benchRun { return r.others[i] }))
		}
	}
	return row
}

// newSideStats summarises the run that side picks from each round.
func newSideStats(rounds []benchRound, side func(benchRound) benchRun) sideStats {
	var tps, lat, cpu, ratios, over []float64
	for _, r := range rounds {
		run := side(r)
		tps = append(tps, run.steady.tps)
		lat = append(lat, run.steady.latencyMS)
		cpu = append(cpu, run.cpuUS)
		if q, ok := r.ratioOver(run); ok {
			ratios = append(ratios, q)
		}
		if q, ok := ratioOf(r.pgwrt.steady.tps, run.steady.tps); ok {
			over = append(over, q)
		}
	}
	return sideStats{benchResult: benchResult{tps: median(tps), latencyMS: median(lat)}, ratio: newRatioStats(ratios), cpuUS: median(cpu),
		pgwrtOver: newRatioStats(over)}
}

// median of xs (the mean of the middle two for an even count); 0 for none.
// xs is not modified.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Where a run's pgbench connects; a comparison proxy's side also names its
// columns.
const (
	sideDirect  = "direct"
	sidePgwrt   = "pgwrt"
	sidePgb     = "pgbouncer"
	sideHaproxy = "haproxy"
)

// roundOrder is the order of the runs in round (from 1): sides rotated
// left by round-1, so a drift in the machine's speed favours no side.
// With direct and pgwrt that alternates; with PgBouncer too it is direct,
// pgwrt, pgbouncer, then pgwrt, pgbouncer, direct, and so on.
func roundOrder(round int, sides []string) []string {
	if len(sides) == 0 {
		return nil
	}
	k := (round - 1) % len(sides)
	if k < 0 {
		k += len(sides)
	}
	return append(slices.Clone(sides[k:]), sides[:k]...)
}

// benchReport is everything bench measured in one pool mode.
type benchReport struct {
	opt      benchOptions
	mode     string // poolSession ("" too) or poolTransaction
	poolSize int    // transaction mode: pgwrt's and PgBouncer's pool size
	rows     []benchRow
	idleKB   int // pgwrt VmRSS before the runs
	peakKB   int // max VmRSS sampled during the runs through pgwrt
	hwmKB    int // pgwrt VmHWM at the end
	pgVer    string
	protocol string
	proxies  []*comparison // the comparison proxies that ran, in column order
	engine   string        // how pgwrt forwarded (its log says)
}

// transaction is whether r is the transaction-mode set of rows.
func (r *benchReport) transaction() bool { return r.mode == poolTransaction }

// comparison is a proxy bench sets beside pgwrt: PgBouncer or HAProxy.
type comparison struct {
	side    string        // its side in the rounds and its columns' prefix: "pgbouncer"
	name    string        // "PgBouncer"
	how     string        // how it runs: "session mode, pool as large as the clients"
	version string        // "PgBouncer 1.18.0"
	p       *pgwrtProcess // nil in tests
}

// benchPool is how the poolers pool in a set of rows: the mode, and the
// most backends of a pool (in session mode as many as the clients).
type benchPool struct {
	mode string
	size int
}

// comparisonKind is a comparison proxy bench knows how to run.
type comparisonKind struct {
	side, name string
	flagValue  func(benchOptions) string
	missing    string // a hint where the binary is not found
	// pools is whether it pools, and so runs in the transaction-mode rows.
	pools bool
	how   func(benchPool) string // comparison.how
	// start runs bin in front of primary listening on addr, room for
	// maxClients, pooling as pool says, its files in dir (an empty
	// directory the caller removes), and returns once the process runs,
	// with its version.
	start func(ctx context.Context, bin, dir, addr string, primary *pglab.Node, maxClients int, pool benchPool) (*pgwrtProcess, string, error)
}

// comparisonKinds are the comparison proxies in column order.
var comparisonKinds = []comparisonKind{
	{side: sidePgb, name: "PgBouncer", flagValue: func(o benchOptions) string { return o.pgbouncer },
		missing: "sh .ci/install-deps bench installs Debian's", pools: true, how: pgbouncerHow, start: startPgbouncer},
	{side: sideHaproxy, name: "HAProxy", flagValue: func(o benchOptions) string { return o.haproxy },
		how: func(benchPool) string { return "TCP mode, no pooling, one thread per CPU" }, start: startHaproxy},
}

// pgbouncerHow says how PgBouncer pools, for the report.
func pgbouncerHow(pool benchPool) string {
	if pool.mode == poolTransaction {
		return fmt.Sprintf("transaction mode, default_pool_size %d", pool.size)
	}
	return "session mode, pool as large as the clients"
}

var txnProtocolFlags = map[string]bool{"simple": true, "extended": true}

var workloadFlags = map[string]string{"select-only": "-S", "tpcb-like": ""}

func parseBenchFlags(args []string, stderr io.Writer) (benchOptions, error) {
	fs := flag.NewFlagSet("pgwrt-lab bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, benchUsage); fs.PrintDefaults() }
	var o benchOptions
	fs.StringVar(&o.pgwrt, "pgwrt", "", "pgwrt binary (default: go build ./cmd/pgwrt into a temporary directory)")
	fs.StringVar(&o.pgbouncer, "pgbouncer", "", `PgBouncer binary to compare with (default: pgbouncer in PATH or /usr/sbin, if any; "none": no PgBouncer)`)
	fs.StringVar(&o.haproxy, "haproxy", "", `HAProxy binary to compare with (default: haproxy in PATH or /usr/sbin, if any; "none": no HAProxy)`)
	fs.DurationVar(&o.duration, "T", 30*time.Second, "duration of each pgbench run (whole seconds); the steady state is its second half")
	fs.IntVar(&o.standbys, "standbys", 0, "standbys in the lab cluster (0 or more)")
	fs.IntVar(&o.scale, "scale", 10, "pgbench -i scale factor")
	clients := fs.String("clients", "8,32", "client counts, comma-separated")
	workloads := fs.String("workloads", "select-only,tpcb-like", "pgbench workloads, comma-separated: select-only, tpcb-like")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds per workload and client count, each a direct, a pgwrt and a run through each comparison proxy back to back in rotating order")
	fs.StringVar(&o.out, "out", "", "also write the table as markdown to this file")
	fs.StringVar(&o.engine, "io-engine", "auto", "pgwrt's io_engine: auto, io_uring, epoll or goroutines")
	modes := fs.String("pool-modes", "session,transaction", "pool modes of pgwrt and PgBouncer, comma-separated, a set of rows each: session, transaction")
	fs.IntVar(&o.poolSize, "pool-size", 16, "transaction mode: pgwrt's pool_size and PgBouncer's default_pool_size")
	protocols := fs.String("txn-protocols", "simple,extended", "query protocols (pgbench -M) of the transaction-mode rows, comma-separated: simple, extended "+
		"(not prepared: with a transaction pooler, pgbench -M prepared needs a thread per client, since its blocking first PQprepare waits for a backend another client of its thread holds); the session rows use simple")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, errors.New(benchUsage)
	}
	if o.duration < time.Second {
		return o, fmt.Errorf("-T %s: at least 1s", o.duration)
	}
	if o.scale < 1 || o.standbys < 0 {
		return o, errors.New("-scale must be at least 1 and -standbys at least 0")
	}
	if o.rounds < 1 {
		return o, fmt.Errorf("-rounds %d: at least 1", o.rounds)
	}
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return o, fmt.Errorf("-clients: bad count %q", s)
		}
		o.clients = append(o.clients, n)
	}
	for _, w := range strings.Split(*workloads, ",") {
		w = strings.TrimSpace(w)
		if _, ok := workloadFlags[w]; !ok {
			return o, fmt.Errorf("-workloads: unknown workload %q (select-only, tpcb-like)", w)
		}
		o.workloads = append(o.workloads, w)
	}
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if m != poolSession && m != poolTransaction {
			return o, fmt.Errorf("-pool-modes: unknown pool mode %q (session, transaction)", m)
		}
		if slices.Contains(o.poolModes, m) {
			return o, fmt.Errorf("-pool-modes: %s twice", m)
		}
		o.poolModes = append(o.poolModes, m)
	}
	if o.poolSize < 1 {
		return o, fmt.Errorf("-pool-size %d: at least 1", o.poolSize)
	}
	for _, p := range strings.Split(*protocols, ",") {
		p = strings.TrimSpace(p)
		if p == "prepared" {
			return o, errors.New("-txn-protocols: not prepared: with a transaction pooler pgbench -M prepared needs a thread per client (its blocking first PQprepare waits for a backend another client of its thread holds), which the other rows do not have")
		}
		if !txnProtocolFlags[p] {
			return o, fmt.Errorf("-txn-protocols: unknown protocol %q (simple, extended)", p)
		}
		if slices.Contains(o.txnProtocols, p) {
			return o, fmt.Errorf("-txn-protocols: %s twice", p)
		}
		o.txnProtocols = append(o.txnProtocols, p)
	}
	return o, nil
}

// bench runs the whole benchmark: a fresh cluster, pgbench -i on the
// primary, then for each pool mode every (workload, clients) pair (in
// transaction mode, every (workload, protocol, clients)) direct, through
// pgwrt and through each comparison proxy, opt.rounds times.
// Everything it started is stopped when it returns.
func bench(args []string, stdout, stderr io.Writer) error {
	opt, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }
	reps, err := runBench(ctx, opt, logf)
	if err != nil {
		return err
	}
	var md strings.Builder
	for _, rep := range reps {
		fmt.Fprintln(stdout)
		if len(reps) > 1 {
			fmt.Fprintf(stdout, "%s:\n", rep.title())
			fmt.Fprintf(&md, "**%s**\n\n", rep.title())
		}
		rep.writeTable(stdout)
		md.WriteString(rep.markdown())
		md.WriteString("\n")
	}
	if opt.out != "" {
		if err := os.WriteFile(opt.out, []byte(strings.TrimSuffix(md.String(), "\n")), 0o644); err != nil {
			return err
		}
		logf("wrote %s", opt.out)
	}
	return nil
}

// durationSecs is -T in whole seconds, as given to pgbench.
func durationSecs(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

// benchMaxConnections is the lab primary's max_connections: room for the
// clients of a direct run beside the idle backends the poolers keep from
// their runs (in session mode pgwrt's cache and PgBouncer's pool, as many
// as the clients each; in transaction mode a pool each), with some to
// spare, and at least 200, as before there were transaction-mode rows.
func benchMaxConnections(maxClients, poolSize int) int {
	return max(200, 3*maxClients+32, maxClients+2*poolSize+32)
}

// benchEnv is what the sets of rows share: the cluster, the binaries.
type benchEnv struct {
	opt       benchOptions
	logf      func(string, ...any)
	tmp       string // a private directory for config files
	pgwrt     string // pgwrt binary
	proxyBins []string
	pgbench   string
	psql      string
	cluster   *pglab.Cluster
	pgVer     string
}

func runBench(ctx context.Context, opt benchOptions, logf func(string, ...any)) ([]*benchReport, error) {
	pgbin, err := pglab.PGBin()
	if err != nil {
		return nil, err
	}
	e := &benchEnv{opt: opt, logf: logf, pgbench: filepath.Join(pgbin, "pgbench"), psql: filepath.Join(pgbin, "psql")}
	if _, err := os.Stat(e.pgbench); err != nil {
		return nil, fmt.Errorf("pgbench not found in %s", pgbin)
	}
	e.proxyBins = make([]string, len(comparisonKinds))
	for i, k := range comparisonKinds {
		if e.proxyBins[i], err = findProxy(k.side, k.flagValue(opt)); err != nil {
			return nil, err
		}
		if e.proxyBins[i] == "" {
			hint := ""
			if k.missing != "" && k.flagValue(opt) == "" {
				hint = " (" + k.missing + ")"
			}
			logf("no %s (-%s %q): its columns are left out%s", k.name, k.side, k.flagValue(opt), hint)
		}
	}
	if e.tmp, err = os.MkdirTemp("", "pgwrt-bench-"); err != nil {
		return nil, err
	}
	defer os.RemoveAll(e.tmp)

	e.pgwrt = opt.pgwrt
	if e.pgwrt == "" {
		e.pgwrt = filepath.Join(e.tmp, "pgwrt")
		logf("building pgwrt")
		if err := buildPgwrt(ctx, e.pgwrt); err != nil {
			return nil, err
		}
	}

	standbys := opt.standbys
	if standbys == 0 {
		standbys = -1 // pglab: negative is none
	}
	logf("starting PostgreSQL (primary + %d standbys)", opt.standbys)
	maxConns := benchMaxConnections(slices.Max(opt.clients), opt.poolSize)
	if e.cluster, err = pglab.Start(ctx, pglab.Options{
		Standbys: standbys,
		// Room for the clients direct or through a proxy, beside the idle
		// pools of pgwrt and PgBouncer, and the whole scale-10 data set in
		// shared buffers.
		Conf: []string{fmt.Sprintf("max_connections = %d", maxConns), "shared_buffers = 256MB"},
		Logf: logf,
	}); err != nil {
		return nil, err
	}
	defer e.cluster.Stop()
	primary := e.cluster.Nodes[0]
	if v, err := primary.Query(ctx, "SHOW server_version"); err == nil {
		e.pgVer = strings.TrimSpace(v)
	}

	logf("pgbench -i -s %d on the primary", opt.scale)
	if _, err := runPgbench(ctx, e.pgbench, append(append([]string{"-i", "-q", "-s", strconv.Itoa(opt.scale)}, e.direct()...), pglab.AppDatabase), 0); err != nil {
		return nil, err
	}
	var reps []*benchReport
	for _, mode := range opt.poolModes {
		rep, err := e.runMode(ctx, mode)
		if err != nil {
			return nil, err
		}
		reps = append(reps, rep)
	}
	return reps, nil
}

// direct is pgbench's connection flags for the primary.
func (e *benchEnv) direct() []string {
	primary := e.cluster.Nodes[0]
	return []string{"-h", primary.Host, "-p", strconv.Itoa(primary.Port), "-U", pglab.AppUser}
}

// runMode runs the set of rows of one pool mode: it starts pgwrt and the
// comparison proxies that run in that mode, runs the rows and stops them.
func (e *benchEnv) runMode(ctx context.Context, mode string) (*benchReport, error) {
	opt, logf := e.opt, e.logf
	maxClients := slices.Max(opt.clients)
	pool := benchPool{mode: mode, size: maxClients}
	rep := &benchReport{opt: opt, mode: mode, protocol: "simple", pgVer: e.pgVer}
	if mode == poolTransaction {
		pool.size = opt.poolSize
		rep.poolSize = opt.poolSize
	}
	primary := e.cluster.Nodes[0]

	p, err := startPgwrt(ctx, e.pgwrt, filepath.Join(e.tmp, "pgwrt-"+mode+".toml"), benchConfig(e.cluster, opt.engine, pool, maxClients))
	if err != nil {
		return nil, err
	}
	defer p.stop()
	pgwrtHost, pgwrtPort, _ := strings.Cut(p.addr, ":")
	if err := p.waitLogin(ctx, e.psql, 30*time.Second); err != nil {
		return nil, err
	}
	logf("pgwrt %s in %s mode listening on %s", e.pgwrt, mode, p.addr)

	sides := []string{sideDirect, sidePgwrt}
	target := map[string][]string{
		sideDirect: e.direct(),
		sidePgwrt:  {"-h", pgwrtHost, "-p", pgwrtPort, "-U", pglab.AppUser},
	}
	procs := map[string]*pgwrtProcess{sidePgwrt: p}
	for i, k := range comparisonKinds {
		if e.proxyBins[i] == "" || (mode == poolTransaction && !k.pools) {
			continue
		}
		// Directly in tmp: PgBouncer run as the postgres OS user opens
		// its parent to others.
		dir := filepath.Join(e.tmp, mode+"-"+k.side)
		if err := os.Mkdir(dir, 0o700); err != nil {
			return nil, err
		}
		addr, err := freeLoopbackAddr()
		if err != nil {
			return nil, err
		}
		c := comparison{side: k.side, name: k.name, how: k.how(pool)}
		if c.p, c.version, err = k.start(ctx, e.proxyBins[i], dir, addr, primary, maxClients, pool); err != nil {
			return nil, err
		}
		defer c.p.stop()
		if err := c.p.waitLogin(ctx, e.psql, 30*time.Second); err != nil {
			return nil, err
		}
		logf("%s (%s, %s) listening on %s", c.version, e.proxyBins[i], c.how, c.p.addr)
		h, port, _ := strings.Cut(c.p.addr, ":")
		sides = append(sides, c.side)
		target[c.side] = []string{"-h", h, "-p", port, "-U", pglab.AppUser}
		procs[c.side] = c.p
		rep.proxies = append(rep.proxies, &c)
	}

	time.Sleep(time.Second) // let pgwrt settle before the idle sample
	if _, rep.idleKB, err = procMem(p.pid()); err != nil {
		return nil, err
	}
	logf("pgwrt idle VmRSS %s", mbText(rep.idleKB))

	// The session rows run with pgbench's default protocol, simple.
	protocols := []string{""}
	if mode == poolTransaction {
		protocols = opt.txnProtocols
	}
	var sampler rssSampler
	secs := durationSecs(opt.duration)
	for _, w := range opt.workloads {
		for _, proto := range protocols {
			for _, n := range opt.clients {
				args := []string{"-c", strconv.Itoa(n), "-j", "2", "-T", strconv.Itoa(secs), "-P", "1"}
				if f := workloadFlags[w]; f != "" {
					args = append(args, f)
				}
				label := w
				if proto != "" {
					args = append(args, "-M", proto)
					label += " -M " + proto
				}
				// runSide runs pgbench on side; through a proxy, with the
				// proxy's CPU time per transaction (and pgwrt's memory).
				runSide := func(side string) (benchRun, error) {
					a := append(append(slices.Clone(args), target[side]...), pglab.AppDatabase)
					proc := procs[side]
					if proc == nil {
						return runPgbench(ctx, e.pgbench, a, secs)
					}
					if side == sidePgwrt {
						defer sampler.start(proc.pid())()
					}
					c0, _ := procCPUTicks(proc.pid())
					r, err := runPgbench(ctx, e.pgbench, a, secs)
					c1, _ := procCPUTicks(proc.pid())
					if err != nil {
						return r, fmt.Errorf("%w\n%s log:\n%s", err, proc.name, proc.logTail())
					}
					r.cpuUS = cpuPerTx(c1-c0, r.whole.tps, secs)
					return r, nil
				}
				logf("%s mode, %s, %d clients, %d rounds of %s", mode, label, n, opt.rounds, strings.Join(sides, ", "))
				var rounds []benchRound
				for i := 1; i <= opt.rounds; i++ {
					r := benchRound{others: make([]benchRun, len(rep.proxies))}
					slot := map[string]*benchRun{sideDirect: &r.direct, sidePgwrt: &r.pgwrt}
					for j, c := range rep.proxies {
						slot[c.side] = &r.others[j]
					}
					for _, side := range roundOrder(i, sides) {
						if *slot[side], err = runSide(side); err != nil {
							return nil, err
						}
					}
					logf("  round %d: %s", i, r.logText(rep.proxies))
					rounds = append(rounds, r)
				}
				row := newBenchRow(w, n, rounds)
				row.protocol = proto
				logf("  median: %s", row.logText(rep.proxies))
				rep.rows = append(rep.rows, row)
			}
		}
	}
	rep.peakKB = sampler.max()
	if rep.hwmKB, _, err = procMem(p.pid()); err != nil {
		return nil, err
	}
	loops := "goroutines"
	if m := engineRE.FindStringSubmatch(p.logTail()); m != nil {
		loops = m[1]
	}
	rep.engine = loops
	if mode == poolTransaction {
		// Transaction-mode clients live on their own epoll loops
		// (router/txnloop_linux.go), which log when they start; the
		// session-mode loops start with the first session-mode link.
		rep.engine = "the client's goroutine, taking turns with the server"
		if strings.Contains(p.logTail(), "transaction-mode clients on epoll transaction loops") {
			rep.engine = "epoll transaction loops (clients parked on the loop between transactions)"
		}
	}
	logf("pgwrt forwarded with %s", rep.engine)
	return rep, nil
}

// logText is a round in a log line: steady-state tps, the steady-state
// ratios, the whole-run ratio and the proxies' CPU µs per transaction;
// proxies name the round's others.
func (r benchRound) logText(proxies []*comparison) string {
	tps, ratios := fmt.Sprintf("direct %.0f, pgwrt %.0f", r.direct.steady.tps, r.pgwrt.steady.tps), ""
	cpu := "pgwrt " + cpuText(r.pgwrt.cpuUS)
	for i, c := range proxies {
		if i < len(r.others) {
			tps += fmt.Sprintf(", %s %.0f", c.side, r.others[i].steady.tps)
			ratios += fmt.Sprintf(", %s ratio %s", c.side, ratioText(r.ratioOver(r.others[i])))
			cpu += fmt.Sprintf(", %s %s", c.side, cpuText(r.others[i].cpuUS))
		}
	}
	return fmt.Sprintf("%s tps steady; ratio %s%s; whole run direct %.0f, pgwrt %.0f, ratio %s; cpu us per tx %s",
		tps, ratioText(r.ratio()), ratios, r.direct.whole.tps, r.pgwrt.whole.tps, ratioText(r.wholeRatio()), cpu)
}

// logText is a row in a log line; proxies name its others.
func (row benchRow) logText(proxies []*comparison) string {
	tps, ratios := fmt.Sprintf("direct %.0f, pgwrt %.0f", row.direct.tps, row.pgwrt.tps), ""
	for i, c := range proxies {
		if i < len(row.others) {
			tps += fmt.Sprintf(", %s %.0f", c.side, row.others[i].tps)
			ratios += fmt.Sprintf(", %s ratio %s", c.side, row.others[i].ratio.text())
		}
	}
	return fmt.Sprintf("%s tps steady; ratio %s (range %s), whole-run ratio %s%s",
		tps, row.pgwrt.ratio.text(), row.pgwrt.ratio.rangeText(), row.wholeRatio.text(), ratios)
}

// buildPgwrt builds ./cmd/pgwrt of the module we are run in, as shipped
// (static, stripped).
func buildPgwrt(ctx context.Context, out string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return errors.New("no go tool to build pgwrt with; give -pgwrt PATH")
	}
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "pgwrt/cmd/pgwrt")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build pgwrt/cmd/pgwrt (run bench inside the pgwrt module, or give -pgwrt PATH): %v\n%s", err, b)
	}
	return nil
}

// benchConfig is pgwrt's config for the bench, pooling as pool says:
// room for twice maxClients pgbench clients (at least 64); in session mode
// a backend cached for each client (at least 32), in transaction mode
// pool_size pool.size; passwords checked.
func benchConfig(c *pglab.Cluster, engine string, pool benchPool, maxClients int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen = \"127.0.0.1:0\"\nmax_clients = %d\n", max(64, 2*maxClients))
	if pool.mode == poolTransaction {
		fmt.Fprintf(&b, "pool_mode = \"transaction\"\npool_size = %d\nmax_backend_connections = %d\n", pool.size, max(64, pool.size+16))
	} else {
		fmt.Fprintf(&b, "max_pool = %d\nmax_backend_connections = %d\n", max(32, maxClients), max(64, maxClients+16))
	}
	b.WriteString("log_level = \"info\"\n")
	fmt.Fprintf(&b, "io_engine = %q\n", engine)
	fmt.Fprintf(&b, "health_check_user = %q\nhealth_check_password = %q\n", pglab.SuperUser, pglab.SuperPassword)
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "\n[[backend]]\nname = %q\nhost = %q\nport = %d\n", n.Name, n.Host, n.Port)
	}
	b.WriteString("\n[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"all\"\nmethod = \"password\"\n")
	return b.String()
}

var (
	engineRE  = regexp.MustCompile(`msg="forwarding with (\w+)"`)
	tpsRE     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	latencyRE = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	failedRE  = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	// pgbench -P: "progress: 1.0 s, 8396.6 tps, lat 2.767 ms stddev 2.922, 0 failed"
	// (PostgreSQL 15; older ones end after the stddev). The time is the
	// end of the interval, in seconds since the start.
	progressRE = regexp.MustCompile(`(?m)^progress: ([0-9.]+) s, ([0-9.]+) tps, lat ([0-9.]+|-?nan|-?NaN) ms`)
)

// runPgbench runs pgbench with the app user's password and reads its
// whole-run TPS and average latency, and the steady state of the second
// half of its secs-second run from its progress lines (args must have
// -P 1). Nothing for -i.
func runPgbench(ctx context.Context, pgbench string, args []string, secs int) (benchRun, error) {
	cmd := exec.CommandContext(ctx, pgbench, args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pglab.AppPassword, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=20")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	desc := "pgbench " + strings.Join(args, " ")
	if err != nil {
		return benchRun{}, fmt.Errorf("%s: %v\n%s%s", desc, err, stdout.String(), lastLines(stderr.String(), 20))
	}
	if len(args) > 0 && args[0] == "-i" {
		return benchRun{}, nil
	}
	var r benchRun
	if r.whole, err = parsePgbench(desc, stdout.String()); err != nil {
		return r, err
	}
	r.steady = r.whole
	if s, ok := steadyState(parseProgress(stderr.String()), float64(secs)); ok {
		r.steady = s
	}
	return r, nil
}

func parsePgbench(desc, out string) (benchResult, error) {
	var r benchResult
	tps := tpsRE.FindStringSubmatch(out)
	lat := latencyRE.FindStringSubmatch(out)
	if tps == nil || lat == nil {
		return r, fmt.Errorf("%s: no tps or latency in its output:\n%s", desc, out)
	}
	if f := failedRE.FindStringSubmatch(out); f != nil && f[1] != "0" {
		return r, fmt.Errorf("%s: %s failed transactions:\n%s", desc, f[1], out)
	}
	r.tps, _ = strconv.ParseFloat(tps[1], 64)
	r.latencyMS, _ = strconv.ParseFloat(lat[1], 64)
	return r, nil
}

// progressInterval is one pgbench progress line: the interval from start
// to end (seconds since the run began) and its tps and average latency.
type progressInterval struct {
	start, end float64
	tps        float64
	latencyMS  float64 // NaN when pgbench printed none
}

// parseProgress reads pgbench's progress lines; an interval starts where
// the one before ended (the first at 0).
func parseProgress(out string) []progressInterval {
	var iv []progressInterval
	prev := 0.0
	for _, m := range progressRE.FindAllStringSubmatch(out, -1) {
		end, err1 := strconv.ParseFloat(m[1], 64)
		tps, err2 := strconv.ParseFloat(m[2], 64)
		if err1 != nil || err2 != nil || end <= prev {
			continue
		}
		lat, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			lat = math.NaN()
		}
		iv = append(iv, progressInterval{start: prev, end: end, tps: tps, latencyMS: lat})
		prev = end
	}
	return iv
}

// steadyState is the mean over the intervals of the second half of a run
// of secs seconds, those starting at secs/2 or later: tps weighted by the
// intervals' lengths (the plain mean for pgbench -P 1), latency by their
// transactions. Without such an interval (a run too short) it is the last
// interval; ok is false without any.
func steadyState(iv []progressInterval, secs float64) (r benchResult, ok bool) {
	var second []progressInterval
	for _, x := range iv {
		if x.start >= secs/2 {
			second = append(second, x)
		}
	}
	if len(second) == 0 {
		if len(iv) == 0 {
			return r, false
		}
		second = iv[len(iv)-1:]
	}
	var span, txs, latSum float64
	for _, x := range second {
		d := x.end - x.start
		span += d
		r.tps += x.tps * d
		if n := x.tps * d; n > 0 && !math.IsNaN(x.latencyMS) {
			txs += n
			latSum += x.latencyMS * n
		}
	}
	r.tps /= span
	if txs > 0 {
		r.latencyMS = latSum / txs
	}
	return r, true
}

func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// ---- the pgwrt, PgBouncer and HAProxy processes ----

// pgwrtProcess is a pgwrt (or PgBouncer, HAProxy) process we started, with
// the last lines of its log.
type pgwrtProcess struct {
	name string // "pgwrt", "PgBouncer", "HAProxy"
	cmd  *exec.Cmd
	addr string
	done chan struct{}

	mu  sync.Mutex
	log []string // the last lines of its stderr
}

var startedRE = regexp.MustCompile(`msg="pgwrt started".* listen=(\S+)`)

// startPgwrt writes config to path and runs `bin run -c path`; it returns
// once pgwrt has logged the address it listens on.
func startPgwrt(ctx context.Context, bin, path, config string) (*pgwrtProcess, error) {
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "run", "-c", path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p, addr, err := startLogged(ctx, "pgwrt", cmd, startedRE)
	if err != nil {
		return nil, err
	}
	p.addr = addr
	return p, nil
}

// startLogged starts cmd and returns once a line of its stderr matches
// ready, with the line's first submatch; with a nil ready, right away (the
// caller waits for it some other way).
func startLogged(ctx context.Context, name string, cmd *exec.Cmd, ready *regexp.Regexp) (*pgwrtProcess, string, error) {
	p := &pgwrtProcess{name: name, cmd: cmd, done: make(chan struct{})}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, "", err
	}
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			if p.log = append(p.log, line); len(p.log) > 200 {
				p.log = p.log[len(p.log)-100:]
			}
			p.mu.Unlock()
			if ready == nil {
				continue
			}
			if m := ready.FindStringSubmatch(line); m != nil {
				select {
				case started <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		p.cmd.Wait()
		close(p.done)
	}()
	if ready == nil {
		return p, "", nil
	}
	select {
	case m := <-started:
		return p, m, nil
	case <-p.done:
		return nil, "", fmt.Errorf("%s exited at start:\n%s", name, p.logTail())
	case <-ctx.Done():
		p.stop()
		return nil, "", ctx.Err()
	case <-time.After(20 * time.Second):
		p.stop()
		return nil, "", fmt.Errorf("%s did not start within 20s:\n%s", name, p.logTail())
	}
}

func (p *pgwrtProcess) pid() int { return p.cmd.Process.Pid }

func (p *pgwrtProcess) logTail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, "\n")
}

// stop sends SIGTERM and waits for the exit; SIGKILL after 10 s.
func (p *pgwrtProcess) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// waitLogin runs `psql -c 'SELECT 1'` through the process until it works:
// pgwrt has found the primary, PgBouncer or HAProxy reaches it.
func (p *pgwrtProcess) waitLogin(ctx context.Context, psql string, d time.Duration) error {
	host, port, _ := strings.Cut(p.addr, ":")
	end := time.Now().Add(d)
	for {
		cmd := exec.CommandContext(ctx, psql, "-X", "-At", "-h", host, "-p", port, "-U", pglab.AppUser, "-d", pglab.AppDatabase, "-c", "SELECT 1")
		cmd.Env = append(os.Environ(), "PGPASSWORD="+pglab.AppPassword, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=5")
		out, err := cmd.CombinedOutput()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited:\n%s", p.name, p.logTail())
		default:
		}
		if time.Now().After(end) {
			return fmt.Errorf("no login through %s within %s: %v: %s\n%s log:\n%s", p.name, d, err, out, p.name, p.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// findProxy resolves the flag -name of the comparison proxy name
// ("pgbouncer", "haproxy"): "none" is none, "" is name in PATH or /usr/sbin
// if there is one (else none), anything else must be an executable.
func findProxy(name, flagValue string) (string, error) {
	switch flagValue {
	case "none":
		return "", nil
	case "":
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		if p, err := exec.LookPath("/usr/sbin/" + name); err == nil {
			return p, nil
		}
		return "", nil
	}
	p, err := exec.LookPath(flagValue)
	if err != nil {
		return "", fmt.Errorf("-%s: %w", name, err)
	}
	return p, nil
}

var pgbouncerUpRE = regexp.MustCompile(`LOG process up: (PgBouncer [^,\s]+)`)

// startPgbouncer runs PgBouncer in pool.mode in front of primary on addr,
// with pools of pool.size server connections, room for maxClients, and the
// app user's password, its files in dir; it returns once PgBouncer is up,
// with its version. As root it runs as the postgres OS user (PgBouncer refuses
// root), who is given dir and must be able to reach it: dir's parent is
// opened to others for that (the files there stay private).
func startPgbouncer(ctx context.Context, bin, dir, addr string, primary *pglab.Node, maxClients int, pool benchPool) (*pgwrtProcess, string, error) {
	cred, err := postgresCredential()
	if err != nil {
		return nil, "", err
	}
	if cred != nil {
		if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
			return nil, "", err
		}
	}
	host, port, _ := strings.Cut(addr, ":")
	ini, auth := filepath.Join(dir, "pgbouncer.ini"), filepath.Join(dir, "userlist.txt")
	files := map[string]string{
		ini:  pgbouncerConfig(primary.Host, primary.Port, host, port, auth, dir, pool, maxClients),
		auth: fmt.Sprintf("%q %q\n", pglab.AppUser, pglab.AppPassword),
	}
	for path, text := range files {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return nil, "", err
		}
	}
	if cred != nil {
		for _, path := range []string{dir, ini, auth} {
			if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, "", err
			}
		}
	}
	cmd := exec.Command(bin, ini)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	p, version, err := startLogged(ctx, "PgBouncer", cmd, pgbouncerUpRE)
	if err != nil {
		return nil, "", err
	}
	p.addr = addr
	return p, version, nil
}

// pgbouncerConfig is PgBouncer's ini: pool.mode with pools of pool.size,
// room for twice maxClients clients (at least 200), every database on the
// primary, clients authenticated with the plain passwords of authFile
// (which PgBouncer also uses towards the server), no Unix socket.
func pgbouncerConfig(serverHost string, serverPort int, host, port, authFile, dir string, pool benchPool, maxClients int) string {
	return fmt.Sprintf(`[databases]
* = host=%s port=%d

[pgbouncer]
listen_addr = %s
listen_port = %s
unix_socket_dir =
auth_type = plain
auth_file = %s
pool_mode = %s
default_pool_size = %d
max_client_conn = %d
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
logfile = %s
pidfile = %s
`, serverHost, serverPort, host, port, authFile, cmp.Or(pool.mode, poolSession), pool.size, max(200, 2*maxClients),
		filepath.Join(dir, "pgbouncer.log"), filepath.Join(dir, "pgbouncer.pid"))
}

// postgresCredential is the postgres OS user's when we are root, else nil
// (run as ourselves).
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PgBouncer refuses to run as root, and there is no postgres OS user to run it as: %w", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("postgres OS user: bad uid %q or gid %q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// ---- memory ----

// procMem reads VmHWM (peak) and VmRSS of pid, in KiB.
// procCPUTicks is a process's user + system CPU time so far, in clock
// ticks (fields 14 and 15 of /proc/PID/stat).
func procCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(b)
}

// parseProcStatCPU reads utime + stime from a /proc/PID/stat line. The
// command name (field 2) may hold spaces and parentheses: count from the
// last ')'.
func parseProcStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat line")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat line")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed /proc stat times")
	}
	return ut + st, nil
}

// clockTicksPerSec is USER_HZ, 100 on every Linux architecture pgwrt builds
// for.
const clockTicksPerSec = 100

// cpuPerTx is CPU µs per transaction for ticks spent over a run of secs at
// tps (pgbench's whole-run figure).
func cpuPerTx(ticks int64, tps float64, secs int) float64 {
	tx := tps * float64(secs)
	if tx <= 0 || ticks < 0 {
		return 0
	}
	return float64(ticks) * (1e6 / clockTicksPerSec) / tx
}

// cpuText is a CPU µs per transaction cell, "31", or "-" when unmeasured.
func cpuText(us float64) string {
	if us <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", us)
}

func procMem(pid int) (hwm, rss int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcMem(b)
}

func parseProcMem(status []byte) (hwm, rss int, err error) {
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmHWM" && k != "VmRSS") {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc status: bad %s line %q", k, line)
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			return 0, 0, fmt.Errorf("/proc status: bad %s line %q", k, line)
		}
		if k == "VmHWM" {
			hwm = n
		} else {
			rss = n
		}
	}
	if hwm == 0 || rss == 0 {
		return 0, 0, errors.New("/proc status: no VmHWM or VmRSS")
	}
	return hwm, rss, nil
}

// rssSampler keeps the largest VmRSS seen while sampling.
type rssSampler struct {
	mu    sync.Mutex
	maxKB int
}

// start polls pid's VmRSS every 100 ms until the returned func is called.
func (s *rssSampler) start(pid int) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if _, rss, err := procMem(pid); err == nil {
				s.mu.Lock()
				s.maxKB = max(s.maxKB, rss)
				s.mu.Unlock()
			}
			select {
			case <-quit:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(quit); <-done }
}

func (s *rssSampler) max() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxKB
}

func mbText(kb int) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

// ---- output ----

func ratioText(q float64, ok bool) string {
	if !ok {
		return "-"
	}
	return fmt.Sprintf("%.2f", q)
}

// title names the set of rows, above its table when there are several.
func (r *benchReport) title() string {
	if r.transaction() {
		return fmt.Sprintf("Transaction mode, pool size %d", r.poolSize)
	}
	return "Session mode"
}

func (r *benchReport) conditions() string {
	ver := r.pgVer
	if ver == "" {
		ver = "15"
	}
	rounds := r.opt.rounds
	if rounds < 1 {
		rounds = 1
	}
	runs := "a direct and a pgwrt run back to back (direct first in odd rounds, pgwrt first in even ones)"
	var notes string
	if len(r.proxies) > 0 {
		names := []string{"direct", "pgwrt"}
		for _, c := range r.proxies {
			names = append(names, c.name)
			notes += fmt.Sprintf("; %s in %s, its ratio the median of the per-round steady-state ratios %s tps / direct tps", c.version, c.how, c.name)
			if r.transaction() {
				notes += fmt.Sprintf(", its ratio range their smallest and largest, pgwrt over %s the median of the per-round ratios pgwrt tps / %s tps", c.side, c.name)
			}
		}
		last := len(names) - 1
		runs = "one run per side (" + strings.Join(names[:last], ", ") + " and " + names[last] + ") back to back, the order rotated from round to round"
	}
	protocol, pgwrt := r.protocol+" query protocol", "pgwrt forwarding with "+r.engine
	if r.transaction() {
		protocol = "the row's query protocol (pgbench -M)"
		pgwrt = fmt.Sprintf("pgwrt in transaction mode, pool_size %d, forwarding with %s", r.poolSize, r.engine)
	}
	return fmt.Sprintf("PostgreSQL %s, pgbench scale %d, -T %ds -j 2 -P 1, %s, fsync off, primary + %d standbys; %s; "+
		"pgbench, PostgreSQL and pgwrt share one machine with %d CPUs; "+
		"%d rounds per row, each round %s; "+
		"tps and latency are steady state, the mean of pgbench's per-second progress over the second half of each run "+
		"(the fresh backends of a direct run ramp up for their first seconds, ~15 s on a small VM, while a pooler's are already warm), medians over the rounds; "+
		"ratio is the median of the per-round steady-state ratios (pgwrt tps / direct tps), ratio range their smallest and largest; "+
		"the whole-run ratio is the median of the per-round ratios of pgbench's whole-run tps (pgwrt / direct); "+
		"cpu us per tx is the proxy process's user + system CPU time over a whole run divided by its transactions, median over the rounds%s",
		ver, r.opt.scale, durationSecs(r.opt.duration), protocol, r.opt.standbys, pgwrt, runtime.NumCPU(), rounds, runs, notes)
}

func (r *benchReport) memory() string {
	return fmt.Sprintf("pgwrt RSS idle %s, peak under load %s (VmRSS sampled every 100 ms; VmHWM %s)",
		mbText(r.idleKB), mbText(r.peakKB), mbText(r.hwmKB))
}

// tableHeader is the columns of the text table (the markdown one spells
// them out, mdHeader); three for each comparison proxy that ran. In
// transaction mode also the row's protocol, and for each comparison proxy
// its ratio's range and pgwrt's tps over its, median and range.
func (r *benchReport) tableHeader() []string {
	h := []string{"workload", "clients"}
	if r.transaction() {
		h = append(h, "protocol")
	}
	h = append(h, "direct_tps", "pgwrt_tps", "ratio", "ratio_range", "whole_run_ratio", "pgwrt_cpu_us_per_tx")
	for _, c := range r.proxies {
		if r.transaction() {
			h = append(h, c.side+"_tps", c.side+"_ratio", c.side+"_ratio_range", c.side+"_cpu_us_per_tx", "pgwrt_over_"+c.side, "pgwrt_over_"+c.side+"_range")
			continue
		}
		h = append(h, c.side+"_tps", c.side+"_ratio", c.side+"_cpu_us_per_tx")
	}
	return append(h, "direct_lat_ms", "pgwrt_lat_ms")
}

// tableRow is row's cells under tableHeader.
func (r *benchReport) tableRow(row benchRow) []string {
	c := []string{row.workload, strconv.Itoa(row.clients)}
	if r.transaction() {
		c = append(c, cmp.Or(row.protocol, "simple"))
	}
	c = append(c, fmt.Sprintf("%.0f", row.direct.tps), fmt.Sprintf("%.0f", row.pgwrt.tps),
		row.pgwrt.ratio.text(), row.pgwrt.ratio.rangeText(), row.wholeRatio.text(), cpuText(row.pgwrt.cpuUS))
	for i := range r.proxies {
		if i >= len(row.others) {
			n := 3
			if r.transaction() {
				n = 6
			}
			c = append(c, slices.Repeat([]string{"-"}, n)...)
			continue
		}
		o := row.others[i]
		if r.transaction() {
			c = append(c, fmt.Sprintf("%.0f", o.tps), o.ratio.text(), o.ratio.rangeText(), cpuText(o.cpuUS), o.pgwrtOver.text(), o.pgwrtOver.rangeText())
			continue
		}
		c = append(c, fmt.Sprintf("%.0f", o.tps), o.ratio.text(), cpuText(o.cpuUS))
	}
	return append(c, fmt.Sprintf("%.3f", row.direct.latencyMS), fmt.Sprintf("%.3f", row.pgwrt.latencyMS))
}

func (r *benchReport) writeTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(r.tableHeader(), "\t")+"\t")
	for _, row := range r.rows {
		fmt.Fprintln(tw, strings.Join(r.tableRow(row), "\t")+"\t")
	}
	tw.Flush()
	fmt.Fprintln(w, r.memory())
	fmt.Fprintln(w, r.conditions())
}

// mdHeader turns a text table column into a markdown one: "direct_lat_ms"
// into "direct latency ms".
var mdHeader = strings.NewReplacer("_lat_", " latency ", "whole_run_", "whole-run ", "_", " ")

func (r *benchReport) markdown() string {
	var b strings.Builder
	h := r.tableHeader()
	for i := range h {
		h[i] = mdHeader.Replace(h[i])
	}
	b.WriteString("| " + strings.Join(h, " | ") + " |\n|---|")
	b.WriteString(strings.Repeat("--:|", len(h)-1) + "\n")
	for _, row := range r.rows {
		b.WriteString("| " + strings.Join(r.tableRow(row), " | ") + " |\n")
	}
	fmt.Fprintf(&b, "\n%s.\n\n%s.\n", r.memory(), r.conditions())
	return b.String()
}
