package router

import (
	"encoding/binary"
	"sync/atomic"
)

// The protocol trackers: what pgwrt understands of the two message streams
// of a link, and the one place that says where a link may be detached.
// They see message headers (and the few bodies they must: a short Query
// that may be SHOW POOL_NODES, the severity of an ErrorResponse, the status
// of ReadyForQuery) and say what to do; they never touch a socket. Every
// engine feeds them the same way.

// tracker follows both streams of one link. The client side is followed by
// whoever reads the client and the server side by whoever reads the
// server: with the goroutine engine those are two goroutines, so what one
// side writes and the other reads is atomic.
type tracker struct {
	client clientStream
	server serverStream
	// classify (transaction mode): Query and Parse texts are read for
	// statements that leave state on the session (classifySQL), holding a
	// message back until it is whole if it is at most window bytes; a
	// longer one is read as far as it has arrived. pinned is what was
	// found (0: nothing): the client then keeps its backend.
	classify bool
	window   int
	pinned   effect
	// ps (transaction mode, max_prepared_statements > 0): named
	// protocol-level statements are tracked and rewritten (prepared.go).
	// namedPins (max_prepared_statements = 0): a named Parse pins.
	// dealloc: the client ran DEALLOCATE or DISCARD, which may have
	// dropped pgwrt's statements on the backend.
	ps        *prepLink
	namedPins bool
	dealloc   bool
	// owed counts the ReadyForQuery messages the server owes the client:
	// one per Query, FunctionCall and Sync, where an extended-protocol
	// batch (Parse, Bind, Describe, Execute, Close, Flush) counts from its
	// first message, since its Sync is sure to be answered. answered
	// counts those received. Equal: the server has answered everything.
	owed, answered atomic.Uint32
	// commitAt (client side): the owed count by which the last
	// statement that commits (stmtEffect.commits) will have been
	// answered; answered below it means a COMMIT may be in flight.
	commitAt uint32
}

// newTracker starts a tracker on a backend that is at ReadyForQuery with
// status (as it is when it is handed to a client).
func (t *tracker) reset(status byte) {
	*t = tracker{}
	t.server.status = status
}

// idle reports whether the server has answered everything the client sent.
func (t *tracker) idle() bool { return t.owed.Load() == t.answered.Load() }

// due counts the ReadyForQuery messages the server is bound to send
// without more input: one for each Query, FunctionCall and Sync that has
// passed (an extended batch without its Sync yet is not answered until
// the Sync comes).
func (t *tracker) due() int {
	due := int(t.owed.Load()) - int(t.answered.Load())
	if t.client.batch {
		due--
	}
	return max(due, 0)
}

// commitInFlight reports whether a statement that commits has passed and
// its answer has not come.
func (t *tracker) commitInFlight() bool { return t.answered.Load() < t.commitAt }

// Whose turn it is on a link that takes turns (engine_turns.go).
type turn uint8

const (
	turnClient turn = iota // the server owes nothing it sends unasked: read the client
	turnServer             // the server is bound to answer: read it
	turnBoth               // either side may speak next: read both at once
)

// turn says which side a link that takes turns reads next, once the
// client's bytes so far have passed and the server's have been followed.
// Both, where the server may speak while the client does: after a Flush
// (answers without a ReadyForQuery), in COPY FROM STDIN (the server waits
// for data), and in a transaction block (the client may think a while,
// and a FATAL must reach it meanwhile).
func (t *tracker) turn() turn {
	switch {
	case t.client.flushed || t.server.copyIn:
		return turnBoth
	case t.due() > 0:
		return turnServer
	case t.status() != 'I':
		return turnBoth
	}
	return turnClient
}

// safePoint is the one rule for where a backend may leave its client:
// ReadyForQuery after Query/Sync/FunctionCall (and so after
// CopyDone/CopyFail, which end a Query's or a batch's copy) with nothing
// outstanding, and both streams on a message boundary. The transaction
// status at that point is status() ('I' idle, 'T' or 'E' in a
// transaction block).
func (t *tracker) safePoint() bool {
	return t.idle() && t.server.atBoundary() && t.client.atBoundary()
}

// status is the transaction status of the last ReadyForQuery.
func (t *tracker) status() byte { return t.server.status }

// What the client stream's tracker says about the bytes it scanned.
type clientAction uint8

const (
	cliMore      clientAction = iota // all passed, or a part message waits for more
	cliTerminate                     // Terminate follows what passed: end the link
	cliIntercept                     // pgwrt answers the message that follows what passed
	cliMalformed                     // a message length below 4
	cliRewrite                       // the ps.rew bytes replace the m bytes that follow what passed
)

// maxIntercept is the largest Query pgwrt looks into (SHOW POOL_NODES).
const maxIntercept = 64

// clientStream follows the client → server stream.
type clientStream struct {
	remain int  // body bytes still to pass of the current message
	typ    byte // type of the current (or last) message
	batch  bool // extended-protocol messages sent since the last Sync
	// flushed: a Flush went by, after which the server answers without
	// a ReadyForQuery (turn).
	flushed bool
	// held (prepared statements): a named Parse longer than the window,
	// gathered here while it arrives (heldLen bytes in all) so that it
	// can be rewritten whole; the bytes gathered left the stream.
	held    []byte
	heldLen int
}

func (c *clientStream) atBoundary() bool { return c.remain == 0 && c.held == nil }

// maxHeldParse is the longest named Parse (in bytes) that is gathered
// whole when it does not fit the link's buffer; a longer one passes under
// the client's own name and pins the client (prepared.go).
const maxHeldParse = 1 << 20

// scanClient follows b, client bytes not yet scanned, and says how many of
// them may pass to the server now (n) and why it stopped. A message header
// split across reads is not passed: n stops before it and the caller
// brings it back with more bytes. With cliTerminate, the Terminate message
// (5 bytes) follows the n bytes; with cliIntercept, a whole Query of m
// bytes that pgwrt answers itself (SHOW POOL_NODES while the server is
// idle) follows them. A short Query that may be one is held back whole
// until it has arrived. With cliRewrite (prepared statements, ps), the m
// bytes that follow the n are replaced by t.ps.rew, and the rest of that
// message passes on the next call.
func (t *tracker) scanClient(b []byte) (n int, act clientAction, m int) {
	c := &t.client
	for n < len(b) {
		if c.held != nil {
			take := min(c.heldLen-len(c.held), len(b)-n)
			c.held = append(c.held, b[n:n+take]...)
			if len(c.held) == c.heldLen {
				msg := c.held
				c.held = nil
				t.heldParse(msg)
			}
			return n, cliRewrite, take
		}
		if c.remain > 0 {
			take := min(c.remain, len(b)-n)
			n += take
			c.remain -= take
			continue
		}
		if len(b)-n < 5 {
			return n, cliMore, 0
		}
		typ := b[n]
		l := int(binary.BigEndian.Uint32(b[n+1:]))
		if l < 4 {
			return n, cliMalformed, 0
		}
		c.typ = typ
		if t.ps != nil && typ == 'P' && len(b)-n < 1+l && l-4 > t.window && l-4 <= maxHeldParse {
			if len(b)-n < 6 {
				return n, cliMore, 0
			}
			if b[n+5] != 0 { // named: gathered, then rewritten whole
				c.held, c.heldLen = make([]byte, 0, 1+l), 1+l
				continue
			}
		}
		if t.classify && t.pinned == 0 && (typ == 'Q' || typ == 'P') {
			whole := len(b)-n >= 1+l
			if !whole && l-4 <= t.window {
				return n, cliMore, 0 // hold it back until it is whole
			}
			t.inspect(typ, b[n+5:min(len(b), n+1+l)])
		}
		if t.ps != nil && (typ == 'P' || typ == 'B' || typ == 'D' || typ == 'C') {
			hold, skip, rest := t.prepClient(typ, b[n:], l)
			if hold {
				return n, cliMore, 0
			}
			t.countExtended()
			if skip > 0 {
				c.remain = rest
				return n, cliRewrite, skip
			}
			n += 5
			c.remain = l - 4
			continue
		}
		if t.namedPins && typ == 'P' && t.pinned == 0 {
			if len(b)-n < 6 {
				return n, cliMore, 0
			}
			if l > 4 && b[n+5] != 0 {
				t.pinned |= effNamedParse
			}
		}
		switch typ {
		case 'X':
			return n, cliTerminate, 5
		case 'Q':
			if l <= maxIntercept && t.idle() {
				if len(b)-n < 1+l {
					return n, cliMore, 0
				}
				if isShowPoolNodes(b[n+5 : n+1+l]) {
					return n, cliIntercept, 1 + l
				}
			}
			t.owed.Add(1)
		case 'F':
			t.owed.Add(1)
		case 'S':
			if c.batch {
				c.batch = false
			} else {
				t.owed.Add(1)
			}
		case 'P', 'B', 'D', 'E', 'C', 'H':
			t.countExtended()
			if typ == 'H' {
				c.flushed = true
			}
		}
		if t.ps != nil {
			t.prepCount(typ)
		}
		n += 5
		c.remain = l - 4
	}
	return n, cliMore, 0
}

// heldParse rewrites a named Parse gathered whole (msg, header
// included): it goes out as ps.rew, as prepClient says.
func (t *tracker) heldParse(msg []byte) {
	if t.classify && t.pinned == 0 {
		t.inspect('P', msg[5:])
	}
	_, skip, rest := t.prepClient('P', msg, len(msg)-1)
	t.countExtended()
	if skip == 0 { // passes unchanged
		rest = len(msg)
	}
	t.ps.rew = append(t.ps.rew, msg[skip:skip+rest]...)
}

// countExtended counts an extended-protocol message: a batch owes one
// ReadyForQuery, counted from its first message.
func (t *tracker) countExtended() {
	if !t.client.batch {
		t.client.batch = true
		t.owed.Add(1)
	}
}

// inspect reads a Query body or a Parse body (or as much of it as has
// arrived) for statements that leave state on the session. DEALLOCATE only
// removes state, and a query too long to read whole counts by what was read
// (its start), so bulk statements do not pin their clients.
func (t *tracker) inspect(typ byte, body []byte) {
	if typ == 'P' {
		_, rest, ok := cutCString(body) // the statement name
		if !ok {
			return
		}
		body = rest
	}
	e := classifySQL(body)
	t.pinned = e.eff &^ (effDeallocate | effUnknown)
	if e.commits {
		t.noteCommit()
	}
	if e.eff&effDeallocate != 0 {
		t.dealloc = true
	}
}

// noteCommit marks the request being scanned as one that commits.
func (t *tracker) noteCommit() {
	t.commitAt = t.owed.Load() + 1
}

// cutCString splits b after its first NUL.
func cutCString(b []byte) (s, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

// Events the server stream's tracker reports for a chunk.
type serverEvent uint8

const (
	srvFatal     serverEvent = 1 << iota // a FATAL or PANIC ErrorResponse went by
	srvGoingAway                         // … one that speaks of the node (shutdown, crash)
)

// serverStream follows the server → client stream without buffering
// messages: it sees each 5-byte header (even one split across reads) and
// counts body bytes past.
type serverStream struct {
	hdr    [5]byte
	hn     int  // header bytes collected so far
	remain int  // body bytes still to pass of the current message
	typ    byte // type of the current message
	first  bool // the next body byte is the first of the message
	// status is the last ReadyForQuery status: 'I', 'T' or 'E'.
	status byte
	// keep (prepared statements): the current message goes to the client.
	keep bool
	// fatal: the server sent a FATAL (or PANIC) ErrorResponse; the
	// connection ends for a reason the server stated.
	fatal bool
	// copyIn: the server asked for COPY data (CopyInResponse or
	// CopyBothResponse) and waits for the client.
	copyIn bool
	// errAt: where, in the bytes the last feedServer left for the client
	// (the chunk, or ps.be.out), the last ErrorResponse whose header was
	// whole in them starts; -1 if none did.
	errAt int
	// hstart: where the header being collected started in this chunk
	// (-1: in an earlier one).
	hstart int
}

// atBoundary reports whether the stream so far ends on a message boundary.
func (s *serverStream) atBoundary() bool { return s.hn == 0 && s.remain == 0 }

// lastWasError reports whether the stream ends right after an
// ErrorResponse (the server's own word on why it ends).
func (s *serverStream) lastWasError() bool { return s.typ == 'E' && s.atBoundary() }

// feedServer follows chunk, the next bytes from the server. It does not
// change chunk, and reports FATALs in ev. With prepared statements (ps)
// what goes to the client is not chunk but ps.be.out: the answers pgwrt
// swallows are left out, those it injects put in, and a header split
// across reads is held back until it is whole.
func (t *tracker) feedServer(chunk []byte) (ev serverEvent, err error) {
	f := &t.server
	ps := t.ps
	if ps != nil {
		ps.be.out = ps.be.out[:0]
	}
	n := len(chunk)
	f.errAt = -1
	if f.hn > 0 {
		f.hstart = -1
	}
	for i := 0; i < n; {
		if f.remain == 0 {
			if f.hn == 0 {
				f.hstart = i
			}
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
				return ev, errMalformedServer
			}
			if f.typ == 'G' || f.typ == 'W' {
				f.copyIn = true
			}
			f.remain = l - 4
			f.first = true
			if f.typ == 'E' {
				f.errAt = f.hstart
			}
			if ps != nil {
				f.keep = ps.serverKeep(f.typ)
				if f.typ == 'E' {
					f.errAt = -1
					if f.keep {
						f.errAt = len(ps.be.out)
					}
				}
				if f.keep {
					ps.be.out = append(ps.be.out, f.hdr[:]...)
				}
			}
			if f.remain == 0 {
				f.hn = 0
				if ps != nil {
					ps.serverEnd(f.typ)
				}
			}
			continue
		}
		take := min(f.remain, n-i)
		if f.first {
			f.first = false
			switch f.typ {
			case 'Z':
				f.status = chunk[i]
				// Only this side writes answered. One the client did
				// not ask for (no server sends it) must not leave the
				// books owing forever.
				if a := t.answered.Load(); a != t.owed.Load() {
					t.answered.Store(a + 1)
				}
			case 'E':
				// The severity comes first; a FATAL split across reads
				// goes unnoticed, which costs only the early warning.
				if take == f.remain && isFatal(chunk[i:i+take]) {
					f.fatal = true
					ev |= srvFatal
					if nodeGoingAway(chunk[i : i+take]) {
						ev |= srvGoingAway
					}
				}
			}
		}
		if ps != nil && f.keep {
			ps.be.out = append(ps.be.out, chunk[i:i+take]...)
		}
		i += take
		f.remain -= take
		if f.remain == 0 {
			f.hn = 0
			if ps != nil {
				ps.serverEnd(f.typ)
			}
		}
	}
	return ev, nil
}

// outBoundary reports whether the bytes feedServer left for the client
// (prepared statements: ps.be.out) end on a message boundary.
func (s *serverStream) outBoundary() bool { return s.remain == 0 || !s.keep }

// stageClient scans b with prepared statements tracked (t.ps): what
// passes and the rewrites the tracker asks for are staged in ps.be.stage,
// until a stop other than a rewrite or, after a rewrite, limit staged
// bytes; the answers pgwrt gives now are then in ps.toClient. It returns
// the stage, how many bytes of b it used, and the stop (as scanClient).
func (t *tracker) stageClient(b []byte, limit int) (stage []byte, n int, act clientAction, m int) {
	ps := t.ps
	stage = ps.be.stage[:0]
	if cap(stage) > bigStage {
		stage = nil // a held Parse's: the engine has written it
	}
	for {
		var k int
		k, act, m = t.scanClient(b[n:])
		stage = append(stage, b[n:n+k]...)
		n += k
		if act != cliRewrite {
			break
		}
		stage = append(stage, ps.rew...)
		ps.rew = ps.rew[:0]
		if cap(ps.rew) > bigStage {
			ps.rew = nil
		}
		n += m
		if len(stage) >= limit {
			break // write what is staged, then go on
		}
	}
	t.prepDrain()
	ps.be.stage = stage
	return stage, n, act, m
}

// bigStage: staging buffers that grew past this for a held Parse are
// dropped once used, so a link keeps no more than a few KB of them.
const bigStage = 64 << 10

// prepDrain takes, on the client side, the answers pgwrt gives now for
// the head of the FIFO (into ps.toClient): only where the bytes sent to
// the client so far end on a message boundary; otherwise the server side
// sends them after the message it is in.
func (t *tracker) prepDrain() {
	if t.server.outBoundary() {
		t.ps.toClient = t.ps.drain(t.ps.toClient)
	}
}

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

var errMalformedServer = errorf(codeBackendLost, "pgwrt: server sent a malformed message")
var errMalformedClient = errorf(codeProtocol, "pgwrt: invalid message length from client")

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
