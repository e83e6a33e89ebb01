package ledger

import (
	"context"
	"fmt"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"pgwrt/internal/patronilab"
)

// Patroni runs the failover scenarios of issue 3 on a patronilab cluster.
// Each scenario starts by waiting for a healthy cluster, so they can run in
// any order on one cluster; TwoWritable leaves Patroni to repair two hand
// promoted nodes and is best run last.
type Patroni struct {
	*Env
	C *patronilab.Cluster
	// EtcdOutage is how long one etcd member stays down (default 20 s).
	EtcdOutage time.Duration
	// FreezeFor is how long the primary stays SIGSTOPped (default 20 s).
	FreezeFor time.Duration
	// Transaction: the pooler runs in transaction mode, where a client
	// between transactions holds no backend, so a switchover must cost it
	// nothing (the scenarios check that instead of "at most one error").
	Transaction bool
}

// Scenario is one named scenario.
type Scenario struct {
	Name string
	Run  func(ctx context.Context) *Outcome
}

// Scenarios lists the scenarios in the order they run best.
func (p *Patroni) Scenarios() []Scenario {
	return []Scenario{
		{"etcd-member-down", p.EtcdMemberDown},
		{"switchover", p.Switchover},
		{"switchover-no-clients", p.SwitchoverNoClients},
		{"switchover-idle", p.SwitchoverIdle},
		{"kill-postmaster", p.KillPostmaster},
		{"freeze-primary", p.FreezePrimary},
		{"two-writable", p.TwoWritable},
	}
}

func (p *Patroni) healthy(ctx context.Context, o *Outcome) (*patronilab.PatroniNode, bool) {
	p.defaults()
	hctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	l, err := p.C.WaitHealthy(hctx)
	if err != nil {
		o.Fail("cluster not healthy before the scenario: %v", err)
		return nil, false
	}
	if err := p.WaitPooler(ctx, l.Name, 30*time.Second); err != nil {
		o.Fail("%v", err)
		return nil, false
	}
	return l, true
}

// other returns a node that is not name.
func (p *Patroni) other(name string) *patronilab.PatroniNode {
	for _, n := range p.C.Nodes {
		if n.Name != name {
			return n
		}
	}
	return nil
}

// accepted waits until a node accepts writes after o.Event and the pooler
// routes to it.
func (p *Patroni) accepted(ctx context.Context, o *Outcome, d time.Duration) bool {
	wctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	key, at, err := p.Watch.WaitNewWritable(wctx, o.Event)
	if err != nil {
		o.Fail("%v", err)
		return false
	}
	o.NewNode, o.Accept = p.NameOf(key), at
	if err := p.WaitPooler(ctx, o.NewNode, d); err != nil {
		o.Fail("%v", err)
		return false
	}
	return true
}

// Switchover: patronictl switchover under load. Reconnect clients see no
// error on the new-connection path; session connections bound to the old
// primary see at most one error each; writes resume within a second of the
// new primary accepting them; no acknowledged row goes missing.
func (p *Patroni) Switchover(ctx context.Context) *Outcome {
	o := &Outcome{Name: "patronictl switchover"}
	leader, ok := p.healthy(ctx, o)
	if !ok {
		return o
	}
	cand := p.other(leader.Name)
	ld, err := p.StartLoad(ctx, "ledger_switchover", p.Clients, p.Clients, 0)
	if err != nil {
		o.Fail("%v", err)
		return o
	}
	sleepCtx(ctx, p.Warm)
	o.Event = time.Now()
	out, err := p.C.Patronictl(ctx, "switchover", "--leader", leader.Name, "--candidate", cand.Name, "--force")
	if err != nil {
		o.Fail("%v", err)
	} else {
		p.logf("patronictl: %s", out)
	}
	if p.accepted(ctx, o, time.Minute) {
		sleepCtx(ctx, p.Settle)
	}
	p.Finish(ctx, o, ld, o.NewNode)
	o.CheckLost()
	p.CheckResume(o)
	p.CheckNoHang(o)
	o.CheckNoReturn()
	p.checkSwitchoverErrors(o)
	return o
}

// checkSwitchoverErrors applies the switchover contract to the clients'
// errors. PostgreSQL's fast shutdown ends every statement in flight with
// FATAL 57P01, which no session pooler can hide from the client whose
// statement it was. Everything after that is the pooler's doing: from the
// moment the first client heard the shutdown, the pooler (whose health check
// connection hears it too) must hand out no connection to the old primary.
// So reconnect clients get no error when connecting, and no error on a
// connection made after the shutdown began; session clients at most one
// error each.
func (p *Patroni) checkSwitchoverErrors(o *Outcome) {
	if _, n := ErrorsPerClient(o.Result, Reconnect, func(e Error) bool { return e.Op == "connect" }); n > 0 {
		o.Fail("reconnect clients: %d errors on the new-connection path", n)
	}
	var first time.Time // when the first client heard the shutdown
	for _, c := range o.Result.Clients {
		for _, e := range c.Errors {
			if end := e.At.Add(e.Took); first.IsZero() || end.Before(first) {
				first = end
			}
		}
	}
	grace := first.Add(p.Slack / 20)
	late := func(e Error) bool { return e.Op == "write" && e.ConnAt.After(grace) }
	if worst, n := ErrorsPerClient(o.Result, Reconnect, late); n > 0 {
		var ex Error
		for _, c := range o.Result.Clients {
			for _, e := range c.Errors {
				if c.Mode == Reconnect && late(e) {
					ex = e
				}
			}
		}
		o.Fail("reconnect clients: %d writes failed on connections the pooler handed out more than %s after the old primary began to shut down at %s (up to %d per client; e.g. %s, connected %s)",
			n, p.Slack/20, first.Format("15:04:05.000"), worst, ex, ex.ConnAt.Format("15:04:05.000"))
	}
	if _, n := ErrorsPerClient(o.Result, Reconnect, func(e Error) bool { return e.Op == "write" }); n > 0 {
		o.Note("reconnect clients: %d statements failed in all (PostgreSQL ends statements in flight at a fast shutdown)", n)
	}
	if worst, _ := ErrorsPerClient(o.Result, Session, nil); worst > 1 {
		o.Fail("a session-mode client saw %d errors (at most one allowed)", worst)
	}
	if p.Transaction {
		clean, all := 0, 0
		for _, c := range o.Result.Clients {
			if c.Mode == Session {
				all++
				if len(c.Errors) == 0 {
					clean++
				}
			}
		}
		o.Note("transaction mode: %d of %d session clients saw no error (the others had a write in flight on the old primary)", clean, all)
	}
}

// SwitchoverNoClients: a switchover while no client is connected (the pool
// holds idle backends to the old primary), then clients connect: the first
// write of each succeeds on the new primary.
func (p *Patroni) SwitchoverNoClients(ctx context.Context) *Outcome {
	o := &Outcome{Name: "switchover, no clients, then connect"}
	leader, ok := p.healthy(ctx, o)
	if !ok {
		return o
	}
	cand := p.other(leader.Name)
	table := "ledger_noclients"
	// Fill the pool with idle backends to the old primary.
	ld, err := p.StartLoad(ctx, table, 2*p.Clients, 0, 0)
	if err != nil {
		o.Fail("%v", err)
		return o
	}
	sleepCtx(ctx, time.Second)
	before := ld.Stop().Summary()
	if before.Errors > 0 || before.Acks == 0 {
		o.Fail("warm-up load: %s", before)
	}
	o.Event = time.Now()
	if err := p.C.Switchover(ctx, cand.Name); err != nil {
		o.Fail("%v", err)
		return o
	}
	if !p.accepted(ctx, o, time.Minute) {
		return o
	}
	after, err := p.startNoPrepare(table, 2*p.Clients, 1000)
	if err != nil {
		o.Fail("%v", err)
		return o
	}
	sleepCtx(ctx, p.Settle)
	p.Finish(ctx, o, after, cand.Name)
	o.CheckLost()
	o.CheckNoReturn()
	key := strconv.Itoa(cand.PGPort)
	for _, c := range o.Result.Clients {
		switch {
		case len(c.Errors) > 0:
			o.Fail("client %d: first call failed: %s", c.ID, c.Errors[0])
		case len(c.Acks) == 0:
			o.Fail("client %d wrote nothing", c.ID)
		case c.Acks[0].Node != key:
			o.Fail("client %d: first write went to %s, not the new primary %s", c.ID, p.NameOf(c.Acks[0].Node), cand.Name)
		}
	}
	return o
}

// startNoPrepare starts session clients on an existing table.
func (p *Patroni) startNoPrepare(table string, n, firstID int) (*Load, error) {
	r, err := Start(Options{DSN: p.Pooler.DSN(), Clients: n, FirstID: firstID, Mode: Session, Table: table,
		CallTimeout: p.FailoverWait + 20*time.Second})
	if err != nil {
		return nil, err
	}
	return &Load{e: p.Env, table: table, runs: []*Run{r}}, nil
}

// SwitchoverIdle: a switchover while every session sits idle on an open
// connection; when they resume, each sees at most one error, then writes
// on the new primary, and never 25006.
func (p *Patroni) SwitchoverIdle(ctx context.Context) *Outcome {
	o := &Outcome{Name: "switchover, sessions idle, then resume"}
	leader, ok := p.healthy(ctx, o)
	if !ok {
		return o
	}
	cand := p.other(leader.Name)
	ld, err := p.StartLoad(ctx, "ledger_idle", 2*p.Clients, 0, 0)
	if err != nil {
		o.Fail("%v", err)
		return o
	}
	sleepCtx(ctx, p.Warm)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = ld.Pause(pctx)
	cancel()
	if err != nil {
		o.Fail("%v", err)
	}
	o.Event = time.Now()
	if err := p.C.Switchover(ctx, cand.Name); err != nil {
		o.Fail("%v", err)
	}
	if p.accepted(ctx, o, time.Minute) {
		sleepCtx(ctx, time.Second)
	}
	resumed := time.Now()
	ld.Resume()
	sleepCtx(ctx, p.Settle)
	p.Finish(ctx, o, ld, cand.Name)
	o.CheckLost()
	o.CheckNoReturn()
	key := strconv.Itoa(cand.PGPort)
	// Writes resume when the clients do, not when the primary accepts.
	o.ResumeFirst, o.ResumeAll, o.Resumed = o.Result.ResumeAfter(key, resumed)
	o.Note("resume is measured from the clients' resume, %s after the new primary accepted writes", resumed.Sub(o.Accept).Round(time.Millisecond))
	for _, c := range o.Result.Clients {
		if p.Transaction && len(c.Errors) > 0 {
			o.Fail("client %d, idle at the switchover, saw it (transaction mode): %s", c.ID, c.Errors[0])
		}
		if len(c.Errors) > 1 {
			o.Fail("client %d saw %d errors: %s", c.ID, len(c.Errors), c.Errors[1])
		}
		var last *Ack
		for i := range c.Acks {
			if c.Acks[i].At.After(resumed) {
				last = &c.Acks[i]
			}
		}
		if last == nil || last.Node != key {
			o.Fail("client %d did not write on %s after resuming", c.ID, cand.Name)
		}
	}
	return o
}

// KillPostmaster: kill -9 of the primary's postmaster under load. Patroni
// restarts it or fails over. No call hangs; writes resume within a second
// of a primary accepting them; every acknowledged row is there.
func (p *Patroni) KillPostmaster(ctx context.Context) *Outcome {
	o := &Outcome{Name: "kill -9 primary postmaster"}
	leader, ok := p.healthy(ctx, o)
	if !ok {
		return o
	}
	ld, err := p.StartLoad(ctx, "ledger_kill", p.Clients, p.Clients, 0)
	if err != nil {
		o.Fail("%v", err)
		return o
	}
	sleepCtx(ctx, p.Warm)
	o.Event = time.Now()
	if err := leader.KillPostmaster(); err != nil {
		o.Fail("%v", err)
	}
	if p.accepted(ctx, o, 2*time.Minute) {
		sleepCtx(ctx, p.Settle)
		if o.NewNode == leader.Name {
			o.Note("Patroni restarted %s in place", leader.Name)
		} else {
			o.Note("Patroni failed over from %s to %s", leader.Name, o.NewNode)
		}
	}
	p.Finish(ctx, o, ld, o.NewNode)
	o.CheckLost()
	o.CheckNoReturn()
	p.CheckResume(o)
	p.CheckNoHang(o)
	return o
}

// EtcdMemberDown: one etcd member stopped for EtcdOutage under load: the
// pooler does not care, so no error, no stall, no primary change.
func (p *Patroni) EtcdMemberDown(ctx context.Context) *Outcome {
	if p.EtcdOutage == 0 {
		p.EtcdOutage = 20 * time.Second
	}
	o := &Outcome{Name: fmt.Sprintf("etcd member down %s", p.EtcdOutage)}
	leader, ok := p.healthy(ctx, o)
	if !ok {
		return o
	}
	epoch := p.Pooler.Epoch()
	ld, err := p.StartLoad(ctx, "ledger_etcd", p.Clients, p.Clients, 0)
	if err != nil {
		o.Fail("%v", err)
		return o
	}
	sleepCtx(ctx, p.Warm)
	o.Event = time.Now()
	if err := p.C.StopEtcd(0); err != nil {
		o.Fail("%v", err)
	}
	sleepCtx(ctx, p.EtcdOutage)
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	if err := p.C.StartEtcd(sctx, 0); err != nil {
		o.Fail("%v", err)
	}
	cancel()
	sleepCtx(ctx, p.Settle)
	p.Finish(ctx, o, ld, leader.Name)
	o.CheckLost()
	if o.Summary.Errors > 0 {
		o.Fail("%d errors", o.Summary.Errors)
	}
	if e := p.Pooler.Epoch(); e != epoch {
		o.Fail("the pooler changed primary (epoch %d -> %d)", epoch, e)
	}
	if o.Summary.Stalls > 0 {
		o.Miss("%d calls took more than %s (longest %s)", o.Summary.Stalls, SlowCall, o.Summary.MaxCall.Round(time.Millisecond))
	}
	if lim := 3*time.Second + p.Slack; o.Summary.MaxCall > lim {
		o.Fail("a call took %s", o.Summary.MaxCall.Round(time.Millisecond))
	}
	return o
}

// FreezePrimary: the primary's PostgreSQL SIGSTOPped for FreezeFor, then
// SIGCONT. A statement on an open connection gets an answer within
// health_check_timeout + health_check_period + 1 s; a new connection is held
// at most failover_wait; Patroni fails over after its TTL and the old
// primary rejoins.
func (p *Patroni) FreezePrimary(ctx context.Context) *Outcome {
	if p.FreezeFor == 0 {
		p.FreezeFor = 20 * time.Second
	}
	o := &Outcome{Name: fmt.Sprintf("primary frozen %s", p.FreezeFor)}
	leader, ok := p.healthy(ctx, o)
	if !ok {
		return o
	}
	ld, err := p.StartLoad(ctx, "ledger_freeze", p.Clients, p.Clients, 0)
	if err != nil {
		o.Fail("%v", err)
		return o
	}
	sleepCtx(ctx, p.Warm)
	o.Event = time.Now()
	if err := leader.Freeze(); err != nil {
		o.Fail("%v", err)
	}
	sleepCtx(ctx, p.FreezeFor)
	if err := leader.Thaw(); err != nil {
		o.Fail("%v", err)
	}
	final := ""
	hctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	l, err := p.C.WaitHealthy(hctx)
	cancel()
	if err != nil {
		o.Fail("no healthy cluster after the thaw: %v", err)
	} else {
		final = l.Name
		if err := p.WaitPooler(ctx, l.Name, 30*time.Second); err != nil {
			o.Fail("%v", err)
		}
		if key, at, ok := p.Watch.NewWritable(o.Event); ok {
			o.NewNode, o.Accept = p.NameOf(key), at
		}
		sleepCtx(ctx, p.Settle)
	}
	p.Finish(ctx, o, ld, final)
	if o.Check != nil && len(o.Check.Lost) > 0 {
		// Acknowledged rows can go missing here without the pooler's help:
		// Patroni has no watchdog in the lab, so nothing fences the frozen
		// node, and when its Patroni wakes up it may take the leader key
		// back and rewind the node that led meanwhile.
		by := []string{}
		for n, k := range o.Check.LostBy {
			by = append(by, fmt.Sprintf("%d acknowledged by %s", k, n))
		}
		why := "an asynchronous standby took over without them"
		if final == leader.Name {
			why = fmt.Sprintf("after the thaw Patroni made the frozen %s leader again and rewound the node that had led meanwhile (no watchdog fences a frozen primary)", leader.Name)
		}
		o.Note("%d acknowledged rows are not on the final primary %s (%s): %s; the pooler had sent each write to the only primary it could see", len(o.Check.Lost), final, strings.Join(by, ", "), why)
	}
	bound := p.HealthCheckTimeout + p.HealthCheckPeriod + time.Second
	if p.Transaction {
		// In transaction mode a client between transactions holds no
		// connection to the frozen node: its next statement is held like
		// a new connection while there is no primary (design §5), so its
		// answer may also wait for the hold pgwrt logged.
		bound += o.Held
	}
	if o.LongestWrite > bound {
		o.Miss("a statement waited %s for an answer (contract: health_check_timeout + period + 1s = %s)", o.LongestWrite.Round(time.Millisecond), bound)
	}
	if o.LongestWrite > bound+p.Slack {
		o.Fail("a statement on an open connection waited %s without an answer (bound %s + slack %s)", o.LongestWrite.Round(time.Millisecond), bound, p.Slack)
	}
	p.CheckNoHang(o)
	return o
}

// TwoWritable: Patroni paused, a standby promoted by hand. While the third
// node still streams from the old primary, the pooler stays there. Once the
// third node is promoted as well, no standby says which primary is real and
// the two new ones share a timeline: the pooler holds clients and raises
// its alarm. Writes go to at most one node throughout. Then Patroni is
// resumed and repairs the cluster (pg_rewind).
func (p *Patroni) TwoWritable(ctx context.Context) *Outcome {
	o := &Outcome{Name: "two writable (hand promote)"}
	leader, ok := p.healthy(ctx, o)
	if !ok {
		return o
	}
	var rogue []*patronilab.PatroniNode
	for _, n := range p.C.Nodes {
		if n != leader {
			rogue = append(rogue, n)
		}
	}
	ld, err := p.StartLoad(ctx, "ledger_two", p.Clients, p.Clients, 0)
	if err != nil {
		o.Fail("%v", err)
		return o
	}
	defer p.repair(ctx, o, leader, rogue)
	if err := p.C.Pause(ctx); err != nil {
		o.Fail("%v", err)
		ld.Stop()
		return o
	}
	sleepCtx(ctx, p.Warm)

	// 1. One standby promoted by hand; the other still streams from the
	// leader: the pooler stays.
	o.Event = time.Now()
	if err := p.promoteByHand(ctx, rogue[0]); err != nil {
		o.Fail("%v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := p.Watch.WaitState(wctx, strconv.Itoa(rogue[0].PGPort), Writable); err != nil {
		o.Fail("%v", err)
	}
	cancel()
	sleepCtx(ctx, 3*p.HealthCheckPeriod+time.Second)
	if got := p.Pooler.Primary(); got != leader.Name {
		o.Fail("with %s streaming from %s, the pooler routes to %q", rogue[1].Name, leader.Name, got)
	}
	if a := p.Pooler.Alarm(); a != "" {
		o.Fail("alarm with standby evidence: %s", a)
	}

	// 2. The other standby promoted too: no evidence, the two new primaries
	// share a timeline. The pooler must choose nobody.
	if err := p.promoteByHand(ctx, rogue[1]); err != nil {
		o.Fail("%v", err)
	}
	if err := p.WaitPooler(ctx, "", 10*time.Second); err != nil {
		o.Fail("no standby evidence, equal timelines: %v", err)
	}
	if p.Pooler.Alarm() == "" {
		o.Fail("no alarm while several nodes accept writes")
	} else {
		o.Note("alarm: %s", p.Pooler.Alarm())
	}
	// A new client is held, not routed.
	code, took, err := TryConnect(ctx, p.Pooler.DSN(), 3*time.Second)
	switch {
	case err == nil:
		o.Fail("a new client was routed while the pooler has no primary")
	case code != "" && code != "57P03":
		o.Fail("a new client got %s (%v) instead of being held", code, err)
	default:
		o.Note("a new client was held (%s, %s)", took.Round(time.Millisecond), errText(err))
	}
	sleepCtx(ctx, time.Second)
	p.Finish(ctx, o, ld, leader.Name)
	key := strconv.Itoa(leader.PGPort)
	for _, c := range o.Result.Clients {
		for _, a := range c.Acks {
			if a.Node != key {
				o.Fail("client %d wrote on %s, not %s", c.ID, p.NameOf(a.Node), leader.Name)
				break
			}
		}
	}
	o.CheckLost()
	return o
}

// repair resumes Patroni after TwoWritable and gets the hand-promoted nodes
// back as replicas: Patroni demotes them itself, and when pg_rewind cannot
// put one on the leader's timeline, patronictl reinit clones it afresh.
func (p *Patroni) repair(ctx context.Context, o *Outcome, leader *patronilab.PatroniNode, rogue []*patronilab.PatroniNode) {
	began := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	if err := p.C.Resume(rctx); err != nil {
		o.Note("resume Patroni: %v", err)
		return
	}
	hctx, hcancel := context.WithTimeout(rctx, 30*time.Second)
	_, err := p.C.WaitHealthy(hctx)
	hcancel()
	if err != nil {
		for _, n := range rogue {
			if out, err := p.C.Patronictl(rctx, "reinit", patronilab.Scope, n.Name, "--force", "--wait"); err != nil {
				o.Note("patronictl reinit %s: %v: %s", n.Name, err, out)
			}
		}
		_, err = p.C.WaitHealthy(rctx)
	}
	if err != nil {
		o.Note("Patroni did not repair the cluster: %v", err)
		return
	}
	o.Note("cluster repaired in %s", time.Since(began).Round(time.Second))
}

func errText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// promoteByHand runs pg_ctl promote on a node behind Patroni's back, as the
// postgres OS user when we are root.
func (p *Patroni) promoteByHand(ctx context.Context, n *patronilab.PatroniNode) error {
	cmd := exec.CommandContext(ctx, filepath.Join(p.C.Options.PGBinDir, "pg_ctl"), "promote", "-w", "-t", "60", "-D", n.DataDir)
	cmd.Env = []string{"LC_ALL=C.UTF-8"}
	if syscall.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return err
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = n.Dir
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl promote %s: %w: %s", n.Name, err, out)
	}
	p.logf("promoted %s by hand", n.Name)
	return nil
}
