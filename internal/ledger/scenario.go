package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Pooler is what a scenario needs to know of the pooler under test.
type Pooler interface {
	// DSN connects through the pooler as the application user.
	DSN() string
	// Primary names the node the pooler routes writes to ("" for none).
	Primary() string
	// Alarm is the pooler's alarm text ("" for none).
	Alarm() string
	// Epoch counts the pooler's primary changes.
	Epoch() uint64
}

// Node is one database node of the cluster under test.
type Node struct {
	Name string
	Port int
	DSN  string // straight to the node, a superuser, the application database
}

// Key is the node's name in the ledger's node column and in Watcher
// results.
func (n Node) Key() string { return strconv.Itoa(n.Port) }

// Env is the stage of the failover scenarios: a pooler, the nodes behind
// it, a Watcher on them and the pooler's LogWatch. Cluster-specific actions
// live in the scenario functions (patroni.go).
type Env struct {
	Pooler Pooler
	Nodes  []Node
	Watch  *Watcher
	Log    *LogWatch // may be nil: no hold times
	Logf   func(format string, args ...any)

	// The pooler's settings the contract's bounds are made of.
	FailoverWait       time.Duration
	HealthCheckTimeout time.Duration
	HealthCheckPeriod  time.Duration

	// Clients per mode (default 10 session and 10 reconnect clients).
	Clients int
	// Warm is how long the load runs before the event, Settle how long
	// after the pooler routes to the new primary (defaults 2 s).
	Warm, Settle time.Duration
	// Slack is added to every bound a test asserts, for a loaded machine
	// (default 2 s); the latency goals themselves have none.
	Slack time.Duration
}

func (e *Env) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

func (e *Env) defaults() {
	if e.Clients == 0 {
		e.Clients = 10
	}
	if e.Warm == 0 {
		e.Warm = 2 * time.Second
	}
	if e.Settle == 0 {
		e.Settle = 2 * time.Second
	}
	if e.Slack == 0 {
		e.Slack = 2 * time.Second
	}
}

// Node returns the node called name.
func (e *Env) Node(name string) (Node, bool) {
	for _, n := range e.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

// NameOf turns a ledger node key (port) into the node's name.
func (e *Env) NameOf(key string) string {
	for _, n := range e.Nodes {
		if n.Key() == key {
			return n.Name
		}
	}
	return key
}

// Load is a ledger load in both modes on one table.
type Load struct {
	e     *Env
	table string
	runs  []*Run
}

// StartLoad recreates table through the pooler and starts session and
// reconnect clients on it; client ids start at firstID.
func (e *Env) StartLoad(ctx context.Context, table string, session, reconnect, firstID int) (*Load, error) {
	e.defaults()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err := Prepare(pctx, e.Pooler.DSN(), table)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", table, err)
	}
	l := &Load{e: e, table: table}
	for _, m := range []struct {
		mode Mode
		n    int
	}{{Session, session}, {Reconnect, reconnect}} {
		if m.n == 0 {
			continue
		}
		r, err := Start(Options{DSN: e.Pooler.DSN(), Clients: m.n, FirstID: firstID, Mode: m.mode, Table: table,
			CallTimeout: e.FailoverWait + 20*time.Second})
		if err != nil {
			l.Stop()
			return nil, err
		}
		firstID += m.n
		l.runs = append(l.runs, r)
	}
	return l, nil
}

// Pause parks every client.
func (l *Load) Pause(ctx context.Context) error {
	for _, r := range l.runs {
		if err := r.Pause(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Resume lets the clients go on.
func (l *Load) Resume() {
	for _, r := range l.runs {
		r.Resume()
	}
}

// Stop ends the load.
func (l *Load) Stop() *Result {
	var rs []*Result
	for _, r := range l.runs {
		rs = append(rs, r.Stop())
	}
	return Merge(rs...)
}

// WaitPooler waits until the pooler routes to name ("" = to nobody).
func (e *Env) WaitPooler(ctx context.Context, name string, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		if e.Pooler.Primary() == name {
			return nil
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return fmt.Errorf("pooler routes to %q, not %q, after %s (alarm %q)", e.Pooler.Primary(), name, d, e.Pooler.Alarm())
		}
	}
}

// Finish stops the load, verifies the table on the final primary and fills
// in what every scenario reports. final may be "" when no node is primary
// at the end; then verify names a node to read.
func (e *Env) Finish(ctx context.Context, o *Outcome, l *Load, final string) {
	res := l.Stop()
	o.Result = res
	o.Summary = res.Summary()
	for _, c := range res.Clients {
		o.LongestWrite = max(o.LongestWrite, c.MaxWrite)
		o.LongestConnect = max(o.LongestConnect, c.MaxConnect)
	}
	if e.Log != nil && !o.Event.IsZero() {
		o.NoPrimary, o.Held, o.HeldClients = e.Log.Held(o.Event)
	}
	if !o.Accept.IsZero() {
		if n, ok := e.Node(o.NewNode); ok {
			o.ResumeFirst, o.ResumeAll, o.Resumed = res.ResumeAfter(n.Key(), o.Accept)
		}
	}
	// Correctness every scenario shares.
	if o.Summary.ReadOnly > 0 {
		o.Fail("%d clients got 25006 (a write routed to a read-only node)", o.Summary.ReadOnly)
	}
	if o.Summary.Hangs > 0 {
		o.Fail("%d calls hung until the client's own timeout", o.Summary.Hangs)
	}
	if final != "" {
		n, _ := e.Node(final)
		vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ck, err := VerifyNamed(vctx, n.DSN, l.table, res, e.NameOf)
		cancel()
		if err != nil {
			o.Fail("verify on %s: %v", final, err)
		} else {
			o.Check = ck
			if len(ck.Overlaps) > 0 {
				o.Fail("two writers: %s", strings.Join(ck.Overlaps, "; "))
			}
		}
	}
	if o.Check != nil {
		for _, r := range o.Check.Returns {
			o.Note("handover back: %s", r)
		}
		if n := len(o.Check.RowOverlaps); n > 0 && len(o.Check.Overlaps) == 0 {
			o.Note("unacknowledged rows interleave with another node's %d times (statements that ran on an old primary after the pooler had closed their connections; e.g. %s)", n, o.Check.RowOverlaps[0])
		}
	}
}

// CheckLost fails the outcome for every acknowledged row missing.
func (o *Outcome) CheckLost() {
	if o.Check != nil && len(o.Check.Lost) > 0 {
		o.Fail("%d acknowledged rows missing on the final primary", len(o.Check.Lost))
	}
}

// CheckNoReturn fails the outcome when writes went back to a node after
// another had taken over: in a single handover they must not.
func (o *Outcome) CheckNoReturn() {
	if o.Check != nil && len(o.Check.Returns) > 0 {
		o.Fail("writes went back to an old primary: %s", strings.Join(o.Check.Returns, "; "))
	}
}

// CheckResume applies the resume goal (1 s) and a generous bound.
func (e *Env) CheckResume(o *Outcome) {
	if o.Accept.IsZero() {
		return
	}
	if !o.Resumed {
		o.Fail("no write through the pooler reached %s after it accepted writes", o.NewNode)
		return
	}
	if o.ResumeAll > time.Second {
		o.Miss("writes resumed %s after the new primary accepted writes (goal 1s)", o.ResumeAll.Round(time.Millisecond))
	}
	if lim := 5*time.Second + e.Slack; o.ResumeAll > lim {
		o.Fail("writes resumed only %s after the new primary accepted writes", o.ResumeAll.Round(time.Millisecond))
	}
}

// CheckNoHang: every call ends within failover_wait and a bit.
func (e *Env) CheckNoHang(o *Outcome) {
	if lim := e.FailoverWait + e.Slack + 3*time.Second; o.Summary.MaxCall > lim {
		o.Fail("a call took %s (bound: failover_wait %s + a bit)", o.Summary.MaxCall.Round(time.Millisecond), e.FailoverWait)
	}
}

// ErrorsPerClient counts, for the clients of mode, the errors that match
// (nil: all): the most of one client and the total.
func ErrorsPerClient(res *Result, mode Mode, match func(Error) bool) (worst int, total int) {
	for _, c := range res.Clients {
		if c.Mode != mode {
			continue
		}
		n := 0
		for _, e := range c.Errors {
			if match == nil || match(e) {
				n++
			}
		}
		total += n
		if n > worst {
			worst = n
		}
	}
	return worst, total
}

// InFlightKill reports an error PostgreSQL itself sent while it terminated
// a statement in progress (a fast shutdown): no session pooler can hide it
// from the client whose statement it was.
func InFlightKill(e Error) bool {
	return e.Op == "write" && (e.Code == "57P01" || e.Code == "57P02" || e.Code == "57P03") && !strings.HasPrefix(e.Msg, "pgwrt")
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TryConnect opens one connection through the pooler and writes nothing; it
// returns the SQLSTATE of a refusal ("" on success or on a timeout, which
// err tells apart).
func TryConnect(ctx context.Context, dsn string, d time.Duration) (code string, took time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	began := time.Now()
	c, err := pgx.Connect(ctx, dsn)
	took = time.Since(began)
	if err != nil {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code, took, err
		}
		return "", took, err
	}
	c.Close(context.Background())
	return "", took, nil
}
