package pglab

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	p, ok := parseStat([]byte("4242 (postgres: a (b) c) S 4200 4100 4100 0 -1\n"))
	if !ok || p.pid != 4242 || p.ppid != 4200 || p.pgrp != 4100 || p.state != 'S' {
		t.Fatalf("parseStat = %+v, %v", p, ok)
	}
}

func TestDSN(t *testing.T) {
	n := &Node{Host: Host, Port: 5433}
	if got, want := n.DSN("app", "a@b", "app"), "postgres://app:a%40b@127.0.0.1:5433/app?sslmode=disable"; got != want {
		t.Fatalf("DSN = %q, want %q", got, want)
	}
}

// waitValue polls sql on n until it returns want.
func waitValue(t *testing.T, n *Node, sql, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got string
	var err error
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		got, err = n.Query(ctx, sql)
		cancel()
		if err == nil && got == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %q = %q, %v; want %q", n.Name, sql, got, err, want)
}

func mustQuery(t *testing.T, n *Node, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := n.Query(ctx, sql)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCluster(t *testing.T) {
	c := StartT(t, Options{})
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Nodes))
	}
	p, s1, s2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	ctx := context.Background()

	t.Run("roles", func(t *testing.T) {
		if got, err := c.Primary(ctx); err != nil || got != p {
			t.Fatalf("Primary = %v, %v; want %s", got, err, p.Name)
		}
		if v := mustQuery(t, s1, "SELECT pg_is_in_recovery()"); v != "t" {
			t.Fatalf("%s in recovery = %q", s1.Name, v)
		}
		// Password login over TCP with SCRAM, through the DSN.
		out, err := exec.Command(filepath.Join(c.PGBin, "psql"), "-X", "-A", "-t",
			"-c", "SELECT current_user || ' ' || current_database() || ' ' || (SELECT setting FROM pg_settings WHERE name = 'password_encryption')",
			s2.DSN(AppUser, AppPassword, AppDatabase)).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != "app app scram-sha-256" {
			t.Fatalf("psql as app: %q, %v", got, err)
		}
		if out, err := exec.Command(filepath.Join(c.PGBin, "psql"), "-X", "-c", "SELECT 1",
			p.DSN(AppUser, "wrong", AppDatabase)).CombinedOutput(); err == nil {
			t.Fatalf("wrong password accepted: %s", out)
		}
	})

	t.Run("replication", func(t *testing.T) {
		mustQuery(t, p, "CREATE TABLE t (v text); INSERT INTO t VALUES ('one')")
		waitValue(t, s1, "SELECT string_agg(v, ',') FROM t", "one")
		waitValue(t, s2, "SELECT string_agg(v, ',') FROM t", "one")
	})

	t.Run("load", func(t *testing.T) {
		l, err := Load(c.BaseDir)
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Nodes) != 3 || l.Nodes[2].Port != s2.Port || l.Nodes[2].DataDir != s2.DataDir || !l.Nodes[2].Running() {
			t.Fatalf("loaded %+v", l.Nodes[2])
		}
		if v, err := l.Nodes[0].Query(ctx, "SELECT 7"); err != nil || v != "7" {
			t.Fatalf("query through loaded node: %q, %v", v, err)
		}
	})

	t.Run("freeze", func(t *testing.T) {
		if err := s2.Freeze(); err != nil {
			t.Fatal(err)
		}
		if !s2.Frozen() {
			t.Fatal("not frozen")
		}
		for _, q := range tree(s2.PID()) {
			if p, _ := readProc(q); p.state != 'T' {
				t.Fatalf("process %d of %s in state %c, want T", q, s2.Name, p.state)
			}
		}
		qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := s2.Query(qctx, "SELECT 1")
		cancel()
		if err == nil {
			t.Fatal("frozen node answered")
		}
		if err := s2.Thaw(); err != nil {
			t.Fatal(err)
		}
		waitValue(t, s2, "SELECT 1", "1")
	})

	t.Run("kill", func(t *testing.T) {
		pids := tree(s2.PID())
		if len(pids) < 3 {
			t.Fatalf("%s has processes %v", s2.Name, pids)
		}
		if err := s2.Kill(); err != nil {
			t.Fatal(err)
		}
		if s2.Running() {
			t.Fatal("still running after Kill")
		}
		for _, pid := range pids {
			if alive(pid) {
				t.Fatalf("process %d left after Kill", pid)
			}
		}
		if err := s2.Start(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitStreaming(ctx, p, s2); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("failover", func(t *testing.T) {
		mustQuery(t, p, "INSERT INTO t VALUES ('two')")
		if err := p.StopFast(); err != nil {
			t.Fatal(err)
		}
		if err := s1.Promote(); err != nil {
			t.Fatal(err)
		}
		if err := c.Follow(s2, s1); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Primary(ctx); err != nil || got != s1 {
			t.Fatalf("Primary = %v, %v; want %s", got, err, s1.Name)
		}
		mustQuery(t, s1, "INSERT INTO t VALUES ('three')")
		waitValue(t, s2, "SELECT string_agg(v, ',' ORDER BY v) FROM t", "one,three,two")
		sender := mustQuery(t, s2, "SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'")
		if sender != strconv.Itoa(s1.Port) {
			t.Fatalf("%s streams from port %q, want %d", s2.Name, sender, s1.Port)
		}
	})

	t.Run("stop", func(t *testing.T) {
		var pids []int
		for _, n := range c.Nodes {
			pids = append(pids, tree(n.PID())...)
		}
		if err := s2.Freeze(); err != nil { // Stop must cope with a frozen node
			t.Fatal(err)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, pid := range pids {
			if alive(pid) {
				t.Errorf("process %d left after Stop", pid)
			}
		}
		if _, err := os.Stat(c.BaseDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists", c.BaseDir)
		}
	})
}
