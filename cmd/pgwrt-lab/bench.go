package main

// pgwrt-lab bench: pgbench directly against a fresh primary and through a
// pgwrt binary in front of it, side by side, with pgwrt's memory.
//
// The machine is shared and its speed drifts between runs minutes apart, so
// each (workload, clients) pair runs several rounds; a round is one run
// direct and one through pgwrt back to back, the order alternating from
// round to round. A row reports medians over the rounds, and the ratio is
// the median of the per-round ratios: each ratio compares two runs made
// under the same conditions.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
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

	"pgwrt/cmd/pgwrt-lab/pglab"
)

const benchUsage = `usage: pgwrt-lab bench [-pgwrt PATH] [-T 15s] [-standbys 0] [-scale 10]
                       [-clients 8,32] [-workloads select-only,tpcb-like] [-rounds 3]
                       [-out FILE.md]`

// benchOptions are bench's flags.
type benchOptions struct {
	pgwrt     string        // binary; "" builds one
	duration  time.Duration // pgbench -T per run
	standbys  int
	scale     int
	clients   []int
	workloads []string
	rounds    int    // direct/pgwrt pairs per (workload, clients)
	out       string // markdown file, "" for none
}

// benchResult is one pgbench run.
type benchResult struct {
	tps       float64 // without initial connection time
	latencyMS float64 // average
}

// benchRound is one run direct and one through pgwrt, back to back.
type benchRound struct {
	direct, pgwrt benchResult
}

// ratio is pgwrt's tps over direct's; ok is false without a direct tps.
func (r benchRound) ratio() (ratio float64, ok bool) {
	if r.direct.tps <= 0 {
		return 0, false
	}
	return r.pgwrt.tps / r.direct.tps, true
}

// benchRow is one line of the table: a workload at a client count, direct
// and through pgwrt, summarised over its rounds.
type benchRow struct {
	workload      string
	clients       int
	direct, pgwrt benchResult // medians over the rounds, tps and latency each
	ratio         float64     // median of the per-round ratios
	ratioMin      float64     // smallest per-round ratio
	ratioMax      float64     // largest per-round ratio
	ratios        int         // rounds with a ratio (a direct tps above 0)
}

// newBenchRow summarises rounds: medians of tps and latency on each side,
// and the median and range of the per-round ratios (not the ratio of the
// median tps, which may pair runs from different rounds).
func newBenchRow(workload string, clients int, rounds []benchRound) benchRow {
	row := benchRow{workload: workload, clients: clients}
	var dTPS, pTPS, dLat, pLat, ratios []float64
	for _, r := range rounds {
		dTPS = append(dTPS, r.direct.tps)
		pTPS = append(pTPS, r.pgwrt.tps)
		dLat = append(dLat, r.direct.latencyMS)
		pLat = append(pLat, r.pgwrt.latencyMS)
		if q, ok := r.ratio(); ok {
			ratios = append(ratios, q)
		}
	}
	row.direct = benchResult{tps: median(dTPS), latencyMS: median(dLat)}
	row.pgwrt = benchResult{tps: median(pTPS), latencyMS: median(pLat)}
	if row.ratios = len(ratios); row.ratios > 0 {
		row.ratio = median(ratios)
		row.ratioMin, row.ratioMax = slices.Min(ratios), slices.Max(ratios)
	}
	return row
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

// directFirst tells whether round (from 1) runs direct before pgwrt: odd
// rounds do, even rounds run pgwrt first, so a drift in the machine's speed
// does not favour one side.
func directFirst(round int) bool { return round%2 == 1 }

// benchReport is everything bench measured.
type benchReport struct {
	opt      benchOptions
	rows     []benchRow
	idleKB   int // pgwrt VmRSS before the runs
	peakKB   int // max VmRSS sampled during the runs through pgwrt
	hwmKB    int // pgwrt VmHWM at the end
	pgVer    string
	protocol string
}

var workloadFlags = map[string]string{"select-only": "-S", "tpcb-like": ""}

func parseBenchFlags(args []string, stderr io.Writer) (benchOptions, error) {
	fs := flag.NewFlagSet("pgwrt-lab bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, benchUsage); fs.PrintDefaults() }
	var o benchOptions
	fs.StringVar(&o.pgwrt, "pgwrt", "", "pgwrt binary (default: go build ./cmd/pgwrt into a temporary directory)")
	fs.DurationVar(&o.duration, "T", 15*time.Second, "duration of each pgbench run (whole seconds)")
	fs.IntVar(&o.standbys, "standbys", 0, "standbys in the lab cluster (0 or more)")
	fs.IntVar(&o.scale, "scale", 10, "pgbench -i scale factor")
	clients := fs.String("clients", "8,32", "client counts, comma-separated")
	workloads := fs.String("workloads", "select-only,tpcb-like", "pgbench workloads, comma-separated: select-only, tpcb-like")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds per workload and client count, each a direct and a pgwrt run back to back in alternating order")
	fs.StringVar(&o.out, "out", "", "also write the table as markdown to this file")
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
	return o, nil
}

// bench runs the whole benchmark: a fresh cluster, pgbench -i on the
// primary, then every (workload, clients) pair direct and through pgwrt,
// opt.rounds times.
// Everything it started is stopped when it returns.
func bench(args []string, stdout, stderr io.Writer) error {
	opt, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, "bench: "+format+"\n", a...) }
	rep, err := runBench(ctx, opt, logf)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	rep.writeTable(stdout)
	if opt.out != "" {
		if err := os.WriteFile(opt.out, []byte(rep.markdown()), 0o644); err != nil {
			return err
		}
		logf("wrote %s", opt.out)
	}
	return nil
}

func runBench(ctx context.Context, opt benchOptions, logf func(string, ...any)) (*benchReport, error) {
	pgbin, err := pglab.PGBin()
	if err != nil {
		return nil, err
	}
	pgbench := filepath.Join(pgbin, "pgbench")
	if _, err := os.Stat(pgbench); err != nil {
		return nil, fmt.Errorf("pgbench not found in %s", pgbin)
	}
	tmp, err := os.MkdirTemp("", "pgwrt-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	bin := opt.pgwrt
	if bin == "" {
		bin = filepath.Join(tmp, "pgwrt")
		logf("building pgwrt")
		if err := buildPgwrt(ctx, bin); err != nil {
			return nil, err
		}
	}

	standbys := opt.standbys
	if standbys == 0 {
		standbys = -1 // pglab: negative is none
	}
	logf("starting PostgreSQL (primary + %d standbys)", opt.standbys)
	c, err := pglab.Start(ctx, pglab.Options{
		Standbys: standbys,
		// Room for the clients direct and through pgwrt at once, and the
		// whole scale-10 data set in shared buffers.
		Conf: []string{"max_connections = 200", "shared_buffers = 256MB"},
		Logf: logf,
	})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	primary := c.Nodes[0]
	rep := &benchReport{opt: opt, protocol: "simple"}
	if v, err := primary.Query(ctx, "SHOW server_version"); err == nil {
		rep.pgVer = strings.TrimSpace(v)
	}

	p, err := startPgwrt(ctx, bin, filepath.Join(tmp, "pgwrt.toml"), benchConfig(c))
	if err != nil {
		return nil, err
	}
	defer p.stop()
	pgwrtHost, pgwrtPort, _ := strings.Cut(p.addr, ":")
	if err := p.waitLogin(ctx, filepath.Join(pgbin, "psql"), 30*time.Second); err != nil {
		return nil, err
	}
	logf("pgwrt %s listening on %s", bin, p.addr)

	logf("pgbench -i -s %d on the primary", opt.scale)
	direct := []string{"-h", primary.Host, "-p", strconv.Itoa(primary.Port), "-U", pglab.AppUser}
	through := []string{"-h", pgwrtHost, "-p", pgwrtPort, "-U", pglab.AppUser}
	if _, err := runPgbench(ctx, pgbench, append(append([]string{"-i", "-q", "-s", strconv.Itoa(opt.scale)}, direct...), pglab.AppDatabase)); err != nil {
		return nil, err
	}

	time.Sleep(time.Second) // let pgwrt settle before the idle sample
	if _, rep.idleKB, err = procMem(p.pid()); err != nil {
		return nil, err
	}
	logf("pgwrt idle VmRSS %s", mbText(rep.idleKB))

	var sampler rssSampler
	secs := strconv.Itoa(int((opt.duration + time.Second - 1) / time.Second))
	for _, w := range opt.workloads {
		for _, n := range opt.clients {
			args := []string{"-c", strconv.Itoa(n), "-j", "2", "-T", secs}
			if f := workloadFlags[w]; f != "" {
				args = append(args, f)
			}
			runDirect := func() (benchResult, error) {
				return runPgbench(ctx, pgbench, append(append(append([]string(nil), args...), direct...), pglab.AppDatabase))
			}
			runThrough := func() (benchResult, error) {
				stopSampling := sampler.start(p.pid())
				r, err := runPgbench(ctx, pgbench, append(append(append([]string(nil), args...), through...), pglab.AppDatabase))
				stopSampling()
				if err != nil {
					return r, fmt.Errorf("%w\npgwrt log:\n%s", err, p.logTail())
				}
				return r, nil
			}
			logf("%s, %d clients, %d rounds of direct and through pgwrt", w, n, opt.rounds)
			var rounds []benchRound
			for i := 1; i <= opt.rounds; i++ {
				var r benchRound
				if directFirst(i) {
					if r.direct, err = runDirect(); err == nil {
						r.pgwrt, err = runThrough()
					}
				} else {
					if r.pgwrt, err = runThrough(); err == nil {
						r.direct, err = runDirect()
					}
				}
				if err != nil {
					return nil, err
				}
				logf("  round %d: direct %.0f, pgwrt %.0f, ratio %s", i, r.direct.tps, r.pgwrt.tps, ratioText(r.ratio()))
				rounds = append(rounds, r)
			}
			row := newBenchRow(w, n, rounds)
			logf("  median: direct %.0f, pgwrt %.0f, ratio %s (range %s)", row.direct.tps, row.pgwrt.tps, row.ratioText(), row.rangeText())
			rep.rows = append(rep.rows, row)
		}
	}
	rep.peakKB = sampler.max()
	if rep.hwmKB, _, err = procMem(p.pid()); err != nil {
		return nil, err
	}
	return rep, nil
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

// benchConfig is pgwrt's config for the bench: room for 32 pgbench
// clients, a backend cached for each, passwords checked.
func benchConfig(c *pglab.Cluster) string {
	var b strings.Builder
	b.WriteString("listen = \"127.0.0.1:0\"\nmax_clients = 64\nmax_pool = 32\nlog_level = \"info\"\n")
	fmt.Fprintf(&b, "health_check_user = %q\nhealth_check_password = %q\n", pglab.SuperUser, pglab.SuperPassword)
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "\n[[backend]]\nname = %q\nhost = %q\nport = %d\n", n.Name, n.Host, n.Port)
	}
	b.WriteString("\n[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"all\"\nmethod = \"password\"\n")
	return b.String()
}

var (
	tpsRE     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	latencyRE = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	failedRE  = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
)

// runPgbench runs pgbench with the app user's password and reads its TPS
// and average latency (zero for -i).
func runPgbench(ctx context.Context, pgbench string, args []string) (benchResult, error) {
	cmd := exec.CommandContext(ctx, pgbench, args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pglab.AppPassword, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=20")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	desc := "pgbench " + strings.Join(args, " ")
	if err != nil {
		return benchResult{}, fmt.Errorf("%s: %v\n%s%s", desc, err, stdout.String(), lastLines(stderr.String(), 20))
	}
	if len(args) > 0 && args[0] == "-i" {
		return benchResult{}, nil
	}
	return parsePgbench(desc, stdout.String())
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

func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// ---- the pgwrt process ----

type pgwrtProcess struct {
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
	p := &pgwrtProcess{done: make(chan struct{})}
	p.cmd = exec.Command(bin, "run", "-c", path)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
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
			if m := startedRE.FindStringSubmatch(line); m != nil {
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
	select {
	case p.addr = <-started:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("pgwrt exited at start:\n%s", p.logTail())
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	case <-time.After(20 * time.Second):
		p.stop()
		return nil, fmt.Errorf("pgwrt did not start within 20s:\n%s", p.logTail())
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

// waitLogin runs `psql -c 'SELECT 1'` through pgwrt until it works: pgwrt
// has found the primary.
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
		if time.Now().After(end) {
			return fmt.Errorf("no login through pgwrt within %s: %v: %s\npgwrt log:\n%s", d, err, out, p.logTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---- memory ----

// procMem reads VmHWM (peak) and VmRSS of pid, in KiB.
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

// ratioText is the row's median per-round ratio.
func (row benchRow) ratioText() string { return ratioText(row.ratio, row.ratios > 0) }

// rangeText is the smallest and largest per-round ratio, "0.70–0.78".
func (row benchRow) rangeText() string {
	if row.ratios == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f–%.2f", row.ratioMin, row.ratioMax)
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
	return fmt.Sprintf("PostgreSQL %s, pgbench scale %d, -T %ds -j 2, %s query protocol, fsync off, primary + %d standbys; "+
		"pgbench, PostgreSQL and pgwrt share one machine with %d CPUs; "+
		"%d rounds per row, each a direct and a pgwrt run back to back (direct first in odd rounds, pgwrt first in even ones); "+
		"tps and latency are medians over the rounds, ratio is the median of the per-round ratios (pgwrt tps / direct tps), "+
		"ratio range their smallest and largest",
		ver, r.opt.scale, int((r.opt.duration+time.Second-1)/time.Second), r.protocol, r.opt.standbys, runtime.NumCPU(), rounds)
}

func (r *benchReport) memory() string {
	return fmt.Sprintf("pgwrt RSS idle %s, peak under load %s (VmRSS sampled every 100 ms; VmHWM %s)",
		mbText(r.idleKB), mbText(r.peakKB), mbText(r.hwmKB))
}

func (r *benchReport) writeTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tclients\tdirect_tps\tpgwrt_tps\tratio\tratio_range\tdirect_lat_ms\tpgwrt_lat_ms\t")
	for _, row := range r.rows {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%s\t%s\t%.3f\t%.3f\t\n", row.workload, row.clients,
			row.direct.tps, row.pgwrt.tps, row.ratioText(), row.rangeText(), row.direct.latencyMS, row.pgwrt.latencyMS)
	}
	tw.Flush()
	fmt.Fprintln(w, r.memory())
	fmt.Fprintln(w, r.conditions())
}

func (r *benchReport) markdown() string {
	var b strings.Builder
	b.WriteString("| workload | clients | direct tps | pgwrt tps | ratio | ratio range | direct latency ms | pgwrt latency ms |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, row := range r.rows {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %s | %s | %.3f | %.3f |\n", row.workload, row.clients,
			row.direct.tps, row.pgwrt.tps, row.ratioText(), row.rangeText(), row.direct.latencyMS, row.pgwrt.latencyMS)
	}
	fmt.Fprintf(&b, "\n%s.\n\n%s.\n", r.memory(), r.conditions())
	return b.String()
}
