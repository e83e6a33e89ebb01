// Package ledger is a load generator that proves a pooler's failover
// contract from the client's side. N clients each write one row every
// interval into
//
//	ledger(client_id int, seq int,
//	       node text default inet_server_port()::text,
//	       at timestamptz default clock_timestamp(),
//	       primary key (client_id, seq))
//
// through the pooler, and remember what they were told: every acknowledged
// seq (with the node and server time it reported), every error with its
// SQLSTATE, the longest gap between two acknowledged writes, the longest
// single call. Afterwards Verify checks the rows against the final primary:
// no acknowledged row lost, and no two nodes accepting writes in
// overlapping time windows.
//
// The lifecycle of a run:
//
//  1. Prepare creates (or recreates) the table.
//  2. Start launches the clients. In Session mode each keeps one
//     connection and writes on it; in Reconnect mode each write opens a new
//     connection (the pooler's new-connection path). After any error a
//     client reconnects at once; every call has a timeout so nothing hangs
//     for good, and a call that runs into it counts as a hang.
//  3. Pause parks the clients between writes (Session mode connections stay
//     open, idle); Resume lets them go on.
//  4. Stop ends the clients and returns a Result.
//  5. Verify compares the Result with the table on the final primary.
//
// Around the load: Watcher (watch.go) samples each node directly, so a
// scenario can tell when a new primary started to accept writes; LogWatch
// (logwatch.go) picks the hold times out of pgwrt's log; Env (scenario.go)
// strings them together behind a small Pooler interface, Outcome
// (outcome.go) is what a scenario found, split into broken contract
// (Failures) and missed latency goals (Missed); Patroni (patroni.go) holds
// the scenarios of issue 3 on a patronilab cluster. The router tests and
// pgwrt-lab failover-report run the same scenario code.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Mode says how a client uses connections.
type Mode string

const (
	// Session: one connection held open, every write on it.
	Session Mode = "session"
	// Reconnect: a new connection for every write.
	Reconnect Mode = "reconnect"
)

// Options configure a run.
type Options struct {
	// DSN is where the clients connect (the pooler), in any form pgx reads.
	DSN string
	// Clients is the number of clients (default 20).
	Clients int
	// FirstID is the client_id of the first client, so that several runs
	// can share a table.
	FirstID int
	// Mode is Session (default) or Reconnect.
	Mode Mode
	// Interval between the starts of two writes of one client (default 50ms).
	Interval time.Duration
	// CallTimeout bounds one call: a connect or a write (default 30 s). A
	// call that reaches it is recorded as a hang.
	CallTimeout time.Duration
	// Table is the table name (default "ledger").
	Table string
}

func (o Options) withDefaults() Options {
	if o.Clients == 0 {
		o.Clients = 20
	}
	if o.Mode == "" {
		o.Mode = Session
	}
	if o.Interval == 0 {
		o.Interval = 50 * time.Millisecond
	}
	if o.CallTimeout == 0 {
		o.CallTimeout = 30 * time.Second
	}
	if o.Table == "" {
		o.Table = "ledger"
	}
	return o
}

// Ack is one acknowledged write.
type Ack struct {
	Seq      int
	At       time.Time // client clock, when the acknowledgement arrived
	Node     string    // inet_server_port() of the node that took it
	ServerAt time.Time // the row's at column
}

// Error is one failed call.
type Error struct {
	At   time.Time // when the call started
	Took time.Duration
	Op   string // "connect" or "write"
	Code string // SQLSTATE; "" for a network error, "timeout" for a hang
	Msg  string
	// ConnAt is, for a write, when its connection was established.
	ConnAt time.Time
}

func (e Error) String() string {
	code := e.Code
	if code == "" {
		code = "net"
	}
	return fmt.Sprintf("%s %s after %s: %s %s", e.At.Format("15:04:05.000"), e.Op, e.Took.Round(time.Millisecond), code, e.Msg)
}

// Client is what one client did. Read it after Stop.
type Client struct {
	ID   int
	Mode Mode

	Acks    []Ack
	Errors  []Error
	Calls   int
	Conns   int           // connections opened
	MaxGap  time.Duration // longest time between two acknowledged writes (pauses excluded)
	GapEnd  time.Time     // when that gap ended
	MaxCall time.Duration // longest single call
	CallAt  time.Time     // when it started
	CallOp  string
	// MaxWrite and MaxConnect are the longest write and connect calls.
	MaxWrite, MaxConnect time.Duration
	ReadOnly             bool // some write got 25006 (read-only transaction)
	Hangs                int  // calls that ran into CallTimeout
	// SlowCalls lists calls longer than SlowCall.
	SlowCalls []Error

	connAt time.Time // when the current connection was established
}

// SlowCall is the duration from which a call counts as a stall.
const SlowCall = time.Second

// Run is a running load.
type Run struct {
	opt     Options
	cfg     *pgx.ConnConfig
	clients []*Client
	stop    chan struct{}
	ctx     context.Context // cancelled by Stop: calls in progress end
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu      sync.Mutex
	paused  bool
	resumed chan struct{} // closed on Resume
	parked  int
	parkCh  chan struct{} // signalled when a client parks
	started time.Time
}

// Prepare drops and creates the ledger table through dsn.
func Prepare(ctx context.Context, dsn, table string) error {
	if table == "" {
		table = "ledger"
	}
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	t := pgx.Identifier{table}.Sanitize()
	_, err = c.Exec(ctx, "DROP TABLE IF EXISTS "+t+"; CREATE TABLE "+t+` (
		client_id int, seq int,
		node text DEFAULT inet_server_port()::text,
		at timestamptz DEFAULT clock_timestamp(),
		PRIMARY KEY (client_id, seq))`)
	return err
}

// Start launches the clients.
func Start(opt Options) (*Run, error) {
	opt = opt.withDefaults()
	if opt.Mode != Session && opt.Mode != Reconnect {
		return nil, fmt.Errorf("ledger: unknown mode %q", opt.Mode)
	}
	cfg, err := pgx.ParseConfig(opt.DSN)
	if err != nil {
		return nil, err
	}
	cfg.ConnectTimeout = opt.CallTimeout
	// One round trip per write, no statement cache to go stale.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	r := &Run{opt: opt, cfg: cfg, stop: make(chan struct{}), resumed: make(chan struct{}), parkCh: make(chan struct{}, opt.Clients), started: time.Now()}
	close(r.resumed)
	r.ctx, r.cancel = context.WithCancel(context.Background())
	for i := 0; i < opt.Clients; i++ {
		c := &Client{ID: opt.FirstID + i, Mode: opt.Mode}
		r.clients = append(r.clients, c)
		r.wg.Add(1)
		go r.runClient(c, i)
	}
	return r, nil
}

// Pause parks every client before its next write and returns when all are
// parked (or ctx ends). Session connections stay open and idle.
func (r *Run) Pause(ctx context.Context) error {
	r.mu.Lock()
	if !r.paused {
		r.paused = true
		r.resumed = make(chan struct{})
	}
	r.mu.Unlock()
	for {
		r.mu.Lock()
		n := r.parked
		r.mu.Unlock()
		if n == len(r.clients) {
			return nil
		}
		select {
		case <-r.parkCh:
		case <-ctx.Done():
			return fmt.Errorf("ledger: %d of %d clients parked: %w", n, len(r.clients), ctx.Err())
		}
	}
}

// Resume lets parked clients write again.
func (r *Run) Resume() {
	r.mu.Lock()
	if r.paused {
		r.paused = false
		close(r.resumed)
	}
	r.mu.Unlock()
}

// park blocks while the run is paused. It reports false when the run stops.
func (r *Run) park() (parked bool, ok bool) {
	r.mu.Lock()
	if !r.paused {
		r.mu.Unlock()
		return false, true
	}
	ch := r.resumed
	r.parked++
	r.mu.Unlock()
	select {
	case r.parkCh <- struct{}{}:
	default:
	}
	select {
	case <-ch:
		ok = true
	case <-r.stop:
	}
	r.mu.Lock()
	r.parked--
	r.mu.Unlock()
	return true, ok
}

// Stop ends the clients and returns what they did.
func (r *Run) Stop() *Result {
	select {
	case <-r.stop:
	default:
		close(r.stop)
		r.cancel()
	}
	r.wg.Wait()
	return &Result{Clients: r.clients, Start: r.started, End: time.Now()}
}

func (r *Run) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// sleep waits d or until the run stops.
func (r *Run) sleep(d time.Duration) bool {
	if d <= 0 {
		return !r.stopped()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.stop:
		return false
	}
}

func (r *Run) runClient(c *Client, i int) {
	defer r.wg.Done()
	// Spread the clients over one interval.
	if !r.sleep(r.opt.Interval * time.Duration(i) / time.Duration(r.opt.Clients)) {
		return
	}
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	seq := 0
	lastAck := time.Now() // gaps count from the start
	next := time.Now()
	for {
		if parked, ok := r.park(); !ok {
			return
		} else if parked {
			lastAck = time.Now()
			next = lastAck
		}
		if conn == nil {
			began := time.Now()
			cn, err := r.connect(c)
			if err != nil {
				// Reconnect at once, but not more often than once an
				// interval: a pooler that refuses at once must not turn the
				// client into a busy loop.
				if !r.sleep(r.opt.Interval - time.Since(began)) {
					return
				}
				continue
			}
			conn = cn
			c.connAt = time.Now()
		}
		if !r.sleep(time.Until(next)) {
			return
		}
		now := time.Now()
		next = next.Add(r.opt.Interval)
		if next.Before(now) {
			next = now
		}
		seq++
		ack, err := r.write(c, conn, seq)
		if err != nil {
			closeConn(conn)
			conn = nil
			continue
		}
		if gap := ack.At.Sub(lastAck); gap > c.MaxGap {
			c.MaxGap, c.GapEnd = gap, ack.At
		}
		lastAck = ack.At
		if r.opt.Mode == Reconnect {
			closeConn(conn)
			conn = nil
		}
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c.Close(ctx)
}

// call records one call's duration and returns its error, if any, as an
// Error.
func (r *Run) call(c *Client, op string, began time.Time, err error) {
	took := time.Since(began)
	if err != nil && r.ctx.Err() != nil {
		return // ended by Stop, not by the server
	}
	c.Calls++
	if took > c.MaxCall {
		c.MaxCall, c.CallAt, c.CallOp = took, began, op
	}
	if op == "write" && took > c.MaxWrite {
		c.MaxWrite = took
	}
	if op == "connect" && took > c.MaxConnect {
		c.MaxConnect = took
	}
	var e *Error
	if err != nil {
		e = &Error{At: began, Took: took, Op: op, Msg: err.Error()}
		if op == "write" {
			e.ConnAt = c.connAt
		}
		var pe *pgconn.PgError
		var ne net.Error
		switch {
		case errors.As(err, &pe):
			e.Code = pe.Code
			e.Msg = pe.Message
		case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
			if took >= r.opt.CallTimeout-10*time.Millisecond {
				e.Code = "timeout"
				c.Hangs++
			}
		}
		if e.Code == "25006" {
			c.ReadOnly = true
		}
		c.Errors = append(c.Errors, *e)
	}
	if took > SlowCall {
		s := Error{At: began, Took: took, Op: op}
		if e != nil {
			s = *e
		}
		c.SlowCalls = append(c.SlowCalls, s)
	}
}

func (r *Run) connect(c *Client) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.opt.CallTimeout)
	defer cancel()
	began := time.Now()
	cn, err := pgx.ConnectConfig(ctx, r.cfg.Copy())
	r.call(c, "connect", began, err)
	if err == nil {
		c.Conns++
	}
	return cn, err
}

func (r *Run) write(c *Client, conn *pgx.Conn, seq int) (Ack, error) {
	ctx, cancel := context.WithTimeout(r.ctx, r.opt.CallTimeout)
	defer cancel()
	began := time.Now()
	var node string
	var at time.Time
	err := conn.QueryRow(ctx, "INSERT INTO "+pgx.Identifier{r.opt.Table}.Sanitize()+
		" (client_id, seq) VALUES ($1, $2) RETURNING node, at", c.ID, seq).Scan(&node, &at)
	r.call(c, "write", began, err)
	if err != nil {
		return Ack{}, err
	}
	a := Ack{Seq: seq, At: time.Now(), Node: node, ServerAt: at}
	c.Acks = append(c.Acks, a)
	return a, nil
}

// Result is what a run's clients did.
type Result struct {
	Clients    []*Client
	Start, End time.Time
}

// Merge returns a Result with the clients of all rs.
func Merge(rs ...*Result) *Result {
	out := &Result{}
	for _, r := range rs {
		if r == nil {
			continue
		}
		out.Clients = append(out.Clients, r.Clients...)
		if out.Start.IsZero() || r.Start.Before(out.Start) {
			out.Start = r.Start
		}
		if r.End.After(out.End) {
			out.End = r.End
		}
	}
	return out
}

// Summary is a Result in a few numbers.
type Summary struct {
	Clients    int
	Acks       int
	Errors     int
	Hangs      int
	ReadOnly   int // clients that saw 25006
	MaxGap     time.Duration
	MaxCall    time.Duration
	Stalls     int // calls longer than SlowCall
	Codes      map[string]int
	MaxErrors  int // most errors of one client
	ConnectErr int
	WriteErr   int
}

// Summary counts the result.
func (r *Result) Summary() Summary {
	s := Summary{Clients: len(r.Clients), Codes: map[string]int{}}
	for _, c := range r.Clients {
		s.Acks += len(c.Acks)
		s.Errors += len(c.Errors)
		s.Hangs += c.Hangs
		if c.ReadOnly {
			s.ReadOnly++
		}
		if c.MaxGap > s.MaxGap {
			s.MaxGap = c.MaxGap
		}
		if c.MaxCall > s.MaxCall {
			s.MaxCall = c.MaxCall
		}
		s.Stalls += len(c.SlowCalls)
		if len(c.Errors) > s.MaxErrors {
			s.MaxErrors = len(c.Errors)
		}
		for _, e := range c.Errors {
			code := e.Code
			if code == "" {
				code = "net"
			}
			s.Codes[code]++
			if e.Op == "connect" {
				s.ConnectErr++
			} else {
				s.WriteErr++
			}
		}
	}
	return s
}

func (s Summary) String() string {
	var codes []string
	for k, v := range s.Codes {
		codes = append(codes, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(codes)
	return fmt.Sprintf("%d clients, %d acks, %d errors (connect %d, write %d; %s; at most %d per client), %d hangs, %d stalls > %s, longest gap %s, longest call %s, %d clients saw 25006",
		s.Clients, s.Acks, s.Errors, s.ConnectErr, s.WriteErr, strings.Join(codes, " "), s.MaxErrors, s.Hangs, s.Stalls, SlowCall,
		s.MaxGap.Round(time.Millisecond), s.MaxCall.Round(time.Millisecond), s.ReadOnly)
}

// ErrorLog lists every error of every client, one per line, for a log.
func (r *Result) ErrorLog(max int) string {
	var b strings.Builder
	n := 0
	for _, c := range r.Clients {
		for _, e := range c.Errors {
			if n == max {
				fmt.Fprintf(&b, "...\n")
				return b.String()
			}
			fmt.Fprintf(&b, "client %d (%s): %s\n", c.ID, c.Mode, e)
			n++
		}
	}
	return b.String()
}

// ResumeAfter returns, for the writes acknowledged by node after t, how
// long after t the first one came (first) and by when every client that
// wrote at all after t had its first one there (all). ok is false when no
// client wrote on node after t.
func (r *Result) ResumeAfter(node string, t time.Time) (first, all time.Duration, ok bool) {
	for _, c := range r.Clients {
		for _, a := range c.Acks {
			if a.Node != node || a.At.Before(t) {
				continue
			}
			d := a.At.Sub(t)
			if !ok || d < first {
				first = d
			}
			if d > all {
				all = d
			}
			ok = true
			break
		}
	}
	return first, all, ok
}
