package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
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
		strings.Join(o.workloads, ",") != "select-only,tpcb-like" || o.standbys != 0 {
		t.Fatalf("defaults = %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{"-T", "500ms"}, {"-clients", "8,x"}, {"-workloads", "tpcc"}, {"-scale", "0"}, {"extra"},
	} {
		if _, err := parseBenchFlags(bad, io.Discard); err == nil {
			t.Errorf("parseBenchFlags(%q) accepted", bad)
		}
	}
}

func TestBenchMarkdown(t *testing.T) {
	r := &benchReport{
		opt:      benchOptions{duration: 15 * time.Second, scale: 10},
		rows:     []benchRow{{"select-only", 8, benchResult{10000, 0.8}, benchResult{8000, 1}}},
		idleKB:   6 * 1024,
		peakKB:   9 * 1024,
		hwmKB:    9 * 1024,
		protocol: "simple",
	}
	md := r.markdown()
	for _, want := range []string{"| select-only | 8 | 10000 | 8000 | 0.80 | 0.800 | 1.000 |", "pgwrt RSS idle 6.0 MB, peak under load 9.0 MB"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

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
	err := run([]string{"bench", "-T", "2s", "-scale", "1", "-workloads", "select-only", "-clients", "8", "-out", out}, &stdout, &stderr)
	t.Logf("stdout:\n%s", stdout.String())
	if err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	row := regexp.MustCompile(`select-only\s+8\s+(\d+)\s+(\d+)\s+[0-9.]+\s+[0-9.]+\s+[0-9.]+`).FindStringSubmatch(stdout.String())
	if row == nil || row[1] == "0" || row[2] == "0" {
		t.Fatalf("no result row with non-zero tps in:\n%s", stdout.String())
	}
	if !regexp.MustCompile(`pgwrt RSS idle [0-9.]+ MB, peak under load [0-9.]+ MB`).MatchString(stdout.String()) {
		t.Fatalf("no memory line in:\n%s", stdout.String())
	}
	md, err := os.ReadFile(out)
	if err != nil || !strings.Contains(string(md), "| select-only | 8 |") {
		t.Fatalf("markdown file: %v\n%s", err, md)
	}
}
