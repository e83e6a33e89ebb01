package main

import (
	"bytes"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"pgwrt/config"
	"pgwrt/internal/pglab"
)

func TestDemoFlags(t *testing.T) {
	o, err := parseDemoFlags(nil, io.Discard)
	if err != nil || o.plain || o.before != 5*time.Second || o.after != 8*time.Second || o.session != 10 || o.reconnect != 5 {
		t.Fatalf("defaults = %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{"-before", "100ms"}, {"-session", "0", "-reconnect", "0"}, {"-reconnect", "-1"}, {"extra"},
	} {
		if _, err := parseDemoFlags(bad, io.Discard); err == nil {
			t.Errorf("parseDemoFlags(%q) accepted", bad)
		}
	}
}

// The demo's config must be one pgwrt accepts.
func TestDemoConfig(t *testing.T) {
	nodes := []demoNode{{name: "node1", port: 40001}, {name: "node2", port: 40002}, {name: "node3", port: 40003}}
	cfg, err := config.ParseTOML("demo.toml", []byte(demoConfig(nodes, "127.0.0.1:40100")))
	if err != nil {
		t.Fatalf("%v\n%s", err, demoConfig(nodes, "127.0.0.1:40100"))
	}
	if len(cfg.Backends) != 3 || cfg.Backends[2].Name != "node3" || cfg.Backends[2].Port != 40003 ||
		cfg.HTTPListen != "127.0.0.1:40100" || cfg.HealthCheckPassword != pglab.SuperPassword ||
		len(cfg.HBA) != 1 || cfg.HBA[0].Method != "password" {
		t.Fatalf("config = %+v", cfg)
	}
}

func TestParseLogLine(t *testing.T) {
	line := `time=2026-01-02T03:04:05.678Z level=INFO msg="primary changed" epoch=3 old="" new=node2 no_primary_for=1.768s`
	r, ok := parseLogLine(line)
	if !ok || r.Message != "primary changed" || r.Level != slog.LevelInfo ||
		!r.Time.Equal(time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)) {
		t.Fatalf("parseLogLine = %v %+v", ok, r)
	}
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	if len(attrs) != 4 || attrs["old"] != "" || attrs["new"] != "node2" || attrs["no_primary_for"] != "1.768s" {
		t.Fatalf("attrs = %v", attrs)
	}
	r, ok = parseLogLine(`time=2026-01-02T03:04:05.678+01:00 level=WARN msg="node down" node=n1 error="FATAL: \"x\" (SQLSTATE 57P03)"`)
	if !ok || r.Level != slog.LevelWarn {
		t.Fatalf("quoted error: %v %+v", ok, r)
	}
	for _, bad := range []string{"", "panic: oops", `time=yesterday msg="x"`, `time=2026-01-02T03:04:05Z level=INFO msg="unterminated`} {
		if _, ok := parseLogLine(bad); ok {
			t.Errorf("parseLogLine(%q) accepted", bad)
		}
	}
}

// TestDemo runs the demo end to end on plain streaming replication, with
// shorter load phases.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL, builds and runs pgwrt")
	}
	if _, err := pglab.PGBin(); err != nil {
		t.Skipf("PostgreSQL not installed: %v", err)
	}
	var stdout, stderr bytes.Buffer
	err := run([]string{"demo", "-plain", "-before", "2s", "-after", "3s", "-session", "4", "-reconnect", "2"}, &stdout, &stderr)
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	if err != nil {
		t.Fatalf("demo: %v\nstderr:\n%s", err, stderr.String())
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^\[ *[0-9.]+s\] starting PostgreSQL 15 with plain streaming replication`),
		regexp.MustCompile(`node_id \| hostname +\| port`),
		regexp.MustCompile(`\| up +\| primary \|`),
		regexp.MustCompile(`(?m)^\[ *[0-9.]+s\] switchover pg0 -> pg1 requested`),
		regexp.MustCompile(`(?m)^\[ *[0-9.]+s\] pg1 accepts writes, [0-9.]+m?s after the request`),
		regexp.MustCompile(`(?m)^== What the clients saw ==$`),
		regexp.MustCompile(`session mode \(4 clients`),
		regexp.MustCompile(`reconnect mode \(2 clients`),
		regexp.MustCompile(`rows written: [1-9][0-9]*`),
		regexp.MustCompile(`longest gap between two writes of one client: `),
		regexp.MustCompile(`resumed on pg1: the first client `),
		regexp.MustCompile(`(?m)^  lost rows: 0  `),
		regexp.MustCompile(`never two nodes at the same time`),
		regexp.MustCompile(`(?m)^== What pgwrt logged about the failover ==$`),
		regexp.MustCompile(`msg="primary changed" epoch=\d+ old=\S* new=pg1`),
		regexp.MustCompile(`(?m)^\[ *[0-9.]+s\] stopping the cluster$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("output lacks %s", want)
		}
	}
	// pg1 must show as the primary in the second SHOW POOL_NODES.
	if i := strings.LastIndex(out, "SHOW POOL_NODES"); i < 0 || !regexp.MustCompile(`\| up +\| primary \|`).MatchString(out[i:]) {
		t.Error("no primary in the second SHOW POOL_NODES")
	}
}
