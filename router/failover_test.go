package router

import (
	"context"
	"strconv"
	"testing"
	"time"

	"pgwrt/config"
	"pgwrt/internal/ledger"
	"pgwrt/internal/pglab"
)

// The failover contract (design §5, issue 3) on plain streaming replication:
// the same ledger clients as TestPatroniFailover, with the failures played
// by hand (pglab), which is quicker than Patroni.

// failoverLab starts a pglab cluster (primary + 2 standbys), a logged
// router in front of it and a ledger Env.
func failoverLab(t *testing.T, tune func(*config.Config)) (*pglab.Cluster, *testRouter, *ledger.Env, *config.Config) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pglab.StartT(t, pglab.Options{})
	cfg := failoverConfig(labConfig(c))
	if tune != nil {
		tune(cfg)
	}
	tr, lw := startLoggedRouter(t, cfg)
	env := newEnv(t, tr, lw, cfg, pglabNodes(c), pglab.AppUser, pglab.AppPassword, pglab.AppDatabase)
	return c, tr, env, cfg
}

func sleep(d time.Duration) { time.Sleep(d) }

// TestFailoverStopPromote: under load, the primary stops (fast shutdown)
// and a standby is promoted; the other standby follows it. Nothing lost,
// one writer at a time, no 25006, no hang, the new-connection path
// error-free, and each session client sees at most one error.
func TestFailoverStopPromote(t *testing.T) {
	c, _, env, _ := failoverLab(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	old, next := c.Nodes[0], c.Nodes[1]
	o := &ledger.Outcome{Name: "stop primary + promote standby"}
	ld, err := env.StartLoad(ctx, "ledger_promote", 10, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	sleep(2 * time.Second)
	o.Event = time.Now()
	if err := old.StopFast(); err != nil {
		t.Error(err)
	}
	if err := next.Promote(); err != nil {
		t.Error(err)
	}
	if key, at, err := env.Watch.WaitNewWritable(ctx, o.Event); err != nil {
		o.Fail("%v", err)
	} else {
		o.NewNode, o.Accept = env.NameOf(key), at
	}
	if err := env.WaitPooler(ctx, next.Name, 10*time.Second); err != nil {
		o.Fail("%v", err)
	}
	if err := c.Follow(c.Nodes[2], next); err != nil {
		t.Error(err)
	}
	sleep(2 * time.Second)
	env.Finish(ctx, o, ld, next.Name)
	o.CheckLost()
	env.CheckResume(o)
	env.CheckNoHang(o)
	if _, n := ledger.ErrorsPerClient(o.Result, ledger.Reconnect, func(e ledger.Error) bool { return e.Op == "connect" }); n > 0 {
		o.Fail("reconnect clients: %d errors on the new-connection path", n)
	}
	if worst, _ := ledger.ErrorsPerClient(o.Result, ledger.Session, nil); worst > 1 {
		o.Fail("a session client saw %d errors", worst)
	}
	if worst, _ := ledger.ErrorsPerClient(o.Result, ledger.Reconnect, nil); worst > 1 {
		o.Fail("a reconnect client saw %d errors", worst)
	}
	report(t, o)
}

// TestFailoverFreezePrimary: the primary hangs (SIGSTOP) under load and
// nobody promotes. A statement on an open connection must get an answer
// within health_check_timeout + health_check_period + 1 s (design §5, "node
// frozen"); new connections are held, not refused, and go on when the node
// comes back; nothing is lost.
func TestFailoverFreezePrimary(t *testing.T) {
	c, _, env, cfg := failoverLab(t, func(cfg *config.Config) {
		cfg.HealthCheckPeriod = config.Duration(time.Second)
		cfg.HealthCheckTimeout = config.Duration(2 * time.Second)
		cfg.FailoverWait = config.Duration(20 * time.Second)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prim := c.Nodes[0]
	bound := cfg.HealthCheckTimeout.D() + cfg.HealthCheckPeriod.D() + time.Second
	freeze := envDuration("PGWRT_FREEZE", 2*bound+2*time.Second)
	if freeze > 15*time.Second {
		freeze = 15 * time.Second // thaw within failover_wait
	}
	o := &ledger.Outcome{Name: "primary frozen " + freeze.String()}
	ld, err := env.StartLoad(ctx, "ledger_freeze", 10, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	sleep(2 * time.Second)
	o.Event = time.Now()
	if err := prim.Freeze(); err != nil {
		t.Fatal(err)
	}
	// The router must give up on the node while it is frozen.
	down := env.WaitPooler(ctx, "", bound+env.Slack)
	downAfter := time.Since(o.Event)
	sleep(freeze - downAfter)
	if err := prim.Thaw(); err != nil {
		t.Fatal(err)
	}
	if key, at, err := env.Watch.WaitNewWritable(ctx, o.Event); err == nil {
		o.NewNode, o.Accept = env.NameOf(key), at
	}
	if err := env.WaitPooler(ctx, prim.Name, 10*time.Second); err != nil {
		o.Fail("%v", err)
	}
	sleep(2 * time.Second)
	env.Finish(ctx, o, ld, prim.Name)
	if down != nil {
		o.Fail("frozen primary still chosen %s after the freeze: %v", downAfter.Round(time.Millisecond), down)
	} else {
		o.Note("the router gave up on the frozen primary after %s", downAfter.Round(time.Millisecond))
	}
	o.CheckLost()
	env.CheckNoHang(o)
	if o.LongestWrite > bound {
		o.Miss("a statement waited %s (contract %s)", o.LongestWrite.Round(time.Millisecond), bound)
	}
	if o.LongestWrite > bound+env.Slack {
		o.Fail("a statement on an open connection waited %s without an answer; contract: health_check_timeout + period + 1s = %s", o.LongestWrite.Round(time.Millisecond), bound)
	}
	if _, n := ledger.ErrorsPerClient(o.Result, ledger.Reconnect, func(e ledger.Error) bool { return e.Op == "connect" }); n > 0 {
		o.Fail("reconnect clients: %d connects refused while the primary was away for less than failover_wait", n)
	}
	report(t, o)
}

// TestFailoverTwoWritableEvidence: pg2 streams from pg1 (cascading, set up
// with pglab Follow) when pg1 is promoted by hand while pg0 still runs: two
// writable nodes, and the only standby speaks for pg1, so the router moves
// there at once. When that standby goes away, no standby speaks for either
// node and the router keeps the one on the newest timeline (design §5).
// Acknowledged writes come from one node at a time and never go back to pg0.
// (TestFailoverTwoWritableNoEvidence covers standby evidence for the node on
// the older timeline.)
func TestFailoverTwoWritableEvidence(t *testing.T) {
	c, tr, env, cfg := failoverLab(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg0, pg1, pg2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	period := cfg.HealthCheckPeriod.D()
	if err := c.Follow(pg2, pg1); err != nil {
		t.Fatal(err)
	}
	o := &ledger.Outcome{Name: "two writable, standby evidence"}
	ld, err := env.StartLoad(ctx, "ledger_evidence", 5, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	sleep(time.Second)

	// 1. pg1 promoted; pg2 streams from it: the router moves to pg1.
	o.Event = time.Now()
	if err := pg1.Promote(); err != nil {
		t.Fatal(err)
	}
	if key, at, err := env.Watch.WaitNewWritable(ctx, o.Event); err == nil {
		o.NewNode, o.Accept = env.NameOf(key), at
	}
	if err := env.WaitPooler(ctx, pg1.Name, 4*period+env.Slack); err != nil {
		o.Fail("pg2 streams from pg1: %v", err)
	}
	if a := tr.Topology().Alarm; a != "" {
		o.Fail("alarm although a standby names the primary: %s", a)
	}
	sleep(time.Second)

	// 2. pg2 stops: no evidence; pg1's timeline is newer than pg0's.
	if err := pg2.StopFast(); err != nil {
		t.Fatal(err)
	}
	sleep(4 * period)
	tp := tr.Topology()
	if p := tp.PrimaryNode(); p == nil || p.Name != pg1.Name {
		o.Fail("without standbys the router should keep %s (timeline 2 over 1), has %+v (alarm %q)", pg1.Name, p, tp.Alarm)
	}
	sleep(time.Second)
	env.Finish(ctx, o, ld, pg1.Name)
	o.CheckNoReturn()
	env.CheckResume(o)
	// Rows pg0 acknowledged between pg1's promotion and the router's move
	// exist only on pg0: a split brain costs that, and fencing it is
	// Patroni's job. What pgwrt owes is one writer at a time.
	if o.Check != nil && len(o.Check.Lost) > 0 {
		o.Note("%d rows acknowledged by pg0 after pg1's promotion are not on pg1 (split brain by hand; expected)", len(o.Check.Lost))
	}
	k0, k1 := strconv.Itoa(pg0.Port), strconv.Itoa(pg1.Port)
	for _, cl := range o.Result.Clients {
		for _, a := range cl.Acks {
			if a.Node != k0 && a.Node != k1 {
				o.Fail("client %d wrote on %s", cl.ID, env.NameOf(a.Node))
			}
		}
	}
	report(t, o)
}

// TestFailoverTwoWritableNoEvidence: both standbys promoted by hand while
// the primary runs: three writable nodes, no standby, two of them on the
// newest timeline. The router chooses nobody, raises its alarm, holds new
// clients and refuses them with 57P03 after failover_wait.
//
// On the way, with pg1 promoted and pg2 the only evidence for pg0, pg2
// freezes until a check times out and the router marks it down. Its last
// seen upstream must still count (evidenceGrace): the router stays on pg0
// instead of handing the choice to the timeline rule, which would move it
// to pg1 (seen once in TestPatroniFailover/two-writable under CI load, where
// a standby missed one check).
func TestFailoverTwoWritableNoEvidence(t *testing.T) {
	c, tr, env, cfg := failoverLab(t, func(cfg *config.Config) {
		cfg.FailoverWait = config.Duration(3 * time.Second)
		cfg.HealthCheckPeriod = config.Duration(time.Second)
		cfg.HealthCheckTimeout = config.Duration(time.Second)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	pg0, pg1, pg2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	o := &ledger.Outcome{Name: "two writable, no evidence"}
	ld, err := env.StartLoad(ctx, "ledger_noevidence", 5, 5, 0)
	if err != nil {
		t.Fatal(err)
	}
	sleep(time.Second)
	o.Event = time.Now()
	if err := pg1.Promote(); err != nil {
		t.Fatal(err)
	}
	sleep(4 * cfg.HealthCheckPeriod.D())
	if got := env.Pooler.Primary(); got != pg0.Name {
		o.Fail("after promoting pg1 (pg2 still streams from pg0) the router routes to %q", got)
	}
	epoch := tr.Topology().Epoch
	if err := pg2.Freeze(); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	for tr.Topology().Nodes[2].Up && time.Since(frozen) < 10*time.Second {
		sleep(10 * time.Millisecond)
	}
	downAfter := time.Since(frozen)
	if err := pg2.Thaw(); err != nil {
		t.Fatal(err)
	}
	if tr.Topology().Nodes[2].Up {
		t.Fatalf("frozen pg2 not marked down after %s", downAfter.Round(time.Millisecond))
	}
	for n := &tr.Topology().Nodes[2]; (!n.Up || n.UpstreamHost == "") && time.Since(frozen) < 20*time.Second; n = &tr.Topology().Nodes[2] {
		sleep(10 * time.Millisecond)
	}
	if tp := tr.Topology(); tp.Epoch != epoch || !tp.Nodes[2].Up {
		o.Fail("pg2 missed a check (down after %s, back after %s): the router left pg0 (epoch %d -> %d, now routing to %q, pg2 up %v)",
			downAfter.Round(time.Millisecond), time.Since(frozen).Round(time.Millisecond), epoch, tp.Epoch, env.Pooler.Primary(), tp.Nodes[2].Up)
	} else {
		o.Note("pg2 missed a check (down after %s, streaming again after %s); the router stayed on pg0", downAfter.Round(time.Millisecond), time.Since(frozen).Round(time.Millisecond))
	}
	if err := pg2.Promote(); err != nil {
		t.Fatal(err)
	}
	if err := env.WaitPooler(ctx, "", 4*cfg.HealthCheckPeriod.D()+env.Slack); err != nil {
		o.Fail("three writable nodes, no standby, timelines 1, 2, 2: %v", err)
	}
	if a := tr.Topology().Alarm; a == "" {
		o.Fail("no alarm")
	} else {
		o.Note("alarm: %s", a)
	}
	code, took, err := ledger.TryConnect(ctx, env.Pooler.DSN(), cfg.FailoverWait.D()+10*time.Second)
	if code != "57P03" || took < cfg.FailoverWait.D()-200*time.Millisecond {
		o.Fail("a new client should be held for failover_wait (%s) then get 57P03; got %q after %s: %v", cfg.FailoverWait.D(), code, took.Round(time.Millisecond), err)
	} else {
		o.Note("a new client was held %s, then 57P03", took.Round(time.Millisecond))
	}
	env.Finish(ctx, o, ld, pg0.Name)
	k0 := strconv.Itoa(pg0.Port)
	for _, cl := range o.Result.Clients {
		for _, a := range cl.Acks {
			if a.Node != k0 {
				o.Fail("client %d wrote on %s", cl.ID, env.NameOf(a.Node))
				break
			}
		}
	}
	o.CheckLost()
	if o.Summary.ReadOnly > 0 {
		o.Fail("25006 seen")
	}
	report(t, o)
}

// TestMonitorPokeStorm: while no primary answers, every held client and
// every broken backend pokes the monitors (pokeMonitors), a few hundred
// times a second in a switchover with many clients. A poke must only make a
// check come sooner: it must never turn a healthy node into a down one.
// (Seen in TestPatroniFailover/switchover: both standbys were marked down
// with "i/o timeout" while clients waited for the new primary; fixed in
// 0140da8, kept as a regression test.)
func TestMonitorPokeStorm(t *testing.T) {
	c := shared(t)
	tr, lw := startLoggedRouter(t, labConfig(c))
	epoch := tr.Topology().Epoch
	from := time.Now()
	for time.Since(from) < 3*time.Second {
		tr.pokeMonitors()
		time.Sleep(2 * time.Millisecond)
	}
	var downs []string
	for _, e := range lw.Events(from) {
		if e.Msg == "node down" {
			downs = append(downs, e.Attrs["node"]+": "+e.Attrs["error"])
		}
	}
	if len(downs) > 0 || tr.Topology().Epoch != epoch {
		t.Errorf("BUG: pokes alone marked healthy nodes down %d times (epoch %d -> %d): %v",
			len(downs), epoch, tr.Topology().Epoch, downs)
	}
}
