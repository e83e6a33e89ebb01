package router

// The turn engine runs a transaction-mode link on the session's own
// goroutine, taking turns as the tracker says (tracker.turn): it passes
// what the client sent, and when that ends a request the server is bound
// to answer it reads the server until the answer is complete, then goes
// back to the client. That is how nearly every client talks, and it costs no
// goroutine, channel or deadline per transaction.
//
// Where the server may speak while the client is the one expected to (a
// COPY FROM STDIN, a Flush, a transaction block left open while the
// client thinks), the rest of the link goes to the copier goroutines,
// which read both sides at once: the engine stops only between chunks it
// has passed on whole, so the copiers start from a clean state with the
// client's unpassed bytes as carry.
func (s *session) forwardTurns(l *link) (reusable bool) {
	cc := &clientCopier{l: l}
	sc := &serverCopier{l: l}
	buf := l.cbuf
	end := copy(buf, l.carry)
	// stop ends the link; the client bytes not passed stay with it.
	stop := func(clean bool) bool {
		l.leftover = append(l.leftover[:0], buf[:end]...)
		return s.endTurns(l, clean)
	}
	for {
		if end > 0 {
			start, err := cc.pass(buf[:end])
			end = copy(buf, buf[start:end])
			if err != nil {
				l.clientSideEnded(err)
				return stop(true)
			}
		}
		switch l.t.turn() {
		case turnBoth:
			l.carry = buf[:end]
			reusable, _ = goroutineEngine{}.forward(l)
			return reusable
		case turnServer:
			for l.t.turn() == turnServer {
				n, err := l.be.conn.Read(l.sbuf)
				if n > 0 {
					detach, serr := sc.step(l.sbuf[:n])
					if serr != nil {
						err = serr
					} else if detach {
						l.setEnd(endDetached, nil)
						return stop(true)
					}
				}
				if err != nil {
					l.serverSideEnded(err)
					return stop(false)
				}
			}
			continue // the client may have sent more meanwhile
		}
		n, err := s.conn.Read(buf[end:])
		end += n
		if n == 0 && err != nil {
			l.setEnd(endClientGone, err)
			return stop(true)
		}
	}
}

// endTurns settles a link the turn engine ended: clean says every byte
// taken from either side was passed on.
func (s *session) endTurns(l *link, clean bool) bool {
	if s.killed.Load() {
		return false // kill told the client and closed both sides
	}
	msg, reusable := l.outcome(clean)
	if msg != nil {
		s.writeError(msg)
	}
	return reusable
}
