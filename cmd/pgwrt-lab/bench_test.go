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

	"pgwrt/cmd/pgwrt-lab/pglab"
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

func TestBenchFlags(t *testing.T) {
	o, err := parseBenchFlags(nil, io.Discard)
	if err != nil || o.duration != 15*time.Second || o.scale != 10 || len(o.clients) != 2 || o.clients[1] != 32 ||
		strings.Join(o.workloads, ",") != "select-only,tpcb-like" || o.standbys != 0 || o.rounds != 3 {
		t.Fatalf("defaults = %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{"-T", "500ms"}, {"-clients", "8,x"}, {"-workloads", "tpcc"}, {"-scale", "0"}, {"-rounds", "0"}, {"extra"},
	} {
		if _, err := parseBenchFlags(bad, io.Discard); err == nil {
			t.Errorf("parseBenchFlags(%q) accepted", bad)
		}
	}
	if o, err := parseBenchFlags([]string{"-rounds", "5"}, io.Discard); err != nil || o.rounds != 5 {
		t.Fatalf("-rounds 5 = %d, %v", o.rounds, err)
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
	if !directFirst(1) || directFirst(2) || !directFirst(3) || directFirst(4) {
		t.Error("directFirst: odd rounds run direct first, even rounds pgwrt first")
	}
}

// TestBenchRow: the ratio is the median of the per-round ratios, not the
// ratio of the median tps.
func TestBenchRow(t *testing.T) {
	row := newBenchRow("select-only", 8, []benchRound{
		{benchResult{10000, 0.8}, benchResult{8000, 1.0}},  // 0.80
		{benchResult{16000, 0.5}, benchResult{11200, 0.7}}, // 0.70
		{benchResult{9000, 0.9}, benchResult{6750, 1.2}},   // 0.75
	})
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	if row.workload != "select-only" || row.clients != 8 ||
		row.direct != (benchResult{10000, 0.8}) || row.pgwrt != (benchResult{8000, 1.0}) ||
		!near(row.ratio, 0.75) || !near(row.ratioMin, 0.70) || !near(row.ratioMax, 0.80) || row.ratios != 3 {
		t.Fatalf("newBenchRow = %+v", row)
	}
	if row.ratioText() != "0.75" || row.rangeText() != "0.70–0.80" {
		t.Errorf("ratioText %q, rangeText %q", row.ratioText(), row.rangeText())
	}

	// Two rounds: medians are the means of the two.
	row = newBenchRow("tpcb-like", 32, []benchRound{
		{benchResult{1000, 30}, benchResult{600, 50}},  // 0.60
		{benchResult{2000, 20}, benchResult{1400, 24}}, // 0.70
	})
	if row.direct != (benchResult{1500, 25}) || row.pgwrt != (benchResult{1000, 37}) || !near(row.ratio, 0.65) ||
		row.rangeText() != "0.60–0.70" {
		t.Fatalf("newBenchRow, two rounds = %+v", row)
	}

	// A round without a direct tps gives no ratio; with none at all the
	// row says so.
	row = newBenchRow("select-only", 8, []benchRound{
		{benchResult{0, 0}, benchResult{500, 2}},
		{benchResult{1000, 1}, benchResult{900, 1.1}},
	})
	if row.ratios != 1 || !near(row.ratio, 0.9) || row.rangeText() != "0.90–0.90" {
		t.Fatalf("newBenchRow, a round without direct tps = %+v", row)
	}
	row = newBenchRow("select-only", 8, []benchRound{{benchResult{0, 0}, benchResult{500, 2}}})
	if row.ratioText() != "-" || row.rangeText() != "-" {
		t.Fatalf("newBenchRow, no direct tps: ratio %q, range %q", row.ratioText(), row.rangeText())
	}
}

func TestBenchMarkdown(t *testing.T) {
	r := &benchReport{
		opt: benchOptions{duration: 15 * time.Second, scale: 10, rounds: 3},
		rows: []benchRow{newBenchRow("select-only", 8, []benchRound{
			{benchResult{10000, 0.8}, benchResult{8000, 1}},
			{benchResult{12000, 0.7}, benchResult{9000, 0.9}},
			{benchResult{9000, 0.9}, benchResult{7470, 1.1}},
		})},
		idleKB:   6 * 1024,
		peakKB:   9 * 1024,
		hwmKB:    9 * 1024,
		protocol: "simple",
	}
	md := r.markdown()
	for _, want := range []string{
		"| workload | clients | direct tps | pgwrt tps | ratio | ratio range | direct latency ms | pgwrt latency ms |",
		"| select-only | 8 | 10000 | 8000 | 0.80 | 0.75–0.83 | 0.800 | 1.000 |",
		"pgwrt RSS idle 6.0 MB, peak under load 9.0 MB",
		"3 rounds per row", "ratio is the median of the per-round ratios",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var text bytes.Buffer
	r.writeTable(&text)
	if !benchRowRE.MatchString(text.String()) {
		t.Errorf("table row does not match %s:\n%s", benchRowRE, text.String())
	}
	for _, want := range []string{"ratio_range", "3 rounds per row", "pgwrt RSS idle 6.0 MB"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, text.String())
		}
	}
}

// benchRowRE matches a select-only row at 8 clients in the text table:
// direct tps, pgwrt tps, ratio, ratio range, two latencies.
var benchRowRE = regexp.MustCompile(`select-only\s+8\s+(\d+)\s+(\d+)\s+([0-9.]+)\s+([0-9.]+)–([0-9.]+)\s+[0-9.]+\s+[0-9.]+`)

// TestBench runs the real thing, shortened: one workload, one client count,
// 2 seconds, scale 1.
func TestBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and pgbench")
	}
	if _, err := pglab.PGBin(); err != nil {
		t.Skipf("PostgreSQL not installed: %v", err)
	}
	out := filepath.Join(t.TempDir(), "bench.md")
	var stdout, stderr bytes.Buffer
	err := run([]string{"bench", "-T", "2s", "-scale", "1", "-workloads", "select-only", "-clients", "8", "-rounds", "2", "-out", out}, &stdout, &stderr)
	t.Logf("stdout:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	row := benchRowRE.FindStringSubmatch(stdout.String())
	if row == nil || row[1] == "0" || row[2] == "0" {
		t.Fatalf("no result row with non-zero tps in:\n%s", stdout.String())
	}
	if n := len(regexp.MustCompile(`(?m)^bench:   round \d: direct \d+, pgwrt \d+, ratio [0-9.]+$`).FindAllString(stderr.String(), -1)); n != 2 {
		t.Errorf("%d round lines in the log, want 2:\n%s", n, stderr.String())
	}
	if !regexp.MustCompile(`pgwrt RSS idle [0-9.]+ MB, peak under load [0-9.]+ MB`).MatchString(stdout.String()) {
		t.Fatalf("no memory line in:\n%s", stdout.String())
	}
	md, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(md), "| select-only | 8 |") {
		t.Fatalf("markdown file: %v\n%s", err, md)
	}
}
