package router

import (
	"errors"
	"time"

	"pgwrt/config"
)

// Transaction pooling: a client holds a backend only from the first
// message of a transaction to the ReadyForQuery with status 'I' that ends
// it (the tracker's safe point); in between it holds nothing but its socket
// and its session. Each transaction is a link of its own, on whatever
// backend the pool hands out then: after a switchover that is one on the
// new primary, so a client that was idle never notices.

// The pool modes.
const (
	poolSession     = "session"
	poolTransaction = "transaction"
)

// errDetached is how the copiers report that the link reached its safe
// point in transaction mode.
var errDetached = errors.New("link detached at a safe point")

// serveTransactions runs a logged-in client in transaction mode. be is the
// backend its login was handed over from; it goes back to the pool at once.
func (s *session) serveTransactions(cfg *config.Config, lp loginParams, allowIdle bool, be *backend) error {
	r := s.r
	s.txnMode.Store(true)
	s.seen = be.reported.clone()
	s.want.setStartup(s.st.Keys, s.st.Params)
	for _, p := range be.reported.list {
		if _, ok := s.want.get(p.name); !ok && isTracked(p.name) {
			s.want.set(p.name, p.value)
		}
	}
	s.setBackend(nil)
	r.release(be, true)
	// The login's backend vouched for the client's password (it was dialed
	// with it, or was idle because it had been): idle backends serve the
	// client's transactions from now on.
	allowIdle = true
	var carry []byte // client bytes read by the last link and not passed
	// first takes the first bytes of the client's next transaction: a
	// waiting read holds this small array, not a link's buffers.
	var first [firstRead]byte
	var ps *prepLink // the client's protocol-level prepared statements
	defer func() {
		if ps != nil {
			ps.close()
		}
	}()
	if lp2 := r.txnLoop(); lp2 != nil {
		if err, ok := s.serveOnLoop(lp2, lp, &ps); ok {
			return err
		}
	}
	for {
		if len(carry) == 0 {
			n, err := s.conn.Read(first[:])
			if n == 0 && err != nil {
				return nil // the client left (or was ended) between transactions
			}
			carry = first[:n]
		}
		if s.killed.Load() {
			return nil
		}
		be, err := s.primaryBackend(r.config(), lp, allowIdle)
		if err != nil {
			return err
		}
		if err := s.syncSession(be); err != nil {
			r.log.Info("cannot give a backend the client's parameters; trying another", "node", be.node, "error", err)
			s.setBackend(nil)
			r.release(be, false)
			continue
		}
		if ps == nil && r.config().MaxPreparedStatements > 0 {
			ps = newPrepLink(&r.stmts)
		}
		l := s.newTxnLink(be, ps)
		l.carry = carry
		reusable := s.forwardTurns(l)
		s.conn.SetReadDeadline(time.Time{})
		rest, more := s.afterLink(l, reusable, ps)
		if !more {
			return nil
		}
		carry = append(carry[:0], rest...)
	}
}

// newTxnLink links the client to be for a transaction: the link detaches
// at the safe point, its statements tracked with ps (nil: none).
func (s *session) newTxnLink(be *backend, ps *prepLink) *link {
	l := newLink(s, be)
	l.txn = true
	l.t.classify, l.t.window = true, len(l.cbuf)-5
	if max := s.r.config().MaxPreparedStatements; max > 0 && ps != nil {
		ps.begin(be, max)
		l.t.ps = ps
	} else {
		l.t.namedPins = true
	}
	return l
}

// afterLink settles a transaction's link once its engine has stopped
// (reusable: its word on the backend): the backend goes back to its pool
// or is reset or closed, a lost transaction is told to the client. It
// returns the client bytes that start the next transaction, and false
// when the session ends.
func (s *session) afterLink(l *link, reusable bool, ps *prepLink) (rest []byte, more bool) {
	r := s.r
	be := l.be
	l.done()
	s.setBackend(nil)
	if reusable && be.stmts != nil {
		reusable = s.settleStatements(be, l.t.dealloc)
	}
	if l.why == endDetached {
		r.release(be, reusable)
		return l.leftover, true
	}
	if l.lost {
		r.release(be, false)
		return s.recoverLost(l, ps)
	}
	// A client that leaves where a detach would have happened (not
	// pinned, status 'I') leaves nothing on the session: no reset, and
	// the statements pgwrt prepared there stay for the next client.
	if reusable && (l.t.pinned != 0 || l.t.status() != 'I') {
		reusable = s.resetBackend(be, l.t.status())
	}
	r.log.Debug("client left", "user", s.user, "database", s.db, "backend_reusable", reusable)
	r.release(be, reusable)
	return nil, false
}

// syncSession makes be look, to the client, like the backends before it:
// the client's tracked parameters are set on it where they differ, and the
// client is sent ParameterStatus for what it reports differently (another
// server_version after a failover to an upgraded node, say).
func (s *session) syncSession(be *backend) error {
	if s.paramsFit(be) {
		return nil
	}
	if q := applyParams(s.want, be.reported); q != nil {
		_, st, err := be.exec(string(q), s.r.config().ServerConnectTimeout.D())
		if err != nil {
			return err
		}
		if st != 'I' {
			return errors.New("not idle after setting parameters")
		}
		be.reported.setApplied(s.want)
	}
	if d := paramStatusDiff(s.seen, be.reported); d != nil {
		for _, p := range be.reported.list {
			s.seen.set(p.name, p.value)
		}
		s.wmu.Lock()
		_, err := s.conn.Write(d)
		s.wmu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// firstRead is how many bytes an idle transaction-mode client's waiting
// read takes: enough for a short query, which then needs no second read.
const firstRead = 256

// settleStatements checks, after a link, what pgwrt knows of the
// statements prepared on be: a FIFO with answers still owed means the
// backend's stream is not understood (it is not reused); a client's
// DEALLOCATE or DISCARD may have dropped pgwrt's statements, so all are
// deallocated and forgotten.
func (s *session) settleStatements(be *backend, dealloc bool) bool {
	if !be.stmts.settled() {
		return false
	}
	if dealloc && be.stmts.count() > 0 {
		if _, st, err := be.exec("DEALLOCATE ALL", s.r.config().ServerConnectTimeout.D()); err != nil || st != 'I' {
			return false
		}
		be.stmts.clear()
	}
	return true
}
