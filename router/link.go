package router

import (
	"errors"
	"sync"
)

// A link is a client attached to a backend while bytes flow between them:
// the trackers of both streams, the buffers the bytes pass through, and why
// the flow ended. An engine (engine.go) moves the bytes and reports what it
// saw; the link decides, with the tracker, what that means for the client
// and whether the backend may serve again. In session mode a client is
// linked once, from handover to goodbye.
type link struct {
	s    *session
	be   *backend
	t    tracker
	pair []byte    // the buffers below, as bufs handed them out
	cbuf []byte    // client → server
	sbuf []byte    // server → client
	why  endReason // why the flow ended
	err  error
	once sync.Once

	// Transaction mode: the link ends (endDetached) at the first safe
	// point where the transaction status is 'I'. carry are client bytes
	// an earlier link read and did not pass, passed first; leftover are
	// those this link leaves.
	txn      bool
	carry    []byte
	leftover []byte
	// With the goroutine engine the two streams run on two goroutines:
	// mu orders the client side's scans with the server side's decision
	// to detach, and inflight counts scanned bytes still being written to
	// the server (the decision waits for them).
	mu   sync.Mutex
	gone sync.Cond
	// pm (prepared statements, t.ps set): the client side's scans and
	// the server side's feed-and-write of a chunk, so that an answer
	// pgwrt gives lands exactly where the server's would have. Taken
	// before mu, never held while the client side writes.
	pm        sync.Mutex
	inflight  int
	detached  bool
	pinLogged bool
	// lost (transaction mode, not pinned): the backend was lost under
	// the link and the client has not been told; txnlost.go answers.
	lost bool

	// stop ends the link from outside (primary moved, shutdown), set by
	// the engine before the link starts; false when it can no longer
	// (the link has ended).
	stop func(err error) bool
}

func newLink(s *session, be *backend) *link {
	l := &link{s: s, be: be, pair: s.r.bufs.get()}
	l.cbuf, l.sbuf = s.r.bufs.split(l.pair)
	l.t.reset('I')
	l.gone.L = &l.mu
	return l
}

// done gives the link's buffers back; the engine has let go of them.
func (l *link) done() {
	if l.pair != nil {
		l.s.r.bufs.put(l.pair)
		l.pair, l.cbuf, l.sbuf = nil, nil, nil
	}
}

// Why a link ended.
type endReason int

const (
	endTerminate       endReason = iota + 1 // client sent Terminate
	endClientGone                           // client closed or failed
	endClientMalformed                      // client sent a bad message length
	endServerGone                           // backend closed or failed
	endServerWrite                          // a write to the backend failed
	endServerMalformed                      // backend sent a bad message length
	endKilled                               // ended from outside (primary moved, shutdown)
	endLoopFailed                           // the engine itself failed
	endDetached                             // transaction mode: a safe point with status 'I'
)

func (r endReason) String() string {
	switch r {
	case endTerminate:
		return "terminate"
	case endClientGone:
		return "client gone"
	case endClientMalformed:
		return "client malformed"
	case endServerGone:
		return "server gone"
	case endServerWrite:
		return "server write failed"
	case endServerMalformed:
		return "server malformed"
	case endKilled:
		return "killed"
	case endLoopFailed:
		return "loop failed"
	case endDetached:
		return "detached"
	}
	return "?"
}

// setEnd records why the link ends; the first reason wins.
func (l *link) setEnd(reason endReason, err error) {
	l.once.Do(func() { l.why, l.err = reason, err })
}

// written tells a detach waiting in detachAt that scanned bytes counted
// in inflight have gone to the server.
func (l *link) written() {
	l.mu.Lock()
	l.inflight--
	l.gone.Broadcast()
	l.mu.Unlock()
}

// clientSideEnded records why the side that reads the client stopped:
// err is what stopped it.
func (l *link) clientSideEnded(err error) {
	var bw *backendWriteError
	switch {
	case err == errDetached:
		l.setEnd(endDetached, nil)
	case err == errTerminate:
		l.setEnd(endTerminate, nil)
	case errors.Is(err, errMalformedClient):
		l.setEnd(endClientMalformed, err)
	case errors.As(err, &bw):
		l.setEnd(endServerWrite, err)
	default:
		l.setEnd(endClientGone, err)
	}
}

// serverSideEnded records why the side that reads the server stopped (a
// client that stopped reading says nothing about the backend).
func (l *link) serverSideEnded(err error) {
	var cw *clientWriteError
	switch {
	case err == errDetached:
		l.setEnd(endDetached, nil)
	case errors.As(err, &cw):
		l.setEnd(endClientGone, err)
	case errors.Is(err, errMalformedServer):
		l.setEnd(endServerMalformed, err)
	default:
		l.setEnd(endServerGone, err)
	}
}

// detachAt decides, on the server side after a chunk, whether a
// transaction-mode link detaches here: a safe point with status 'I', after
// any client bytes being written have gone. From then on the client side
// passes nothing more to this backend.
func (l *link) detachAt() bool {
	if !l.txn || l.t.status() != 'I' || !l.t.server.atBoundary() {
		return false
	}
	l.mu.Lock()
	if p := l.t.pinned; p != 0 {
		// The client left state on the session: it keeps this backend
		// until it leaves.
		if !l.pinLogged {
			l.pinLogged = true
			l.s.r.metrics.pinned.Inc()
			l.s.r.log.Info("client pinned to its backend until it disconnects", "user", l.s.user, "database", l.s.db, "because", p.String())
		}
		l.mu.Unlock()
		return false
	}
	for l.inflight > 0 {
		l.gone.Wait()
	}
	if l.t.safePoint() && l.t.status() == 'I' {
		l.detached = true
	}
	d := l.detached
	l.mu.Unlock()
	return d
}

// serverEvents acts on what the server tracker saw in a chunk: a FATAL
// that speaks of the node (shutdown, crash) makes the router stop sending
// new sessions there before the client hears of it and reconnects.
func (l *link) serverEvents(ev serverEvent) {
	if ev&srvGoingAway != 0 {
		l.s.r.backendFailed(l.be, errServerFatal)
	}
}

var errServerFatal = errorf(codeBackendLost, "server sent FATAL")

// errFatalHeld ends a transaction-mode link whose server sent a FATAL that
// speaks of the node (shutdown, terminated): pgwrt, not the server, tells
// the client what became of its transaction (txnlost.go).
var errFatalHeld = errorf(codeBackendLost, "server sent FATAL (held back)")

// holdFatal reports whether the FATAL the last chunk ended with is held
// back from the client: in transaction mode, where the client's session
// lives on in pgwrt (not pinned to this backend), and the FATAL's header
// was whole in the chunk, so the client's stream stops on a boundary.
func (l *link) holdFatal(ev serverEvent) bool {
	f := &l.t.server
	return ev&srvGoingAway != 0 && l.txn && l.t.pinned == 0 && f.errAt >= 0 && f.atBoundary()
}

// writeBeforeFatal writes to the client what out holds before the held
// FATAL, and returns errFatalHeld.
func (l *link) writeBeforeFatal(out []byte) error {
	if at := l.t.server.errAt; at > 0 {
		if err := l.s.writeFromServer(out[:at], true); err != nil {
			return err
		}
	}
	return errFatalHeld
}

// outcome decides, once the engine has stopped, what the client must hear
// (nil: nothing) and whether the backend may serve another client. clean
// is the engine's word that every byte it took from either side was
// passed on and nothing arrived after the end.
func (l *link) outcome(clean bool) (msg error, reusable bool) {
	s := l.s
	killed := s.killed.Load()
	switch l.why {
	case endKilled:
		msg = l.err // why it was killed
	case endServerGone, endServerWrite:
		if !killed {
			msg = s.serverLost(l, l.err)
			if why := s.lostReason(); why != "" {
				msg = errorf(codePrimaryMoved, "pgwrt: %s; reconnect", why)
			}
			if l.txn && l.t.pinned == 0 {
				// The client's session lives on in pgwrt: the session
				// tells it what became of its transaction.
				l.lost, msg = true, nil
			}
		}
	case endLoopFailed:
		if !killed {
			msg = errorf(codeBackendLost, "pgwrt: server connection lost")
		}
	case endServerMalformed:
		msg = errMalformedServer
	case endClientMalformed:
		msg = errMalformedClient
	case endTerminate, endClientGone:
		reusable = !killed && clean && l.t.safePoint()
	case endDetached:
		reusable = !killed && clean && l.t.safePoint() && l.t.status() == 'I'
	}
	return msg, reusable
}

// serverLost handles a backend connection that ended under its session.
// One that vanished without a FATAL points at the node (crash, network),
// which is reported before the client hears of it; one the server ended
// with a FATAL was judged when the FATAL went by. It returns what the
// client should be told, nil when the server's FATAL already said it.
func (s *session) serverLost(l *link, err error) error {
	if !l.t.server.fatal {
		s.r.backendFailed(l.be, err)
	}
	if l.t.server.lastWasError() {
		return nil
	}
	return errorf(codeBackendLost, "pgwrt: server connection lost")
}

func (l *link) isDetached() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.detached
}
