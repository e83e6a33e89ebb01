package router

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"pgwrt/config"
	"pgwrt/router/wire"
)

// clientLoginTimeout bounds everything before a client is handed its backend:
// startup packet, TLS refusal, password.
const clientLoginTimeout = 15 * time.Second

// session is one client connection, owned by one goroutine (serveConn) from
// accept to close. While it is linked to a backend its bytes move on an
// engine (engine.go): on a loop thread, or with one helper goroutine that
// copies the server side.
type session struct {
	r      *Router
	conn   net.Conn
	remote netip.Addr
	slot   *slot
	st     *wire.Startup
	user   string
	db     string

	pid, secret uint32 // what the client was given as BackendKeyData

	mu      sync.Mutex
	be      *backend // current backend, for cancel and for kill
	link    *link    // set while forwarding on an event loop
	killErr error    // why the session was killed
	// lostWhy (transaction mode): why the backend under the client's
	// transaction was taken away (loseBackend), for txnlost.go.
	lostWhy string
	txnMode atomic.Bool // the session pools by transaction

	// Transaction mode: want are the tracked parameters the client set at
	// startup or was first given, re-applied on each backend it lands
	// on; seen is every value it has been sent as ParameterStatus.
	want, seen paramSet
	fitKey     struct { // paramsKey's cache
		ok         bool
		want, seen uint64 // the sets' versions it was built from
		key        string
	}

	wmu        sync.Mutex // serialises writes to conn
	atBoundary bool       // the bytes written to conn end on a message boundary
	killed     atomic.Bool
}

// serveConn runs one client connection to its end.
func (r *Router) serveConn(c net.Conn) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("panic serving client", "remote", c.RemoteAddr().String(), "panic", p)
		}
		c.Close()
	}()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 6})
		tc.SetNoDelay(true)
	}
	c.SetDeadline(time.Now().Add(clientLoginTimeout))
	st, err := readStartup(c)
	if err != nil {
		if errors.Is(err, wire.ErrMalformed) {
			r.metrics.protocolErrors.Inc()
			r.log.Info("bad startup packet", "remote", c.RemoteAddr().String(), "error", err)
			writeFatal(c, errorf(codeProtocol, "pgwrt: invalid startup packet"))
		}
		return
	}
	if st.Code == wire.CodeCancel {
		r.cancel(st.PID, st.Secret)
		return
	}
	if st.Params["replication"] != "" && st.Params["replication"] != "false" && st.Params["replication"] != "0" {
		writeFatal(c, errorf(codeProtocol, "pgwrt: replication connections are not supported"))
		return
	}
	cfg := r.config()
	sl := r.slots.acquire(cfg.ClientWaitTimeout.D(), r.stopping)
	if sl == nil {
		r.metrics.clientsRefused.Inc()
		r.log.Warn("no free client slot", "remote", c.RemoteAddr().String(), "max_clients", cfg.MaxClients)
		writeFatal(c, errorf(codeTooManyClients, "pgwrt: sorry, too many clients already (max_clients %d)", cfg.MaxClients))
		return
	}
	defer r.slots.release(sl)
	c.SetDeadline(time.Now().Add(clientLoginTimeout)) // for authentication
	s := &session{r: r, conn: c, slot: sl, st: st, user: st.Params["user"], db: st.Params["database"], atBoundary: true}
	if s.db == "" {
		s.db = s.user
		st.Params["database"] = s.db
		st.Keys = append(st.Keys, "database")
	}
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		s.remote = ap.Addr().Unmap()
	}
	r.sessions.add(s)
	defer r.sessions.remove(s)
	r.metrics.clientsTotal.Inc()
	if err := s.serve(cfg); err != nil && !s.killed.Load() {
		s.writeError(err)
	}
}

// readStartup reads the startup packet, refusing TLS and GSS encryption
// (answer 'N') so that the client goes on in plain text.
func readStartup(c net.Conn) (*wire.Startup, error) {
	for i := 0; i < 3; i++ {
		st, err := wire.ReadStartup(c)
		if err != nil {
			return nil, err
		}
		if st.Code != wire.CodeSSL && st.Code != wire.CodeGSSENC {
			return st, nil
		}
		if _, err := c.Write([]byte{'N'}); err != nil {
			return nil, err
		}
	}
	return nil, wire.ErrMalformed
}

func writeFatal(c net.Conn, err error) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(wire.AppendError(nil, toWire(err)))
}

// writeError sends err to the client if the stream is at a message boundary.
func (s *session) writeError(err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !s.atBoundary {
		return
	}
	s.conn.SetWriteDeadline(time.Now().Add(time.Second))
	s.conn.Write(wire.AppendError(nil, toWire(err)))
}

// writeFromServer is the server copier's write to the client.
func (s *session) writeFromServer(p []byte, boundary bool) error {
	s.wmu.Lock()
	_, err := s.conn.Write(p)
	s.atBoundary = boundary
	s.wmu.Unlock()
	if err != nil {
		return &clientWriteError{err}
	}
	return nil
}

type clientWriteError struct{ err error }

func (e *clientWriteError) Error() string { return "write to client: " + e.err.Error() }
func (e *clientWriteError) Unwrap() error { return e.err }

// kill ends the session from outside (primary moved, shutdown): the client
// gets err as a FATAL ErrorResponse if its stream is at a boundary, then both
// sockets close.
func (s *session) kill(err error) {
	if s.killed.Swap(true) {
		return
	}
	s.mu.Lock()
	s.killErr = err
	onLoop := s.link != nil && s.link.stop != nil && s.link.stop(err)
	conn := s.conn // takeConn may replace it (under mu)
	s.mu.Unlock()
	if onLoop {
		return // the loop ends the link and the client hears err
	}
	s.writeError(err)
	conn.Close()
	s.mu.Lock()
	if s.be != nil {
		s.be.conn.Close()
	}
	s.mu.Unlock()
}

// loseBackend takes be, a transaction-mode client's backend on a node
// that is no longer the primary, from under it: its connection closes,
// and the client's session, which lives on in pgwrt, tells the client
// what became of its transaction (txnlost.go) and goes on. It does nothing
// if the client has moved on from be.
func (s *session) loseBackend(be *backend, why string) {
	s.mu.Lock()
	if s.be != be {
		s.mu.Unlock()
		return
	}
	s.lostWhy = why
	s.mu.Unlock()
	be.conn.Close()
}

// lostReason is why loseBackend took the backend ("" if it did not).
func (s *session) lostReason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lostWhy
}

func (s *session) setBackend(b *backend) {
	s.mu.Lock()
	s.be = b
	s.mu.Unlock()
}

// serve authenticates the client, binds it to a backend on the primary and
// forwards until one side leaves. The returned error goes to the client.
func (s *session) serve(cfg *config.Config) error {
	r := s.r
	lp, allowIdle, err := s.authenticate(cfg)
	if err != nil {
		return err
	}

	// Holding for a primary can take failover_wait: no client deadline
	// while the client has nothing to say (relayAuth sets its own).
	s.conn.SetDeadline(time.Time{})
	be, err := s.primaryBackend(cfg, lp, allowIdle)
	if err != nil {
		return err
	}
	if err := s.handover(be); err != nil {
		r.release(be, false)
		s.setBackend(nil)
		return err
	}
	if cfg.PoolModeFor(s.user) == poolTransaction {
		return s.serveTransactions(cfg, lp, allowIdle, be)
	}
	if err := backendToNet(r, be); err != nil {
		r.release(be, false)
		s.setBackend(nil)
		return err
	}
	l := newLink(s, be)
	reusable := s.forward(l)
	l.done()
	s.setBackend(nil)
	if reusable {
		reusable = s.resetBackend(be, l.t.status())
	}
	r.log.Debug("client left", "user", s.user, "database", s.db, "backend_reusable", reusable)
	r.release(be, reusable)
	return nil
}

// primaryBackend gets the client a backend on the primary and makes it the
// session's current one (for cancel and for kill).
func (s *session) primaryBackend(cfg *config.Config, lp loginParams, allowIdle bool) (*backend, error) {
	r := s.r
	for {
		b, fresh, err := s.acquireBackend(cfg, lp, allowIdle)
		if err != nil {
			return nil, err
		}
		if lp.fromClient && fresh {
			r.rememberPassword(s.user, lp.password)
		}
		s.setBackend(b)
		// If the primary moved while we were getting b, the change handler
		// may have looked at the sessions before b was ours: check again
		// now that it is visible to it.
		if p := r.Topology().PrimaryNode(); p != nil && p.Name == b.node {
			return b, nil
		}
		s.setBackend(nil)
		r.release(b, false)
	}
}

// acquireBackend finds the primary (holding the client up to failover_wait
// while there is none) and gets a connection to it from the pool or by
// dialling.
func (s *session) acquireBackend(cfg *config.Config, lp loginParams, allowIdle bool) (be *backend, fresh bool, err error) {
	r := s.r
	// The failover_wait deadline is made when first needed: a transaction
	// that finds an idle backend (most of them) makes none.
	var ctx context.Context
	var cancel context.CancelFunc
	deadline := func() context.Context {
		if ctx == nil {
			ctx, cancel = context.WithTimeout(context.Background(), cfg.FailoverWait.D())
		}
		return ctx
	}
	defer func() {
		if cancel != nil {
			cancel()
		}
	}()
	key := lp.key
	var held time.Time
	// wait holds the client until the topology changes (or, with a
	// period, until the next look), within failover_wait.
	wait := func(t *Topology, period time.Duration) error {
		if held.IsZero() {
			held = time.Now()
			r.metrics.held.Inc()
		}
		var tick <-chan time.Time
		if period > 0 {
			tm := time.NewTimer(period)
			defer tm.Stop()
			tick = tm.C
		}
		select {
		case <-t.Changed():
		case <-tick:
		case <-deadline().Done():
			return errorf(codeNoPrimary, "pgwrt: no primary server is available (waited %s)", cfg.FailoverWait.D())
		case <-r.stopping:
			return errorf(codeShutdown, "pgwrt is shutting down")
		}
		return nil
	}
	for {
		t := r.Topology()
		prim := t.PrimaryNode()
		if prim == nil || prim.Suspect {
			if err := wait(t, 0); err != nil {
				return nil, false, err
			}
			continue
		}
		be, err = r.checkout(deadline, key, t, allowIdle, s.poolSize(cfg))
		if err != nil {
			return nil, false, err
		}
		fresh = be == nil
		if fresh {
			be, err = s.dialPrimary(deadline(), cfg, t, lp)
			if err != nil {
				r.pools.cancelReservation(key)
				var we *wire.Error
				var pe *pgwrtError
				if errors.As(err, &we) && !isStartingUp(we) || errors.As(err, &pe) {
					return nil, false, err // PostgreSQL said no (password, database…): tell the client
				}
				// The primary did not answer: recheck the topology at
				// once and wait for news.
				if errors.Is(err, context.Canceled) {
					r.log.Debug("primary changed during a login; trying again", "node", prim.Name)
				} else {
					r.log.Warn("cannot reach the primary", "node", prim.Name, "error", err)
				}
				r.pokeMonitors()
				if err := wait(t, cfg.HealthCheckFastPeriod.D()); err != nil {
					return nil, false, err
				}
				continue
			}
			r.pools.opened(be, key)
			r.metrics.dialed.Inc()
		} else if err := s.syncParams(be); err != nil {
			r.release(be, false)
			continue
		}
		if !held.IsZero() {
			r.log.Info("held client released", "user", s.user, "held", time.Since(held).Round(time.Millisecond).String())
		}
		return be, fresh, nil
	}
}

// poolSize is the cap on the client's pool: pool_size in transaction mode,
// none in session mode (max_backend_connections still caps all pools).
func (s *session) poolSize(cfg *config.Config) int {
	if cfg.PoolModeFor(s.user) == poolTransaction {
		return cfg.PoolSizeFor(s.user)
	}
	return 0
}

// dialPrimary opens a backend on t's primary. The attempt is abandoned as
// soon as the topology names another primary (or none): a login hanging on
// a frozen node must not outlast the monitor's verdict.
func (s *session) dialPrimary(ctx context.Context, cfg *config.Config, t *Topology, lp loginParams) (*backend, error) {
	prim := t.PrimaryNode()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		cur := t
		for {
			select {
			case <-ctx.Done():
				return
			case <-cur.Changed():
				cur = s.r.Topology()
				if p := cur.PrimaryNode(); p == nil || p.Name != prim.Name {
					cancel()
					return
				}
			}
		}
	}()
	return dialBackend(ctx, cfg, s.r.scram, prim.Name, prim.Addr(), lp)
}

// isStartingUp: 57P03 "the database system is starting up/shutting down",
// 57P01 admin shutdown: a transient state of a node, worth a retry.
func isStartingUp(e *wire.Error) bool {
	return e.Code == "57P03" || e.Code == "57P01" || e.Code == "57P02"
}

// syncParams sets application_name on a reused backend to the client's.
func (s *session) syncParams(be *backend) error {
	want, ok := s.st.Params["application_name"]
	if !ok {
		want = ""
	}
	if be.params["application_name"] == want {
		return nil
	}
	_, _, err := be.exec("SET application_name = "+quoteLiteral(want), s.r.config().ServerConnectTimeout.D())
	return err
}

// quoteLiteral quotes s as an SQL string literal, right whatever the
// server's standard_conforming_strings (a backslash makes it an E” literal).
func quoteLiteral(s string) string { return string(appendLiteral(nil, s)) }

// handover finishes the client's login: AuthenticationOk, the backend's
// parameters, pgwrt's own key, ReadyForQuery.
func (s *session) handover(be *backend) error {
	out := wire.AppendAuthOK(make([]byte, 0, 512))
	keys := make([]string, 0, len(be.params))
	for k := range be.params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		out = wire.AppendParameterStatus(out, k, be.params[k])
	}
	out = wire.AppendBackendKeyData(out, s.pid, s.secret)
	out = wire.AppendReadyForQuery(out, 'I')
	_, err := s.conn.Write(out)
	return err
}

// resetBackend makes a backend fit for the next client: ROLLBACK if a
// transaction is open, then server_reset_query.
func (s *session) resetBackend(be *backend, status byte) bool {
	cfg := s.r.config()
	timeout := cfg.ServerConnectTimeout.D()
	var err error
	if status != 'I' {
		_, status, err = be.exec("ROLLBACK", timeout)
		if err != nil || status != 'I' {
			return false
		}
	}
	if q := cfg.ServerResetQuery; q != "" {
		_, status, err = be.exec(q, timeout)
		if err != nil || status != 'I' {
			return false
		}
	}
	if be.stmts != nil && be.stmts.count() > 0 {
		// pgwrt's own statements (transaction mode) go too: the reset
		// query may or may not have dropped them.
		_, status, err = be.exec("DEALLOCATE ALL", timeout)
		if err != nil || status != 'I' {
			return false
		}
		be.stmts.clear()
	}
	return true
}
