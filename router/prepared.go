package router

import (
	"encoding/binary"
	"strconv"
	"sync"
)

// Protocol-level prepared statements in transaction mode.
//
// A client names its statements (Parse "s1"), and those names live on the
// session of one server connection; in transaction mode its next
// transaction may run on another. So pgwrt keeps the names itself:
//
//   - every distinct statement (the Parse body after the name: query text
//     and parameter type OIDs) gets a server-side name of its own,
//     pgwrt_<n>, from a router-wide registry; clients that prepare the same
//     statement share it;
//   - each client maps its names to those statements (prepLink.names);
//   - each backend knows which statements are prepared on it, an LRU of at
//     most max_prepared_statements (backendStmts); the one evicted is
//     closed on the server;
//   - the client stream is rewritten on the way: a named Parse goes out
//     under the server-side name, or not at all when the backend already
//     has the statement (pgwrt answers ParseComplete); Bind, Describe and
//     Close of a statement name the server-side statement, preceded by a
//     Parse when the backend lacks it; Close is answered by pgwrt.
//
// Answers must reach the client in order, without the ones it did not ask
// for: the backend keeps a FIFO with an entry for every client message
// that the server answers (or pgwrt answers in its place), and the server
// stream is followed against it. An ErrorResponse to an extended-protocol
// message makes the server skip to the next Sync: the entries up to it get
// no answer, what pgwrt would have injected for them is not sent, and
// what they would have prepared, closed or named is undone.
//
// The tracker calls this file from scanClient (client side) and
// feedServer (server side); the engine stages and writes what they leave
// in prepLink.rew, prepLink.toClient and backendStmts.out. Both sides run
// under link.pm.
//
// Limits: a named Parse longer than the link's buffer (window) is gathered
// whole in a buffer of its own while it arrives (tracker.heldParse), up to
// maxHeldParse; a longer one passes under the client's own name and pins
// the client to its backend, as does every named Parse when
// max_prepared_statements is 0.

// stmt is one distinct statement.
type stmt struct {
	name string // server-side name
	body []byte // the Parse body after the name
	// commits: the statement commits a transaction (COMMIT, END, ...),
	// so a Bind of it makes the tracker note a commit (noteCommit).
	commits bool
	refs    int // client names and FIFO entries that hold it (stmtRegistry.mu)
}

// stmtRegistry hands out server-side names; a statement is forgotten when
// no client names it any more (a backend that still has it prepared keeps
// it under its old name until evicted).
type stmtRegistry struct {
	mu   sync.Mutex
	m    map[string]*stmt
	next uint64
}

// acquire returns the statement with this Parse body, holding a reference.
func (r *stmtRegistry) acquire(body []byte) *stmt {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = make(map[string]*stmt)
	}
	st := r.m[string(body)]
	if st == nil {
		r.next++
		st = &stmt{name: "pgwrt_" + strconv.FormatUint(r.next, 10), body: append([]byte(nil), body...), commits: classifySQL(body).commits}
		r.m[string(st.body)] = st
	}
	st.refs++
	return st
}

// hold takes another reference to st (it may have been forgotten).
func (r *stmtRegistry) hold(st *stmt) {
	r.mu.Lock()
	if st.refs == 0 && r.m[string(st.body)] == nil {
		r.m[string(st.body)] = st
	}
	st.refs++
	r.mu.Unlock()
}

func (r *stmtRegistry) release(st *stmt) {
	r.mu.Lock()
	st.refs--
	if st.refs == 0 && r.m[string(st.body)] == st {
		delete(r.m, string(st.body))
	}
	r.mu.Unlock()
}

func (r *stmtRegistry) size() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}

// What pgwrt does with the answer to a FIFO entry.
const (
	actPass    uint8 = iota // the server answers the client's message
	actInject               // pgwrt answers it with msg
	actSwallow              // pgwrt's own message: its answer is dropped
	actReplace              // the server's ErrorResponse is replaced by msg
)

// pending is a FIFO entry: a message the server (or pgwrt) answers.
type pending struct {
	kind byte  // the client message: P B D E C S Q F
	act  uint8 // act*
	st   *stmt // Parse: the statement prepared; swallowed Close: the one evicted; injected Close: the one closed
	name string
	msg  []byte
}

var (
	msgParseComplete = []byte{'1', 0, 0, 0, 4}
	msgCloseComplete = []byte{'3', 0, 0, 0, 4}
)

// missingStmt is the statement pgwrt describes to make the server fail
// where PostgreSQL would fail the client's message (re-Parse of a name in
// use, a name never prepared): the server then skips to Sync as it would
// have, and pgwrt puts its own ErrorResponse in place of the server's.
const missingStmt = "pgwrt_no_such_statement"

// backendStmts is what a backend connection has prepared, and the FIFO of
// answers it owes. It lives as long as the connection; it is touched only
// by the link that owns the backend.
type backendStmts struct {
	lru        map[*stmt]*lruEntry
	head, tail *lruEntry // head: most recently used
	spare      *lruEntry

	fifo     []pending // ring
	fh, fn   int       // head index, length
	skipping bool      // the server skips to the next Sync (an error)

	out   []byte // server → client bytes of the current chunk
	stage []byte // client → server bytes staged by the engine
}

type lruEntry struct {
	st         *stmt
	prev, next *lruEntry
}

func (b *backendStmts) count() int { return len(b.lru) }

// has reports whether st is prepared here, and marks it used.
func (b *backendStmts) has(st *stmt) bool {
	e := b.lru[st]
	if e == nil {
		return false
	}
	if e != b.head {
		b.unlink(e)
		b.pushFront(e)
	}
	return true
}

func (b *backendStmts) add(st *stmt) {
	if b.lru == nil {
		b.lru = make(map[*stmt]*lruEntry)
	}
	if b.lru[st] != nil {
		return
	}
	e := b.spare
	if e != nil {
		b.spare = nil
	} else {
		e = new(lruEntry)
	}
	e.st = st
	b.lru[st] = e
	b.pushFront(e)
}

func (b *backendStmts) remove(st *stmt) {
	e := b.lru[st]
	if e == nil {
		return
	}
	b.unlink(e)
	delete(b.lru, st)
	*e = lruEntry{}
	b.spare = e
}

// clear forgets everything (the server's statements were deallocated).
func (b *backendStmts) clear() {
	clear(b.lru)
	b.head, b.tail = nil, nil
	b.fh, b.fn, b.skipping = 0, 0, false
}

func (b *backendStmts) pushFront(e *lruEntry) {
	e.prev, e.next = nil, b.head
	if b.head != nil {
		b.head.prev = e
	}
	b.head = e
	if b.tail == nil {
		b.tail = e
	}
}

func (b *backendStmts) unlink(e *lruEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		b.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		b.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (b *backendStmts) push(p pending) {
	if b.fn == len(b.fifo) {
		n := make([]pending, max(16, 2*len(b.fifo)))
		for i := 0; i < b.fn; i++ {
			n[i] = b.fifo[(b.fh+i)%len(b.fifo)]
		}
		b.fifo, b.fh = n, 0
	}
	b.fifo[(b.fh+b.fn)%len(b.fifo)] = p
	b.fn++
}

func (b *backendStmts) front() *pending {
	if b.fn == 0 {
		return nil
	}
	return &b.fifo[b.fh]
}

func (b *backendStmts) pop() {
	b.fifo[b.fh] = pending{}
	b.fh = (b.fh + 1) % len(b.fifo)
	b.fn--
}

// settled reports whether nothing is owed (a backend with entries left is
// not handed to another client).
func (b *backendStmts) settled() bool { return b.fn == 0 && !b.skipping }

// prepLink is a client's side of the scheme: its names, and the backend
// its current link runs on. It lives as long as the session.
type prepLink struct {
	reg   *stmtRegistry
	names map[string]*stmt
	be    *backendStmts
	max   int
	// raw: a named Parse passed under the client's own name (too long to
	// hold; the client is pinned), so names pgwrt does not know may be
	// the server's and pass unchanged.
	raw bool

	rew      []byte // what replaces the message being rewritten
	toClient []byte // answers pgwrt gives the client now
}

func newPrepLink(reg *stmtRegistry) *prepLink {
	return &prepLink{reg: reg, names: make(map[string]*stmt)}
}

// begin attaches p to be for a link.
func (p *prepLink) begin(be *backend, max int) {
	if be.stmts == nil {
		be.stmts = &backendStmts{}
	}
	p.be, p.max = be.stmts, max
}

// close releases the client's names (the session ends).
func (p *prepLink) close() {
	for k, st := range p.names {
		p.reg.release(st)
		delete(p.names, k)
	}
}

// forget drops the client's name for st, if it still means st.
func (p *prepLink) forget(name string, st *stmt) {
	if name != "" && p.names[name] == st {
		delete(p.names, name)
		p.reg.release(st)
	}
}

// evictFor makes room for one more statement on the backend, closing the
// least recently used ones on the server (their CloseComplete swallowed).
func (p *prepLink) evictFor() {
	b := p.be
	for b.count() >= p.max && b.tail != nil {
		st := b.tail.st
		b.remove(st)
		p.rew = appendStmtMsg(p.rew, 'C', st.name)
		b.push(pending{kind: 'C', act: actSwallow, st: st})
	}
}

// ensure makes st prepared on the backend, sending a Parse (its
// ParseComplete swallowed) when it is not.
func (p *prepLink) ensure(st *stmt) {
	if p.be.has(st) {
		return
	}
	p.evictFor()
	p.be.add(st)
	p.rew = appendParse(p.rew, st.name, st.body)
	p.be.push(pending{kind: 'P', act: actSwallow, st: st})
}

// fail makes the server fail where PostgreSQL would have failed the
// client's message, and puts errMsg in place of the server's error.
func (p *prepLink) fail(errMsg []byte) {
	p.rew = appendStmtMsg(p.rew, 'D', missingStmt)
	p.be.push(pending{kind: 'D', act: actReplace, msg: errMsg})
}

// appendStmtMsg appends a Describe or Close ('D', 'C') of statement name.
func appendStmtMsg(dst []byte, typ byte, name string) []byte {
	l := 4 + 1 + len(name) + 1
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(l))
	dst = append(dst, 'S')
	dst = append(dst, name...)
	return append(dst, 0)
}

func appendParse(dst []byte, name string, body []byte) []byte {
	dst = appendParseHeader(dst, name, len(body))
	return append(dst, body...)
}

// appendParseHeader appends a Parse's header and name; rest body bytes follow.
func appendParseHeader(dst []byte, name string, rest int) []byte {
	dst = append(dst, 'P', 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(4+len(name)+1+rest))
	dst = append(dst, name...)
	return append(dst, 0)
}

// appendBindHeader appends a Bind's header, portal and statement name;
// rest body bytes follow.
func appendBindHeader(dst []byte, portal []byte, name string, rest int) []byte {
	dst = append(dst, 'B', 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(4+len(portal)+1+len(name)+1+rest))
	dst = append(dst, portal...)
	dst = append(dst, 0)
	dst = append(dst, name...)
	return append(dst, 0)
}

// errorMsg builds an ErrorResponse as PostgreSQL words it.
func errorMsg(code, msg string) []byte {
	b := []byte{'E', 0, 0, 0, 0}
	for _, f := range [][2]string{{"S", "ERROR"}, {"V", "ERROR"}, {"C", code}, {"M", msg}} {
		b = append(b, f[0]...)
		b = append(b, f[1]...)
		b = append(b, 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

func quoteIdentMsg(name []byte) string { return `"` + string(name) + `"` }

// prepClient decides what becomes of a Parse, Bind, Describe or Close
// whose header starts b (l is its length field). hold: keep it back until
// more has arrived. Else, with skip > 0, the first skip bytes of the
// message are replaced by p.rew (possibly empty) and rest body bytes pass
// after it; with skip 0 it passes unchanged. Every answer it will get is
// in the FIFO.
func (t *tracker) prepClient(typ byte, b []byte, l int) (hold bool, skip, rest int) {
	p := t.ps
	be := p.be
	whole := len(b) >= 1+l
	body := b[5:min(len(b), 1+l)]
	size := l - 4
	switch typ {
	case 'P':
		if !whole && size > t.window {
			// Too long to hold: under the client's own name, and the
			// client keeps this backend.
			if len(body) == 0 {
				return true, 0, 0
			}
			if body[0] != 0 {
				t.pinned |= effNamedParse
				p.raw = true
				if name, _, ok := cutCString(body); ok {
					if st := p.names[string(name)]; st != nil {
						p.forget(string(name), st)
					}
				}
			}
			be.push(pending{kind: 'P'})
			return false, 0, 0
		}
		if !whole {
			return true, 0, 0
		}
		name, sbody, ok := cutCString(body)
		if !ok || len(name) == 0 {
			be.push(pending{kind: 'P'})
			return false, 0, 0
		}
		if p.names[string(name)] != nil {
			p.fail(errorMsg("42P05", "prepared statement "+quoteIdentMsg(name)+" already exists"))
			return false, 1 + l, 0
		}
		st := p.reg.acquire(sbody)
		k := string(name)
		p.names[k] = st
		if be.has(st) {
			be.push(pending{kind: 'P', act: actInject, st: st, name: k, msg: msgParseComplete})
			return false, 1 + l, 0
		}
		p.evictFor()
		be.add(st)
		p.rew = appendParseHeader(p.rew, st.name, len(sbody))
		be.push(pending{kind: 'P', st: st, name: k})
		return false, 5 + len(name) + 1, len(sbody)
	case 'B':
		portal, r, ok := cutCString(body)
		var name []byte
		if ok {
			name, _, ok = cutCString(r)
		}
		if !ok {
			if !whole && len(body) < t.window {
				return true, 0, 0
			}
			be.push(pending{kind: 'B'})
			return false, 0, 0
		}
		if len(name) == 0 {
			be.push(pending{kind: 'B'})
			return false, 0, 0
		}
		used := len(portal) + 1 + len(name) + 1
		st := p.names[string(name)]
		if st == nil {
			if p.raw {
				be.push(pending{kind: 'B'})
				return false, 0, 0
			}
			// A Bind of the missing statement fails as the client's
			// would; the rest of the body passes behind it.
			p.rew = appendBindHeader(p.rew, portal, missingStmt, size-used)
			be.push(pending{kind: 'B', act: actReplace, msg: errorMsg("26000", "prepared statement "+quoteIdentMsg(name)+" does not exist")})
			return false, 5 + used, size - used
		}
		p.ensure(st)
		if st.commits {
			t.noteCommit()
		}
		p.rew = appendBindHeader(p.rew, portal, st.name, size-used)
		be.push(pending{kind: 'B'})
		return false, 5 + used, size - used
	default: // 'D', 'C'
		if !whole {
			if size > t.window {
				be.push(pending{kind: typ})
				return false, 0, 0
			}
			return true, 0, 0
		}
		name, _, ok := cutCString(body[min(1, len(body)):])
		if len(body) == 0 || body[0] != 'S' || !ok || len(name) == 0 {
			be.push(pending{kind: typ})
			return false, 0, 0
		}
		st := p.names[string(name)]
		if st == nil && p.raw {
			be.push(pending{kind: typ})
			return false, 0, 0
		}
		if typ == 'C' {
			// PostgreSQL closes a name it does not know without a word.
			k := ""
			if st != nil {
				k = string(name)
				delete(p.names, k) // the reference moves to the entry
			}
			be.push(pending{kind: 'C', act: actInject, st: st, name: k, msg: msgCloseComplete})
			return false, 1 + l, 0
		}
		if st == nil {
			p.fail(errorMsg("26000", "prepared statement "+quoteIdentMsg(name)+" does not exist"))
			return false, 1 + l, 0
		}
		p.ensure(st)
		p.rew = appendStmtMsg(p.rew, 'D', st.name)
		be.push(pending{kind: 'D'})
		return false, 1 + l, 0
	}
}

// prepCount puts a forwarded Execute, Sync, Query or FunctionCall in the
// FIFO.
func (t *tracker) prepCount(typ byte) {
	switch typ {
	case 'E', 'S', 'Q', 'F':
		t.ps.be.push(pending{kind: typ})
	}
}

// answers reports whether server message typ completes the answer to a
// client message of kind (other than by ErrorResponse, and ReadyForQuery).
func answers(kind, typ byte) bool {
	switch kind {
	case 'P':
		return typ == '1'
	case 'B':
		return typ == '2'
	case 'C':
		return typ == '3'
	case 'D':
		return typ == 'T' || typ == 'n'
	case 'E':
		return typ == 'C' || typ == 'I' || typ == 's'
	}
	return false
}

// serverKeep reports whether the server message typ, whose header has just
// arrived, goes to the client.
func (p *prepLink) serverKeep(typ byte) bool {
	b := p.be
	h := b.front()
	if h == nil || b.skipping {
		return true
	}
	switch h.act {
	case actSwallow:
		return !answers(h.kind, typ)
	case actReplace:
		return typ != 'E'
	}
	return true
}

// serverEnd follows a server message of type typ that has ended: it pops
// what it answered and emits what pgwrt answers next.
func (p *prepLink) serverEnd(typ byte) {
	b := p.be
	switch typ {
	case 'Z':
		if b.skipping {
			for h := b.front(); h != nil && h.kind != 'S'; h = b.front() {
				p.skipped(h)
				b.pop()
			}
			b.skipping = false
		}
		if h := b.front(); h != nil && (h.kind == 'S' || h.kind == 'Q' || h.kind == 'F') {
			b.pop()
		}
	case 'E':
		h := b.front()
		if h == nil || b.skipping {
			break
		}
		switch h.kind {
		case 'P', 'B', 'D', 'E', 'C':
			p.failed(h)
			b.pop()
			b.skipping = true
			for h := b.front(); h != nil && h.kind != 'S'; h = b.front() {
				p.skipped(h)
				b.pop()
			}
		}
	default:
		if h := b.front(); h != nil && !b.skipping && answers(h.kind, typ) {
			b.pop()
		}
	}
	b.out = p.drain(b.out)
}

// drain appends to dst the answers pgwrt gives for the entries at the head
// of the FIFO, as far as it can.
func (p *prepLink) drain(dst []byte) []byte {
	b := p.be
	for h := b.front(); h != nil && h.act == actInject && !b.skipping; h = b.front() {
		dst = append(dst, h.msg...)
		if h.kind == 'C' && h.st != nil {
			p.reg.release(h.st)
		}
		b.pop()
	}
	return dst
}

// failed undoes an entry whose message the server answered with an error.
func (p *prepLink) failed(h *pending) {
	switch {
	case h.act == actReplace:
		p.be.out = append(p.be.out, h.msg...)
	case h.kind == 'P' && h.st != nil:
		p.be.remove(h.st)
		p.forget(h.name, h.st)
	case h.kind == 'C' && h.act == actSwallow:
		p.be.add(h.st)
	}
}

// skipped undoes an entry whose message the server skipped.
func (p *prepLink) skipped(h *pending) {
	switch {
	case h.kind == 'P' && h.st != nil:
		if h.act != actInject {
			p.be.remove(h.st)
		}
		p.forget(h.name, h.st)
	case h.kind == 'C' && h.act == actSwallow:
		p.be.add(h.st)
	case h.kind == 'C' && h.act == actInject && h.st != nil:
		if p.names[h.name] == nil {
			p.names[h.name] = h.st // the Close did not happen
		} else {
			p.reg.release(h.st)
		}
	}
}
