package router

import (
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// goroutineEngine forwards a link with two copier goroutines over Go's
// netpoller: the session goroutine copies client → server, a helper copies
// server → client. The first side to end stops the other with a read
// deadline; the first reason recorded wins.
type goroutineEngine struct{}

func (goroutineEngine) name() string { return EngineGoroutines }

func (goroutineEngine) forward(l *link) (reusable, handled bool) {
	s, be := l.s, l.be
	sc := &serverCopier{l: l}
	cc := &clientCopier{l: l}
	var clientDone atomic.Bool
	sdone := make(chan error, 1)
	go func() {
		err := sc.run()
		if !clientDone.Load() && !s.killed.Load() {
			// The server side ended first (a client that stopped
			// reading says nothing about the backend): record why, and
			// wake the client copier.
			l.serverSideEnded(err)
			s.conn.SetReadDeadline(time.Now())
		}
		sdone <- err
	}()
	cerr := cc.run()
	clientDone.Store(true)
	l.clientSideEnded(cerr)
	be.conn.SetReadDeadline(time.Now())
	serr := <-sdone
	be.conn.SetReadDeadline(time.Time{})
	if s.killed.Load() {
		return false, true // kill told the client and closed both sides
	}
	// Clean: the server copier stopped because it was woken, not on an
	// error of its own (the client copier writes synchronously, so all
	// it took has gone).
	var ne net.Error
	serverWoken := errors.As(serr, &ne) && ne.Timeout() || serr == errDetached
	msg, reusable := l.outcome(serverWoken)
	if msg != nil {
		s.writeError(msg)
	}
	return reusable, true
}

// serverCopier copies backend → client through the link's sbuf.
type serverCopier struct{ l *link }

// run copies until an error; it returns the error that stopped it.
func (c *serverCopier) run() error {
	l := c.l
	buf := l.sbuf
	for {
		n, err := l.be.conn.Read(buf)
		if n > 0 {
			detach, serr := c.step(buf[:n])
			if serr != nil {
				return serr
			}
			if detach {
				l.s.conn.SetReadDeadline(time.Now()) // wake the client side
				return errDetached
			}
		}
		if err != nil {
			return err
		}
	}
}

// step follows one chunk read from the server, writes to the client what
// goes there, and reports whether the link detaches here.
func (c *serverCopier) step(chunk []byte) (detach bool, err error) {
	l := c.l
	if l.t.ps != nil {
		return c.feedPrepared(chunk)
	}
	ev, ferr := l.t.feedServer(chunk)
	l.serverEvents(ev)
	if ferr != nil {
		return false, ferr
	}
	if l.holdFatal(ev) {
		return false, l.writeBeforeFatal(chunk)
	}
	detach = l.detachAt()
	if werr := l.s.writeFromServer(chunk, l.t.server.atBoundary()); werr != nil {
		return false, werr
	}
	return detach, nil
}

// feedPrepared is step with prepared statements: the client gets what the
// tracker left in ps.be.out, written before any answer the client side
// injects next (pm).
func (c *serverCopier) feedPrepared(chunk []byte) (bool, error) {
	l := c.l
	l.pm.Lock()
	defer l.pm.Unlock()
	ev, ferr := l.t.feedServer(chunk)
	l.serverEvents(ev)
	if ferr != nil {
		return false, ferr
	}
	if l.holdFatal(ev) {
		return false, l.writeBeforeFatal(l.t.ps.be.out)
	}
	detach := l.detachAt()
	if out := l.t.ps.be.out; len(out) > 0 {
		if werr := l.s.writeFromServer(out, l.t.server.outBoundary()); werr != nil {
			return false, werr
		}
	}
	return detach, nil
}

// clientCopier copies client → backend through the link's cbuf, as far as
// the tracker lets it: it stops at Terminate and answers SHOW POOL_NODES
// itself.
type clientCopier struct{ l *link }

// errTerminate is how clientCopier.run reports a clean Terminate.
var errTerminate = errorf(codeProtocol, "terminate")

func (c *clientCopier) run() error {
	l := c.l
	buf := l.cbuf
	end := copy(buf, l.carry) // bytes read before this link, not yet scanned
	for {
		if end > 0 {
			start, err := c.pass(buf[:end])
			if err != nil {
				if l.txn {
					l.leftover = append(l.leftover[:0], buf[start:end]...)
				}
				return err
			}
			end = copy(buf, buf[start:end])
		}
		n, err := l.s.conn.Read(buf[end:])
		end += n
		if n == 0 && err != nil {
			if l.txn {
				// Bytes the next link, or pgwrt's answer to a
				// lost transaction (txnlost.go), takes.
				l.leftover = append(l.leftover[:0], buf[:end]...)
				if l.isDetached() {
					return errDetached
				}
			}
			return err
		}
	}
}

// pass scans b and passes what the tracker lets through; it returns how
// many bytes of b it used (the rest waits for more input, or for the next
// link once detached).
func (c *clientCopier) pass(b []byte) (int, error) {
	l := c.l
	if l.t.ps != nil {
		return c.passPrepared(b)
	}
	start := 0
	for {
		if l.txn {
			l.mu.Lock()
			if l.detached {
				l.mu.Unlock()
				return start, errDetached
			}
		}
		k, act, m := l.t.scanClient(b[start:])
		if l.txn {
			l.inflight++
			l.mu.Unlock()
		}
		werr := c.forward(b[start : start+k])
		if l.txn {
			l.written()
		}
		if werr != nil {
			return start, werr
		}
		start += k
		var more bool
		if start, more, werr = c.stopped(act, start, m); !more {
			return start, werr
		}
	}
}

// stopped does what the tracker's stop after a pass asks: end the link
// (Terminate, a malformed length), answer an intercepted message and go on,
// or wait for more input. more says whether to scan on from start.
func (c *clientCopier) stopped(act clientAction, start, m int) (int, bool, error) {
	switch act {
	case cliTerminate:
		return start, false, errTerminate
	case cliMalformed:
		return start, false, errMalformedClient
	case cliIntercept:
		start += m
		if err := c.l.s.showPoolNodes(c.l.t.status()); err != nil {
			return start, false, err
		}
		return start, true, nil
	case cliRewrite:
		return start, true, nil
	}
	return start, false, nil
}

// passPrepared is pass with prepared statements: what the tracker lets
// through and the rewrites it asks for are staged and written together;
// answers it gives the client itself are written first (they answer
// messages before any staged one that has an answer).
func (c *clientCopier) passPrepared(b []byte) (int, error) {
	l := c.l
	ps := l.t.ps
	start := 0
	for {
		l.pm.Lock()
		l.mu.Lock()
		if l.detached {
			l.mu.Unlock()
			l.pm.Unlock()
			return start, errDetached
		}
		l.inflight++
		l.mu.Unlock()
		stage, k, act, m := l.t.stageClient(b[start:], len(l.cbuf))
		start += k
		toClient := ps.toClient
		l.pm.Unlock()
		var werr error
		if len(toClient) > 0 {
			werr = l.s.writeFromServer(toClient, true)
			ps.toClient = toClient[:0]
		}
		if werr == nil {
			werr = c.forward(stage)
		}
		l.written()
		if werr != nil {
			return start, werr
		}
		var more bool
		if start, more, werr = c.stopped(act, start, m); !more {
			return start, werr
		}
	}
}

func (c *clientCopier) forward(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if _, err := c.l.be.conn.Write(p); err != nil {
		return &backendWriteError{err}
	}
	return nil
}

// backendWriteError marks a failed write to the backend, so the session can
// tell it from a client that went away.
type backendWriteError struct{ err error }

func (e *backendWriteError) Error() string { return "write to server: " + e.err.Error() }
func (e *backendWriteError) Unwrap() error { return e.err }
