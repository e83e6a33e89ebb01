package main

import (
	"bytes"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"pgwrt/config"
	"pgwrt/internal/pglab"
)

// Output of PostgreSQL 15's pgbench.
const pgbenchOutput = `pgbench (15.14 (Debian 15.14-0+deb12u1))
starting vacuum...end.
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 15 s
number of transactions actually processed: 112345
number of failed transactions: 0 (0.000%)
latency average = 1.068 ms
initial connection time = 12.345 ms
tps = 7489.123456 (without initial connection time)
`

func TestParsePgbench(t *testing.T) {
	r, err := parsePgbench("pgbench", pgbenchOutput)
	if err != nil || r.tps != 7489.123456 || r.latencyMS != 1.068 {
		t.Fatalf("parsePgbench = %+v, %v", r, err)
	}
	failed := strings.Replace(pgbenchOutput, "failed transactions: 0 (0.000%)", "failed transactions: 3 (0.003%)", 1)
	if _, err := parsePgbench("pgbench", failed); err == nil || !strings.Contains(err.Error(), "3 failed") {
		t.Fatalf("failed transactions not reported: %v", err)
	}
	if _, err := parsePgbench("pgbench", "pgbench: error: connection refused\n"); err == nil {
		t.Fatal("no error for output without tps")
	}
}

func TestParseProcMem(t *testing.T) {
	status := "Name:\tpgwrt\nVmPeak:\t  712345 kB\nVmHWM:\t    9876 kB\nVmRSS:\t    7654 kB\nThreads:\t5\n"
	hwm, rss, err := parseProcMem([]byte(status))
	if err != nil || hwm != 9876 || rss != 7654 {
		t.Fatalf("parseProcMem = %d, %d, %v", hwm, rss, err)
	}
	if _, _, err := parseProcMem([]byte("Name:\tx\n")); err == nil {
		t.Fatal("no error without VmRSS")
	}
	hwm, rss, err = procMem(os.Getpid())
	if err != nil || hwm < rss || rss == 0 {
		t.Fatalf("procMem(self) = %d, %d, %v", hwm, rss, err)
	}
}

// pgbench -P 1's stderr: PostgreSQL 15's format with ", 0 failed", an
// older one without, and lines that are no progress.
const pgbenchProgress = `pgbench (15.14 (Debian 15.14-0+deb12u1))
progress: 1.0 s, 8396.6 tps, lat 2.767 ms stddev 2.922, 0 failed
progress: 2.0 s, 10000.0 tps, lat 2.000 ms stddev 1.500, 0 failed
progress: 3.0 s, 12000.0 tps, lat 1.500 ms stddev 1.000
pgbench: warning: something
progress: 4.0 s, 0.0 tps, lat nan ms stddev nan, 0 failed
progress: 5.0 s, 14000.0 tps, lat 1.250 ms stddev 0.900, 0 failed, 0 retried
`

func TestParseProgress(t *testing.T) {
	iv := parseProgress(pgbenchProgress)
	want := []progressInterval{
		{0, 1, 8396.6, 2.767}, {1, 2, 10000, 2}, {2, 3, 12000, 1.5}, {3, 4, 0, math.NaN()}, {4, 5, 14000, 1.25},
	}
	if len(iv) != len(want) {
		t.Fatalf("parseProgress = %+v, want %+v", iv, want)
	}
	for i, w := range want {
		g := iv[i]
		if g.start != w.start || g.end != w.end || g.tps != w.tps ||
			(g.latencyMS != w.latencyMS && !(math.IsNaN(g.latencyMS) && math.IsNaN(w.latencyMS))) {
			t.Errorf("interval %d = %+v, want %+v", i, g, w)
		}
	}
	if iv := parseProgress(pgbenchOutput); len(iv) != 0 {
		t.Errorf("progress in pgbench's summary: %+v", iv)
	}
}

func TestSteadyState(t *testing.T) {
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	// A 10-second run ramping up: the second half is the intervals from
	// 5 s on.
	var iv []progressInterval
	for i := range 10 {
		iv = append(iv, progressInterval{start: float64(i), end: float64(i + 1), tps: 1000 * float64(i+1), latencyMS: 10 / float64(i+1)})
	}
	r, ok := steadyState(iv, 10)
	// tps: mean of 6000..10000; latency weighted by transactions: 5
	// intervals of 10 ms·tx each over 40000 tx.
	if !ok || !near(r.tps, 8000) || !near(r.latencyMS, 5*10000/40000.0) {
		t.Fatalf("steadyState = %+v, %v", r, ok)
	}
	// The example output: over 5 s, the intervals from 2.5 s on are
	// 3–4 (no transactions, no latency) and 4–5.
	r, ok = steadyState(parseProgress(pgbenchProgress), 5)
	if !ok || !near(r.tps, 7000) || !near(r.latencyMS, 1.25) {
		t.Fatalf("steadyState(example) = %+v, %v", r, ok)
	}
	// Too short for a second half: the last interval.
	r, ok = steadyState(iv[:1], 2)
	if !ok || r != (benchResult{1000, 10}) {
		t.Fatalf("steadyState, one early interval = %+v, %v", r, ok)
	}
	if _, ok := steadyState(nil, 10); ok {
		t.Fatal("steadyState without intervals is ok")
	}
}

func TestBenchFlags(t *testing.T) {
	o, err := parseBenchFlags(nil, io.Discard)
	if err != nil || o.duration != 30*time.Second || o.scale != 10 || len(o.clients) != 2 || o.clients[1] != 32 ||
		strings.Join(o.workloads, ",") != "select-only,tpcb-like" || o.standbys != 0 || o.rounds != 3 || o.pgbouncer != "" || o.haproxy != "" ||
		strings.Join(o.poolModes, ",") != "session,transaction" || o.poolSize != 16 || strings.Join(o.txnProtocols, ",") != "simple,extended" {
		t.Fatalf("defaults = %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{"-T", "500ms"}, {"-clients", "8,x"}, {"-workloads", "tpcc"}, {"-scale", "0"}, {"-rounds", "0"}, {"extra"},
		{"-pool-modes", "statement"}, {"-pool-modes", ""}, {"-pool-modes", "session,session"}, {"-pool-size", "0"},
		{"-txn-protocols", "simple,simple"}, {"-txn-protocols", "pipeline"},
	} {
		if _, err := parseBenchFlags(bad, io.Discard); err == nil {
			t.Errorf("parseBenchFlags(%q) accepted", bad)
		}
	}
	if o, err := parseBenchFlags([]string{"-rounds", "5", "-pgbouncer", "none", "-haproxy", "/x/haproxy"}, io.Discard); err != nil ||
		o.rounds != 5 || o.pgbouncer != "none" || o.haproxy != "/x/haproxy" {
		t.Fatalf("-rounds 5 -pgbouncer none -haproxy /x/haproxy = %+v, %v", o, err)
	}
	o, err = parseBenchFlags([]string{"-pool-modes", "transaction, session", "-pool-size", "8", "-txn-protocols", "extended"}, io.Discard)
	if err != nil || strings.Join(o.poolModes, ",") != "transaction,session" || o.poolSize != 8 || strings.Join(o.txnProtocols, ",") != "extended" {
		t.Fatalf("-pool-modes transaction,session -pool-size 8 -txn-protocols extended = %+v, %v", o, err)
	}
	// pgbench -M prepared would need a thread per client through a
	// transaction pooler, unlike the other rows: refused, saying why.
	if _, err := parseBenchFlags([]string{"-txn-protocols", "simple,prepared"}, io.Discard); err == nil || !strings.Contains(err.Error(), "thread per client") {
		t.Errorf("-txn-protocols prepared: %v", err)
	}
}

// TestBenchConfig: pgwrt's config in each pool mode is one pgwrt accepts,
// with room for the clients; session mode at up to 32 clients as before
// there was a transaction mode.
func TestBenchConfig(t *testing.T) {
	c := &pglab.Cluster{Nodes: []*pglab.Node{{Name: "pg0", Host: "127.0.0.1", Port: 5433}}}
	for _, tc := range []struct {
		pool       benchPool
		maxClients int
		want, not  []string
	}{
		{benchPool{poolSession, 32}, 32, []string{"max_clients = 64\n", "max_pool = 32\n", "max_backend_connections = 64\n"}, []string{"pool_mode", "pool_size"}},
		{benchPool{poolSession, 128}, 128, []string{"max_clients = 256\n", "max_pool = 128\n", "max_backend_connections = 144\n"}, []string{"pool_mode"}},
		{benchPool{poolTransaction, 16}, 128, []string{"max_clients = 256\n", "pool_mode = \"transaction\"\n", "pool_size = 16\n", "max_backend_connections = 64\n"}, []string{"max_pool"}},
		{benchPool{poolTransaction, 100}, 8, []string{"max_clients = 64\n", "pool_size = 100\n", "max_backend_connections = 116\n"}, nil},
	} {
		text := benchConfig(c, "auto", tc.pool, tc.maxClients)
		for _, w := range append(tc.want, "io_engine = \"auto\"\n", "port = 5433\n", "method = \"password\"\n") {
			if !strings.Contains(text, w) {
				t.Errorf("%+v, %d clients: config lacks %q:\n%s", tc.pool, tc.maxClients, w, text)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(text, n) {
				t.Errorf("%+v, %d clients: config has %q:\n%s", tc.pool, tc.maxClients, n, text)
			}
		}
		cfg, err := config.ParseTOML("bench.toml", []byte(text))
		if err != nil {
			t.Fatalf("%+v: pgwrt refuses its bench config: %v\n%s", tc.pool, err, text)
		}
		if cfg.MaxClients < 2*tc.maxClients || (tc.pool.mode == poolTransaction) != (cfg.PoolMode == "transaction") ||
			(tc.pool.mode == poolTransaction && cfg.PoolSizeFor(pglab.AppUser) != tc.pool.size) {
			t.Errorf("%+v: parsed config %+v", tc.pool, cfg)
		}
	}
	// The primary's max_connections: 200 as before at up to 32 clients;
	// at 128 room for a direct run beside the session poolers' idle
	// backends, 128 each.
	for _, c := range [][3]int{{32, 16, 200}, {8, 16, 200}, {128, 16, 416}, {50, 100, 282}} {
		if got := benchMaxConnections(c[0], c[1]); got != c[2] {
			t.Errorf("benchMaxConnections(%d, %d) = %d, want %d", c[0], c[1], got, c[2])
		}
	}
}

// TestFindProxy: -pgbouncer and -haproxy resolve alike.
func TestFindProxy(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "proxy")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"pgbouncer", "haproxy"} {
		if p, err := findProxy(name, "none"); p != "" || err != nil {
			t.Errorf("findProxy(%s, none) = %q, %v", name, p, err)
		}
		if p, err := findProxy(name, exe); p != exe || err != nil {
			t.Errorf("findProxy(%s, %s) = %q, %v", name, exe, p, err)
		}
		missing := filepath.Join(t.TempDir(), name)
		if _, err := findProxy(name, missing); err == nil || !strings.HasPrefix(err.Error(), "-"+name+": ") {
			t.Errorf("findProxy(%s) of a missing file: %v", name, err)
		}
		if _, err := findProxy(name, ""); err != nil {
			t.Errorf("findProxy(%s, \"\"): %v", name, err)
		}
	}
}

func TestPgbouncerConfig(t *testing.T) {
	up := "2026-11-27 15:58:34.268 UTC [27423] LOG process up: PgBouncer 1.18.0, libevent 2.1.12-stable (epoll), adns: c-ares 1.18.1"
	if m := pgbouncerUpRE.FindStringSubmatch(up); m == nil || m[1] != "PgBouncer 1.18.0" {
		t.Errorf("pgbouncerUpRE on %q: %q", up, m)
	}
	cfg := pgbouncerConfig("127.0.0.1", 5433, "127.0.0.1", "6544", "/d/userlist.txt", "/d", benchPool{poolSession, 32}, 32)
	for _, want := range []string{
		"* = host=127.0.0.1 port=5433\n", "listen_port = 6544\n", "unix_socket_dir =\n", "auth_type = plain\n",
		"auth_file = /d/userlist.txt\n", "pool_mode = session\n", "default_pool_size = 32\n", "max_client_conn = 200\n",
		"logfile = /d/pgbouncer.log\n", "pidfile = /d/pgbouncer.pid\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("pgbouncerConfig lacks %q:\n%s", want, cfg)
		}
	}
	cfg = pgbouncerConfig("127.0.0.1", 5433, "127.0.0.1", "6544", "/d/userlist.txt", "/d", benchPool{poolTransaction, 16}, 128)
	for _, want := range []string{"pool_mode = transaction\n", "default_pool_size = 16\n", "max_client_conn = 256\n", "auth_type = plain\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("pgbouncerConfig in transaction mode lacks %q:\n%s", want, cfg)
		}
	}
	if got := pgbouncerHow(benchPool{poolTransaction, 16}); got != "transaction mode, default_pool_size 16" {
		t.Errorf("pgbouncerHow, transaction = %q", got)
	}
	if got := pgbouncerHow(benchPool{poolSession, 32}); got != testPgbouncer.how {
		t.Errorf("pgbouncerHow, session = %q", got)
	}
}

func TestBenchMedian(t *testing.T) {
	for _, c := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0}, {[]float64{7}, 7}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}, {[]float64{5, 5, 1, 9, 5}, 5},
	} {
		in := append([]float64(nil), c.xs...)
		if got := median(c.xs); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.xs, got, c.want)
		}
		if !slices.Equal(in, c.xs) {
			t.Errorf("median reordered its argument: %v", c.xs)
		}
	}
}

func TestHaproxyConfig(t *testing.T) {
	cfg := haproxyConfig("127.0.0.1", 5433, "127.0.0.1:6545", 32)
	for _, want := range []string{
		"global\n\tmaxconn 256\n", "\nlisten postgres\n", "\tmode tcp\n", "\tbind 127.0.0.1:6545\n", "\tmaxconn 256\n",
		"\ttimeout connect 5s\n", "\ttimeout client 1h\n", "\ttimeout server 1h\n", "\tserver primary 127.0.0.1:5433\n",
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("haproxyConfig lacks %q:\n%s", want, cfg)
		}
	}
	for _, not := range []string{"nbthread", "user", "group", "daemon"} {
		if strings.Contains(cfg, not) {
			t.Errorf("haproxyConfig has %q:\n%s", not, cfg)
		}
	}
	if cfg := haproxyConfig("127.0.0.1", 5433, "127.0.0.1:6545", 200); !strings.Contains(cfg, "maxconn 800\n") {
		t.Errorf("haproxyConfig for 200 clients:\n%s", cfg)
	}
	for line, want := range map[string]string{
		"HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/":   "2.6.12-1+deb12u4",
		"HA-Proxy version 2.0.33-0ubuntu0.1 2023/10/31 - https://haproxy.org/": "2.0.33-0ubuntu0.1",
	} {
		if m := haproxyVersionRE.FindStringSubmatch(line); m == nil || m[1] != want {
			t.Errorf("haproxyVersionRE on %q: %q", line, m)
		}
	}
	if bin, err := findProxy("haproxy", ""); err == nil && bin != "" {
		if v, err := haproxyVersion(t.Context(), bin); err != nil || !strings.HasPrefix(v, "HAProxy ") {
			t.Errorf("haproxyVersion(%s) = %q, %v", bin, v, err)
		}
	}
}

func TestRoundOrder(t *testing.T) {
	two := []string{sideDirect, sidePgwrt}
	three := []string{sideDirect, sidePgwrt, sidePgb}
	for _, c := range []struct {
		round int
		sides []string
		want  string
	}{
		{1, two, "direct,pgwrt"}, {2, two, "pgwrt,direct"}, {3, two, "direct,pgwrt"}, {4, two, "pgwrt,direct"},
		{1, three, "direct,pgwrt,pgbouncer"}, {2, three, "pgwrt,pgbouncer,direct"},
		{3, three, "pgbouncer,direct,pgwrt"}, {4, three, "direct,pgwrt,pgbouncer"},
	} {
		if got := strings.Join(roundOrder(c.round, c.sides), ","); got != c.want {
			t.Errorf("roundOrder(%d, %v) = %s, want %s", c.round, c.sides, got, c.want)
		}
	}
	if strings.Join(three, ",") != "direct,pgwrt,pgbouncer" {
		t.Errorf("roundOrder modified its argument: %v", three)
	}
}

// flat is a benchRun whose steady state is the whole run.
func flat(tps, lat float64) benchRun {
	return benchRun{whole: benchResult{tps, lat}, steady: benchResult{tps, lat}}
}

// TestBenchRow: the ratio is the median of the per-round ratios, not the
// ratio of the median tps.
func TestBenchRow(t *testing.T) {
	row := newBenchRow("select-only", 8, []benchRound{
		{direct: flat(10000, 0.8), pgwrt: flat(8000, 1.0)},  // 0.80
		{direct: flat(16000, 0.5), pgwrt: flat(11200, 0.7)}, // 0.70
		{direct: flat(9000, 0.9), pgwrt: flat(6750, 1.2)},   // 0.75
	})
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if row.workload != "select-only" || row.clients != 8 ||
		row.direct != (benchResult{10000, 0.8}) || row.pgwrt.benchResult != (benchResult{8000, 1.0}) || row.others != nil ||
		!near(row.pgwrt.ratio.median, 0.75) || !near(row.pgwrt.ratio.min, 0.70) || !near(row.pgwrt.ratio.max, 0.80) || row.pgwrt.ratio.n != 3 {
		t.Fatalf("newBenchRow = %+v", row)
	}
	if row.pgwrt.ratio.text() != "0.75" || row.pgwrt.ratio.rangeText() != "0.70–0.80" || row.wholeRatio.text() != "0.75" {
		t.Errorf("ratio %q, range %q, whole %q", row.pgwrt.ratio.text(), row.pgwrt.ratio.rangeText(), row.wholeRatio.text())
	}

	// Two rounds: medians are the means of the two.
	row = newBenchRow("tpcb-like", 32, []benchRound{
		{direct: flat(1000, 30), pgwrt: flat(600, 50)},  // 0.60
		{direct: flat(2000, 20), pgwrt: flat(1400, 24)}, // 0.70
	})
	if row.direct != (benchResult{1500, 25}) || row.pgwrt.benchResult != (benchResult{1000, 37}) || !near(row.pgwrt.ratio.median, 0.65) ||
		row.pgwrt.ratio.rangeText() != "0.60–0.70" {
		t.Fatalf("newBenchRow, two rounds = %+v", row)
	}

	// The columns are the steady state; the whole run only makes
	// whole_run_ratio. A comparison proxy's ratio is against the same
	// round's direct run.
	ramp := func(whole, steady float64) benchRun {
		return benchRun{whole: benchResult{whole, 8 / whole * 1000}, steady: benchResult{steady, 8 / steady * 1000}}
	}
	row = newBenchRow("select-only", 8, []benchRound{
		{direct: ramp(20000, 25000), pgwrt: ramp(15000, 15000), others: []benchRun{ramp(16000, 16000)}}, // 0.60, whole 0.75, pgbouncer 0.64
		{direct: ramp(19000, 24000), pgwrt: ramp(15200, 15600), others: []benchRun{ramp(15000, 15000)}}, // 0.65, whole 0.80, pgbouncer 0.625
		{direct: ramp(21000, 25000), pgwrt: ramp(14700, 15500), others: []benchRun{ramp(15500, 15500)}}, // 0.62, whole 0.70, pgbouncer 0.62
	})
	if row.direct.tps != 25000 || row.pgwrt.tps != 15500 || len(row.others) != 1 || row.others[0].tps != 15500 ||
		!near(row.direct.latencyMS, 8/25000.0*1000) ||
		row.pgwrt.ratio.text() != "0.62" || row.pgwrt.ratio.rangeText() != "0.60–0.65" || row.wholeRatio.text() != "0.75" ||
		!near(row.others[0].ratio.median, 0.625) || row.others[0].ratio.n != 3 {
		t.Fatalf("newBenchRow, steady state and PgBouncer = %+v", row)
	}

	// A round without a direct tps gives no ratio; with none at all the
	// row says so.
	row = newBenchRow("select-only", 8, []benchRound{
		{direct: flat(0, 0), pgwrt: flat(500, 2)},
		{direct: flat(1000, 1), pgwrt: flat(900, 1.1)},
	})
	if row.pgwrt.ratio.n != 1 || !near(row.pgwrt.ratio.median, 0.9) || row.pgwrt.ratio.rangeText() != "0.90–0.90" {
		t.Fatalf("newBenchRow, a round without direct tps = %+v", row)
	}
	row = newBenchRow("select-only", 8, []benchRound{{direct: flat(0, 0), pgwrt: flat(500, 2)}})
	if row.pgwrt.ratio.text() != "-" || row.pgwrt.ratio.rangeText() != "-" || row.wholeRatio.text() != "-" {
		t.Fatalf("newBenchRow, no direct tps: ratio %q, range %q", row.pgwrt.ratio.text(), row.pgwrt.ratio.rangeText())
	}
}

func TestBenchMarkdown(t *testing.T) {
	r := &benchReport{
		opt: benchOptions{duration: 30 * time.Second, scale: 10, rounds: 3},
		rows: []benchRow{newBenchRow("select-only", 8, []benchRound{
			{direct: flat(10000, 0.8), pgwrt: flat(8000, 1)},
			{direct: flat(12000, 0.7), pgwrt: flat(9000, 0.9)},
			{direct: flat(9000, 0.9), pgwrt: flat(7470, 1.1)},
		})},
		idleKB:   6 * 1024,
		peakKB:   9 * 1024,
		hwmKB:    9 * 1024,
		protocol: "simple",
	}
	md := r.markdown()
	for _, want := range []string{
		"| workload | clients | direct tps | pgwrt tps | ratio | ratio range | whole-run ratio | pgwrt cpu us per tx | direct latency ms | pgwrt latency ms |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
		"| select-only | 8 | 10000 | 8000 | 0.80 | 0.75–0.83 | 0.80 | - | 0.800 | 1.000 |",
		"pgwrt RSS idle 6.0 MB, peak under load 9.0 MB",
		"3 rounds per row", "-T 30s", "ratio is the median of the per-round steady-state ratios",
		"the mean of pgbench's per-second progress over the second half of each run", "the whole-run ratio is the median",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "pgbouncer") || strings.Contains(md, "PgBouncer") {
		t.Errorf("PgBouncer in the markdown without PgBouncer:\n%s", md)
	}
	var text bytes.Buffer
	r.writeTable(&text)
	if m := benchRowRE.FindStringSubmatch(text.String()); m == nil || m[7] != "" {
		t.Errorf("table row does not match %s without PgBouncer:\n%s", benchRowRE, text.String())
	}
	for _, want := range []string{"ratio_range  whole_run_ratio  pgwrt_cpu_us_per_tx  direct_lat_ms", "3 rounds per row", "pgwrt RSS idle 6.0 MB"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, text.String())
		}
	}
	if strings.Contains(text.String(), "pgbouncer") {
		t.Errorf("PgBouncer columns without PgBouncer:\n%s", text.String())
	}

	// With PgBouncer.
	r.proxies = []*comparison{testPgbouncer}
	r.rows = []benchRow{newBenchRow("select-only", 8, []benchRound{
		{direct: flat(10000, 0.8), pgwrt: flat(8000, 1), others: []benchRun{flat(8500, 0.95)}},
		{direct: flat(12000, 0.7), pgwrt: flat(9000, 0.9), others: []benchRun{flat(9600, 0.8)}},
		{direct: flat(9000, 0.9), pgwrt: flat(7470, 1.1), others: []benchRun{flat(7000, 1.2)}},
	})}
	md = r.markdown()
	for _, want := range []string{
		"| workload | clients | direct tps | pgwrt tps | ratio | ratio range | whole-run ratio | pgwrt cpu us per tx | pgbouncer tps | pgbouncer ratio | pgbouncer cpu us per tx | direct latency ms | pgwrt latency ms |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
		"| select-only | 8 | 10000 | 8000 | 0.80 | 0.75–0.83 | 0.80 | - | 8500 | 0.80 | - | 0.800 | 1.000 |",
		"one run per side (direct, pgwrt and PgBouncer) back to back, the order rotated from round to round",
		"; PgBouncer 1.18.0 in session mode, pool as large as the clients, its ratio the median of the per-round steady-state ratios PgBouncer tps / direct tps",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown with PgBouncer lacks %q:\n%s", want, md)
		}
	}
	text.Reset()
	r.writeTable(&text)
	if m := benchRowRE.FindStringSubmatch(text.String()); m == nil || m[7] != "8500" || m[8] != "0.80" {
		t.Errorf("table row does not match %s with PgBouncer: %q\n%s", benchRowRE, m, text.String())
	}
	if !strings.Contains(text.String(), "whole_run_ratio  pgwrt_cpu_us_per_tx  pgbouncer_tps  pgbouncer_ratio  pgbouncer_cpu_us_per_tx  direct_lat_ms") {
		t.Errorf("table lacks the PgBouncer columns:\n%s", text.String())
	}
	if strings.Contains(md+text.String(), "haproxy") || strings.Contains(md+text.String(), "HAProxy") {
		t.Errorf("HAProxy in the output without HAProxy:\n%s\n%s", md, text.String())
	}
}

var (
	testPgbouncer = &comparison{side: sidePgb, name: "PgBouncer", how: "session mode, pool as large as the clients", version: "PgBouncer 1.18.0"}
	testHaproxy   = &comparison{side: sideHaproxy, name: "HAProxy", how: "TCP mode, no pooling, one thread per CPU", version: "HAProxy 2.6.12-1+deb12u4"}
)

// TestBenchBothProxies: PgBouncer's and HAProxy's columns side by side, in
// the table, the markdown, the conditions and the log lines.
func TestBenchBothProxies(t *testing.T) {
	var pgb, hap []benchRun
	for _, x := range [][2]float64{{8500, 0.95}, {9600, 0.8}, {7000, 1.2}} {
		pgb = append(pgb, flat(x[0], x[1]))
	}
	for _, x := range [][2]float64{{9000, 0.9}, {10800, 0.7}, {8100, 1}} {
		run := flat(x[0], x[1])
		run.cpuUS = 20
		hap = append(hap, run)
	}
	pgb[0].cpuUS, pgb[1].cpuUS, pgb[2].cpuUS = 40, 44, 42
	rounds := []benchRound{
		{direct: flat(10000, 0.8), pgwrt: flat(8000, 1), others: []benchRun{pgb[0], hap[0]}},   // haproxy 0.90
		{direct: flat(12000, 0.7), pgwrt: flat(9000, 0.9), others: []benchRun{pgb[1], hap[1]}}, // haproxy 0.90
		{direct: flat(9000, 0.9), pgwrt: flat(7470, 1.1), others: []benchRun{pgb[2], hap[2]}},  // haproxy 0.90
	}
	row := newBenchRow("select-only", 8, rounds)
	if len(row.others) != 2 || row.others[0].tps != 8500 || row.others[0].cpuUS != 42 ||
		row.others[1].tps != 9000 || row.others[1].ratio.text() != "0.90" || row.others[1].cpuUS != 20 {
		t.Fatalf("newBenchRow with two comparison proxies = %+v", row)
	}
	r := &benchReport{
		opt:     benchOptions{duration: 30 * time.Second, scale: 10, rounds: 3},
		rows:    []benchRow{row},
		proxies: []*comparison{testPgbouncer, testHaproxy},
	}
	md := r.markdown()
	for _, want := range []string{
		"| pgwrt cpu us per tx | pgbouncer tps | pgbouncer ratio | pgbouncer cpu us per tx | haproxy tps | haproxy ratio | haproxy cpu us per tx | direct latency ms | pgwrt latency ms |\n|---|" +
			strings.Repeat("--:|", 15) + "\n",
		"| select-only | 8 | 10000 | 8000 | 0.80 | 0.75–0.83 | 0.80 | - | 8500 | 0.80 | 42 | 9000 | 0.90 | 20 | 0.800 | 1.000 |",
		"one run per side (direct, pgwrt, PgBouncer and HAProxy) back to back, the order rotated from round to round",
		"; PgBouncer 1.18.0 in session mode, pool as large as the clients, its ratio the median of the per-round steady-state ratios PgBouncer tps / direct tps" +
			"; HAProxy 2.6.12-1+deb12u4 in TCP mode, no pooling, one thread per CPU, its ratio the median of the per-round steady-state ratios HAProxy tps / direct tps",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var text bytes.Buffer
	r.writeTable(&text)
	if !strings.Contains(text.String(), "pgbouncer_cpu_us_per_tx  haproxy_tps  haproxy_ratio  haproxy_cpu_us_per_tx  direct_lat_ms") {
		t.Errorf("table lacks the HAProxy columns:\n%s", text.String())
	}
	if m := benchRowRE.FindStringSubmatch(text.String()); m == nil || m[7] != "8500" || m[8] != "0.80" {
		t.Errorf("table row does not match %s with both: %q\n%s", benchRowRE, m, text.String())
	}
	logs := "bench:   round 1: " + rounds[0].logText(r.proxies) + "\n"
	if !benchRoundRE.MatchString(logs) ||
		!strings.Contains(logs, "direct 10000, pgwrt 8000, pgbouncer 8500, haproxy 9000 tps steady; ratio 0.80, pgbouncer ratio 0.85, haproxy ratio 0.90; whole run") ||
		!strings.HasSuffix(logs, "; cpu us per tx pgwrt -, pgbouncer 40, haproxy 20\n") {
		t.Errorf("round log line %q", logs)
	}
	if got := row.logText(r.proxies); !strings.HasSuffix(got, "whole-run ratio 0.80, pgbouncer ratio 0.80, haproxy ratio 0.90") ||
		!strings.HasPrefix(got, "direct 10000, pgwrt 8000, pgbouncer 8500, haproxy 9000 tps steady") {
		t.Errorf("row log line %q", got)
	}

	// A report with both but a row without their runs: dashes.
	r.rows = []benchRow{newBenchRow("select-only", 8, []benchRound{{direct: flat(10000, 0.8), pgwrt: flat(8000, 1)}})}
	if md := r.markdown(); !strings.Contains(md, "| 0.80 | - | - | - | - | - | - | - | 0.800 | 1.000 |") {
		t.Errorf("markdown row without the proxies' runs:\n%s", md)
	}

	// Neither: no comparison columns, the two-run rounds.
	r.proxies = nil
	md = r.markdown()
	if strings.Contains(strings.ToLower(md), "pgbouncer") || strings.Contains(strings.ToLower(md), "haproxy") ||
		!strings.Contains(md, "| pgwrt cpu us per tx | direct latency ms | pgwrt latency ms |") ||
		!strings.Contains(md, "a direct and a pgwrt run back to back (direct first in odd rounds, pgwrt first in even ones)") {
		t.Errorf("markdown without comparison proxies:\n%s", md)
	}
	if got := rounds[0].logText(nil); strings.Contains(got, "pgbouncer") || strings.Contains(got, "haproxy") {
		t.Errorf("round log line without proxies %q", got)
	}
}

// TestBenchTransactionTable: the transaction-mode set of rows has the
// protocol column, and beside PgBouncer's ratio to direct its range and
// pgwrt's ratio to PgBouncer (the median of the per-round ratios, not of
// the medians' ratio); its conditions say how both pool.
func TestBenchTransactionTable(t *testing.T) {
	run := func(tps, cpu float64) benchRun { r := flat(tps, 1000*32/tps); r.cpuUS = cpu; return r }
	rounds := []benchRound{
		{direct: run(10000, 0), pgwrt: run(9000, 20), others: []benchRun{run(8000, 30)}},  // 0.90, 0.80, over 1.125
		{direct: run(12000, 0), pgwrt: run(9600, 22), others: []benchRun{run(10000, 28)}}, // 0.80, 0.83, over 0.96
		{direct: run(8000, 0), pgwrt: run(7600, 21), others: []benchRun{run(5600, 31)}},   // 0.95, 0.70, over 1.357
	}
	row := newBenchRow("select-only", 32, rounds)
	row.protocol = "extended"
	if o := row.others[0]; o.pgwrtOver.text() != "1.12" || o.pgwrtOver.rangeText() != "0.96–1.36" || o.ratio.rangeText() != "0.70–0.83" {
		t.Fatalf("pgwrt over PgBouncer %+v", o)
	}
	pgb := &comparison{side: sidePgb, name: "PgBouncer", how: pgbouncerHow(benchPool{poolTransaction, 16}), version: "PgBouncer 1.18.0"}
	r := &benchReport{
		opt:  benchOptions{duration: 10 * time.Second, scale: 10, rounds: 3},
		mode: poolTransaction, poolSize: 16, protocol: "simple", proxies: []*comparison{pgb},
		engine: "goroutines (transaction-mode links; its io_uring loops serve session mode only)",
		rows:   []benchRow{row},
	}
	if r.title() != "Transaction mode, pool size 16" || (&benchReport{}).title() != "Session mode" {
		t.Errorf("titles %q, %q", r.title(), (&benchReport{}).title())
	}
	md := r.markdown()
	for _, want := range []string{
		"| workload | clients | protocol | direct tps | pgwrt tps | ratio | ratio range | whole-run ratio | pgwrt cpu us per tx | " +
			"pgbouncer tps | pgbouncer ratio | pgbouncer ratio range | pgbouncer cpu us per tx | pgwrt over pgbouncer | pgwrt over pgbouncer range | " +
			"direct latency ms | pgwrt latency ms |\n|---|" + strings.Repeat("--:|", 16) + "\n",
		"| select-only | 32 | extended | 10000 | 9000 | 0.90 | 0.80–0.95 | 0.90 | 21 | 8000 | 0.80 | 0.70–0.83 | 30 | 1.12 | 0.96–1.36 | 3.200 | 3.556 |",
		"-T 10s -j 2 -P 1, the row's query protocol (pgbench -M), fsync off",
		"pgwrt in transaction mode, pool_size 16, forwarding with goroutines (transaction-mode links; its io_uring loops serve session mode only);",
		"; PgBouncer 1.18.0 in transaction mode, default_pool_size 16, its ratio the median of the per-round steady-state ratios PgBouncer tps / direct tps, " +
			"its ratio range their smallest and largest, pgwrt over pgbouncer the median of the per-round ratios pgwrt tps / PgBouncer tps",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("transaction markdown lacks %q:\n%s", want, md)
		}
	}
	var text bytes.Buffer
	r.writeTable(&text)
	if !benchTxnRowRE.MatchString(text.String()) {
		t.Errorf("table row does not match %s:\n%s", benchTxnRowRE, text.String())
	}
	// A row without PgBouncer's runs: six dashes.
	r.rows = []benchRow{newBenchRow("select-only", 32, []benchRound{{direct: run(10000, 0), pgwrt: run(9000, 20)}})}
	if md := r.markdown(); !strings.Contains(md, "| select-only | 32 | simple | 10000 | 9000 | 0.90 | 0.90–0.90 | 0.90 | 20 | - | - | - | - | - | - | 3.200 |") {
		t.Errorf("transaction row without PgBouncer's runs:\n%s", md)
	}
}

// benchTxnRowRE matches a transaction-mode select-only row in the text
// table: clients, protocol, direct tps, pgwrt tps, ratio, its range, the
// rest.
var benchTxnRowRE = regexp.MustCompile(`select-only\s+\d+\s+(simple|extended)\s+([1-9]\d*)\s+([1-9]\d*)\s+([0-9.]+)\s+[0-9.]+–[0-9.]+\s`)

// benchRowRE matches a select-only row at 8 clients in the text table:
// direct tps, pgwrt tps, ratio, ratio range, whole-run ratio, the first
// comparison proxy's tps and ratio when there (any further ones' skipped),
// two latencies.
var benchRowRE = regexp.MustCompile(`select-only\s+8\s+(\d+)\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)–([0-9.]+)\s+([0-9.]+)\s+(?:\d+|-)(?:\s+(\d+)\s+([0-9.]+)\s+(?:\d+|-))?(?:\s+\d+\s+[0-9.]+\s+(?:\d+|-))*\s+[0-9]+\.[0-9]+\s+[0-9]+\.[0-9]+`)

// benchRoundRE matches a round's log line.
var benchRoundRE = regexp.MustCompile(`(?m)^bench:   round \d: direct \d+, pgwrt \d+(, [a-z]+ \d+)* tps steady; ratio [0-9.]+(, [a-z]+ ratio [0-9.]+)*; ` +
	`whole run direct \d+, pgwrt \d+, ratio [0-9.]+; cpu us per tx pgwrt (\d+|-)(, [a-z]+ (\d+|-))*$`)

// TestBench runs the real thing, shortened: one workload, one client count,
// 4 seconds, scale 1, one round in session mode and one in transaction mode
// with the extended protocol. pgbench's -T includes connecting (behind a relay
// that delays each connection 3 s, -T 2 ends with no transaction and no
// progress line). With 2 seconds, one CI run, its machine busy with other
// packages' clusters, got exactly that through pgwrt: logging 8 fresh
// sessions in took the whole run.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and pgbench")
	}
	if _, err := pglab.PGBin(); err != nil {
		t.Skipf("PostgreSQL not installed: %v", err)
	}
	out := filepath.Join(t.TempDir(), "bench.md")
	var stdout, stderr bytes.Buffer
	err := run([]string{"bench", "-T", "4s", "-scale", "1", "-workloads", "select-only", "-clients", "8", "-rounds", "1",
		"-pool-modes", "session,transaction", "-pool-size", "4", "-txn-protocols", "extended", "-out", out}, &stdout, &stderr)
	t.Logf("stdout:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	row := benchRowRE.FindStringSubmatch(stdout.String())
	if row == nil || row[1] == "0" || row[2] == "0" {
		t.Fatalf("no result row with non-zero tps in:\n%s", stdout.String())
	}
	if n := len(benchRoundRE.FindAllString(stderr.String(), -1)); n != 2 {
		t.Errorf("%d round lines in the log, want 2:\n%s", n, stderr.String())
	}
	_, txn, _ := strings.Cut(stdout.String(), "Transaction mode, pool size 4:\n")
	if m := benchTxnRowRE.FindStringSubmatch(txn); m == nil || m[1] != "extended" {
		t.Fatalf("no transaction-mode row with non-zero tps in:\n%s", stdout.String())
	}
	if !regexp.MustCompile(`pgwrt RSS idle [0-9.]+ MB, peak under load [0-9.]+ MB`).MatchString(stdout.String()) {
		t.Fatalf("no memory line in:\n%s", stdout.String())
	}
	md, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(md), "**Session mode**\n\n| workload |") || !strings.Contains(string(md), "| select-only | 8 |") ||
		!strings.Contains(string(md), "**Transaction mode, pool size 4**\n\n| workload | clients | protocol |") || !strings.Contains(string(md), "| select-only | 8 | extended |") {
		t.Fatalf("markdown file: %v\n%s", err, md)
	}
}

// TestBenchCPU: CPU per transaction from /proc/PID/stat, including a
// command name with spaces and parentheses, and the table cells.
func TestBenchCPU(t *testing.T) {
	stat := []byte("1234 (pg (wrt) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 9 0 100 0 0\n")
	ticks, err := parseProcStatCPU(stat)
	if err != nil || ticks != 400 {
		t.Fatalf("ticks %d %v, want 400", ticks, err)
	}
	if _, err := parseProcStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Error("short line accepted")
	}
	// 400 ticks = 4 s of CPU over 10 s at 10,000 tps = 40 µs per transaction.
	if got := cpuPerTx(400, 10000, 10); got != 40 {
		t.Errorf("cpuPerTx = %v, want 40", got)
	}
	if got := cpuPerTx(400, 0, 10); got != 0 {
		t.Errorf("cpuPerTx without transactions = %v", got)
	}
	if ticks, err := procCPUTicks(os.Getpid()); err != nil || ticks < 0 {
		t.Errorf("own CPU ticks %d %v", ticks, err)
	}
	a, b := flat(10000, 1), flat(8000, 1)
	a.cpuUS, b.cpuUS = 0, 31
	row := newBenchRow("select-only", 32, []benchRound{{direct: a, pgwrt: b}})
	if row.pgwrt.cpuUS != 31 || cpuText(row.pgwrt.cpuUS) != "31" || cpuText(0) != "-" {
		t.Errorf("pgwrt CPU %v %q", row.pgwrt.cpuUS, cpuText(row.pgwrt.cpuUS))
	}
}
