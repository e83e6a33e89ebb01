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
			var cw *clientWriteError
			switch {
			case errors.As(err, &cw):
				l.setEnd(endClientGone, err)
			case errors.Is(err, errMalformedServer):
				l.setEnd(endServerMalformed, err)
			default:
				l.setEnd(endServerGone, err)
			}
			s.conn.SetReadDeadline(time.Now())
		}
		sdone <- err
	}()
	cerr := cc.run()
	clientDone.Store(true)
	var bw *backendWriteError
	switch {
	case cerr == errTerminate:
		l.setEnd(endTerminate, nil)
	case errors.Is(cerr, errMalformedClient):
		l.setEnd(endClientMalformed, cerr)
	case errors.As(cerr, &bw):
		l.setEnd(endServerWrite, cerr)
	default:
		l.setEnd(endClientGone, cerr)
	}
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
	serverWoken := errors.As(serr, &ne) && ne.Timeout()
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
			ev, ferr := l.t.feedServer(buf[:n])
			l.serverEvents(ev)
			if ferr != nil {
				return ferr
			}
			if werr := l.s.writeFromServer(buf[:n], l.t.server.atBoundary()); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
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
	have := 0 // bytes carried over at the front of buf, not yet scanned
	for {
		n, err := l.s.conn.Read(buf[have:])
		if n > 0 {
			end, start := have+n, 0
		scan:
			for {
				k, act, m := l.t.scanClient(buf[start:end])
				if werr := c.forward(buf[start : start+k]); werr != nil {
					return werr
				}
				start += k
				switch act {
				case cliTerminate:
					return errTerminate
				case cliMalformed:
					return errMalformedClient
				case cliIntercept:
					start += m
					if werr := l.s.showPoolNodes(l.t.status()); werr != nil {
						return werr
					}
				default:
					break scan
				}
			}
			have = copy(buf, buf[start:end])
		}
		if err != nil {
			return err
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
