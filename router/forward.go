package router

import (
	"encoding/binary"
	"sync/atomic"
)

// framer follows message boundaries in a byte stream without buffering
// messages: it sees each 5-byte header (even one split across reads) and
// counts body bytes past. This is all the parsing the hot path does.
type framer struct {
	hdr    [5]byte
	hn     int  // header bytes collected so far
	remain int  // body bytes still to pass of the current message
	typ    byte // type of the current message
	first  bool // the next body byte is the first of the message
}

// atBoundary reports whether the stream so far ends on a message boundary.
func (f *framer) atBoundary() bool { return f.hn == 0 && f.remain == 0 }

// serverCopier forwards backend → client. It remembers the transaction
// status of the last ReadyForQuery and whether the backend is idle (the last
// message that was not asynchronous was ReadyForQuery).
type serverCopier struct {
	s  *session
	be *backend
	f  framer
	// status is the last ReadyForQuery status: 'I', 'T' or 'E'.
	status byte
	// idle: ReadyForQuery seen and no client message sent since.
	idle atomic.Bool
	// fatal: the server sent a FATAL (or PANIC) ErrorResponse; the
	// connection ends for a reason the server stated.
	fatal bool
}

var errServerFatal = errorf(codeBackendLost, "server sent FATAL")

// isFatal reports whether an ErrorResponse body has severity FATAL or PANIC
// (PostgreSQL sends the severity field first).
func isFatal(body []byte) bool {
	return len(body) > 6 && body[0] == 'S' &&
		(string(body[1:7]) == "FATAL\x00" || string(body[1:7]) == "PANIC\x00")
}

// nodeGoingAway reports whether an ErrorResponse body is a FATAL that
// speaks of the node rather than the session: 57P01 (shutdown, or
// terminated by an administrator), 57P02 (crash of another backend), 57P03
// (cannot connect now), or any PANIC. A session's own FATALs (idle
// timeouts, protocol errors) do not count. It allocates nothing.
func nodeGoingAway(body []byte) bool {
	if !isFatal(body) {
		return false
	}
	if string(body[1:7]) == "PANIC\x00" {
		return true
	}
	for len(body) > 1 && body[0] != 0 {
		typ := body[0]
		end := 1
		for end < len(body) && body[end] != 0 {
			end++
		}
		if end == len(body) {
			return false
		}
		if typ == 'C' {
			c := body[1:end]
			return len(c) == 5 && string(c[:4]) == "57P0" && c[4] >= '1' && c[4] <= '3'
		}
		body = body[end+1:]
	}
	return false
}

// run copies until an error; it returns the error that stopped it.
func (c *serverCopier) run() error {
	buf := c.s.slot.sbuf
	for {
		n, err := c.be.conn.Read(buf)
		if n > 0 {
			if ferr := c.feed(buf[:n]); ferr != nil {
				return ferr
			}
			if werr := c.s.writeFromServer(buf[:n], c.f.atBoundary()); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

// feed follows the framing of chunk, the next bytes from the server, noting
// ReadyForQuery status, idleness and FATALs. It does not change chunk.
func (c *serverCopier) feed(chunk []byte) error {
	f := &c.f
	n := len(chunk)
	for i := 0; i < n; {
		if f.remain == 0 {
			// collect header bytes
			for f.hn < 5 && i < n {
				f.hdr[f.hn] = chunk[i]
				f.hn++
				i++
			}
			if f.hn < 5 {
				break
			}
			f.typ = f.hdr[0]
			l := int(binary.BigEndian.Uint32(f.hdr[1:]))
			if l < 4 {
				return errMalformedServer
			}
			f.remain = l - 4
			f.first = true
			if f.remain == 0 {
				f.hn = 0
				c.complete()
			}
			continue
		}
		take := f.remain
		if n-i < take {
			take = n - i
		}
		var b0 byte
		if f.first {
			b0 = chunk[i]
			f.first = false
			if f.typ == 'E' && take == f.remain && isFatal(chunk[i:i+take]) {
				c.fatal = true
				if nodeGoingAway(chunk[i : i+take]) {
					// The node is going away (shutdown, crash): before
					// the client hears of it and reconnects, stop sending
					// new sessions there.
					c.s.r.backendFailed(c.be, errServerFatal)
				}
			}
		}
		if f.typ == 'Z' && b0 != 0 {
			c.status = b0
		}
		i += take
		f.remain -= take
		if f.remain == 0 {
			f.hn = 0
			c.complete()
		}
	}
	return nil
}

// complete is called at the end of each message.
func (c *serverCopier) complete() {
	switch c.f.typ {
	case 'Z':
		c.idle.Store(true)
	case 'A', 'N', 'S': // asynchronous: do not change idleness
	default:
		c.idle.Store(false)
	}
}

// clientCopier forwards client → backend, and stops at Terminate. It answers
// SHOW POOL_NODES itself when the backend is idle.
type clientCopier struct {
	s  *session
	be *backend
	sc *serverCopier
	f  framer
}

// errTerminate is how clientCopier.run reports a clean Terminate.
var errTerminate = errorf(codeProtocol, "terminate")

var errMalformedServer = errorf(codeBackendLost, "pgwrt: server sent a malformed message")
var errMalformedClient = errorf(codeProtocol, "pgwrt: invalid message length from client")

// maxIntercept is the largest Query pgwrt looks into (SHOW POOL_NODES).
const maxIntercept = 64

func (c *clientCopier) run() error {
	buf := c.s.slot.cbuf
	f := &c.f
	have := 0 // bytes carried over at the front of buf: an incomplete header
	for {
		n, err := c.s.conn.Read(buf[have:])
		if n > 0 {
			end := have + n
			i, start := 0, 0 // scan position; first byte not yet forwarded
			for i < end {
				if f.remain > 0 { // inside a body: pass it
					take := min(f.remain, end-i)
					i += take
					f.remain -= take
					continue
				}
				if end-i < 5 { // incomplete header: keep it for the next read
					f.hn = end - i
					break
				}
				msgStart := i
				f.typ = buf[i]
				l := int(binary.BigEndian.Uint32(buf[i+1:]))
				if l < 4 {
					return errMalformedClient
				}
				i += 5
				f.remain = l - 4
				switch {
				case f.typ == 'X':
					f.remain = 0
					if err := c.forward(buf[start:msgStart]); err != nil {
						return err
					}
					return errTerminate
				case f.typ == 'Q' && l <= maxIntercept && c.sc.idle.Load():
					// Look at the whole (small) query; read the rest of it
					// if it is not here yet.
					if end-i < f.remain {
						if err := c.forward(buf[start:msgStart]); err != nil {
							return err
						}
						copy(buf, buf[msgStart:end])
						end -= msgStart
						i -= msgStart
						start, msgStart = 0, 0
						for end-i < f.remain {
							m, err := c.s.conn.Read(buf[end:])
							if err != nil {
								return err
							}
							end += m
						}
					}
					if isShowPoolNodes(buf[i : i+f.remain]) {
						if err := c.forward(buf[start:msgStart]); err != nil {
							return err
						}
						i += f.remain
						f.remain = 0
						start = i
						if err := c.s.showPoolNodes(c.sc.status); err != nil {
							return err
						}
					}
				}
			}
			carry := 0
			if f.remain == 0 && f.hn > 0 {
				carry = f.hn
				f.hn = 0
			}
			if err := c.forward(buf[start : end-carry]); err != nil {
				return err
			}
			copy(buf, buf[end-carry:end])
			have = carry
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
	c.sc.idle.Store(false)
	_, err := c.be.conn.Write(p)
	if err != nil {
		return &backendWriteError{err}
	}
	return nil
}

// backendWriteError marks a failed write to the backend, so the session can
// tell it from a client that went away.
type backendWriteError struct{ err error }

func (e *backendWriteError) Error() string { return "write to server: " + e.err.Error() }
func (e *backendWriteError) Unwrap() error { return e.err }

// isShowPoolNodes matches a Query body "SHOW POOL_NODES[;]\0", any case,
// any surrounding white space. It allocates nothing: every short simple
// query passes through it.
func isShowPoolNodes(body []byte) bool {
	if len(body) == 0 || body[len(body)-1] != 0 {
		return false
	}
	b := body[:len(body)-1]
	i := skipSpace(b, 0)
	i, ok := matchWord(b, i, "show")
	if !ok || i == len(b) || !isSpace(b[i]) {
		return false
	}
	i, ok = matchWord(b, skipSpace(b, i), "pool_nodes")
	if !ok {
		return false
	}
	i = skipSpace(b, i)
	if i < len(b) && b[i] == ';' {
		i = skipSpace(b, i+1)
	}
	return i == len(b)
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// matchWord matches w (lower case) at b[i:], ignoring ASCII case.
func matchWord(b []byte, i int, w string) (int, bool) {
	if len(b)-i < len(w) {
		return i, false
	}
	for j := 0; j < len(w); j++ {
		c := b[i+j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[j] {
			return i, false
		}
	}
	return i + len(w), true
}

// The forwarding engines.
const (
	EngineAuto       = "auto"       // io_uring where the kernel allows it, else epoll
	EngineIOUring    = "io_uring"   // io_uring; epoll (with a warning) where refused
	EngineEpoll      = "epoll"      // epoll event loops
	EngineGoroutines = "goroutines" // two goroutines per session (Go's netpoller)
)
