package router

import (
	"bytes"
	"encoding/binary"
	"errors"

	"pgwrt/router/wire"
)

// A transaction lost with its backend. In transaction mode a client's
// session lives in pgwrt, not on a backend, so when the backend under a
// transaction goes away (a switchover ends it with FATAL 57P01, a crash or
// a frozen primary takes it) the client need not lose its connection.
// What it is told depends on what pgwrt knows of the transaction:
//
//   - Nothing that commits was unanswered (the client was inside a
//     transaction block, had not sent COMMIT): the transaction is certainly
//     rolled back. The client gets one ERROR (SQLSTATE 40001, which retry
//     loops know) followed by ReadyForQuery 'E', in answer to what it was
//     waiting for or to its next request; pgwrt answers its ROLLBACK
//     itself (and 25P02 to anything else, as PostgreSQL would), and its next
//     transaction runs on a backend of the current primary.
//   - A COMMIT, or a statement outside a transaction block (which commits
//     by itself), was unanswered: whether it committed is unknown. The
//     client gets FATAL 08007 saying so, and its connection ends; pgwrt
//     never answers with an outcome it does not know.
//   - Only a request not yet whole, or an extended-protocol batch without
//     its Sync, outside a block: nothing ran to a commit. The client gets
//     the ERROR when its request is complete, with ReadyForQuery 'I'.
//
// A client pinned to its backend (its session state lives there) loses
// its connection as in session mode.

// errTxnLost is what a client in a transaction block hears when its
// transaction was lost with its backend.
func errTxnLost(why string) []byte {
	return errorMsg("40001", "pgwrt: "+why+"; the transaction was rolled back, retry it")
}

var errInAborted = errorMsg("25P02", "current transaction is aborted, commands ignored until end of transaction block")

// lostResponder answers a client whose transaction was lost, until the
// client is back outside a transaction block.
type lostResponder struct {
	s       *session
	ps      *prepLink // the client's protocol-level prepared statements, or nil
	pending []byte    // the ERROR not yet given (nil: given)
	block   bool      // the client is in a (failed) transaction block
	skip    bool      // an error in an extended batch: skip to its Sync
	exitSt  bool      // the unnamed statement (unnamedRB) or portal is a ROLLBACK or COMMIT
	portal  bool      // the unnamed portal is bound to an exit statement
	done    bool      // a ROLLBACK was answered: back to status 'I'
	over    bool      // ReadyForQuery 'I' went: the client is out of the block
	out     []byte
}

// recoverLost settles a transaction-mode link whose backend was lost (l.lost):
// it tells the client, as above, and answers it until its transaction
// block has ended. It returns the client bytes read and not answered
// (the next transaction's), and false when the connection is to end.
func (s *session) recoverLost(l *link, ps *prepLink) (rest []byte, ok bool) {
	s.mu.Lock()
	why := s.lostWhy
	s.lostWhy = ""
	s.mu.Unlock()
	if why == "" {
		why = "the connection to primary " + l.be.node + " was lost"
	}
	t := &l.t
	s.wmu.Lock()
	boundary := s.atBoundary
	s.wmu.Unlock()
	if !boundary {
		// A server message was cut short: nothing can be said.
		s.r.log.Info("transaction lost with its backend mid-message; closing the client", "user", s.user, "database", s.db, "node", l.be.node)
		return nil, false
	}
	due := t.due()
	block := t.status() != 'I'
	if due > 0 && (!block || t.commitInFlight()) {
		s.writeError(errorf(codeTxnUnknown, "pgwrt: %s while a COMMIT (or a statement outside a transaction block) was unanswered; whether it committed is unknown", why))
		s.r.log.Info("transaction outcome unknown after its backend was lost", "user", s.user, "database", s.db, "node", l.be.node)
		return nil, false
	}
	lr := &lostResponder{s: s, ps: ps, pending: errTxnLost(why), block: block}
	if due > 0 {
		// The client waits for due answers: the first is the error,
		// the others what PostgreSQL says in a failed block.
		for i := 0; i < due; i++ {
			lr.answerFailed()
		}
	}
	if !block && due == 0 && !t.client.batch && t.client.remain == 0 {
		// Nothing had started: nothing was lost.
		return l.leftover, true
	}
	s.r.log.Info("transaction lost with its backend; the client is told and keeps its connection", "user", s.user, "database", s.db, "node", l.be.node)
	// A client message cut short goes on arriving: its rest is dropped,
	// and a Query or FunctionCall is answered once it is whole.
	discard := t.client.remain
	owes := discard > 0 && (t.client.typ == 'Q' || t.client.typ == 'F')
	if !block && due == 0 && !t.client.batch && !owes {
		// Only a cut message that is answered at a Sync to come.
		lr.skip = true
	}
	if err := lr.flush(); err != nil {
		return nil, false
	}
	return lr.run(l.leftover, discard, owes)
}

// fail answers a request that fails: the pending error first, then 25P02.
func (lr *lostResponder) fail() {
	if lr.pending != nil {
		lr.out = append(lr.out, lr.pending...)
		lr.pending = nil
	} else {
		lr.out = append(lr.out, errInAborted...)
	}
	lr.skip = true
}

// answerFailed answers a whole request (a Query, a FunctionCall, a batch
// up to its Sync) that fails.
func (lr *lostResponder) answerFailed() {
	lr.fail()
	lr.skip = false
	lr.ready()
}

// ready answers a Sync or a Query with ReadyForQuery.
func (lr *lostResponder) ready() {
	st := byte('I')
	if lr.block && !lr.done {
		st = 'E'
	}
	lr.over = st == 'I'
	lr.out = wire.AppendReadyForQuery(lr.out, st)
}

func (lr *lostResponder) flush() error {
	if len(lr.out) == 0 {
		return nil
	}
	err := lr.s.writeFromServer(lr.out, true)
	lr.out = lr.out[:0]
	return err
}

// maxLostMessage bounds the messages the responder reads whole (a Query,
// a Parse, a Bind, a Close); longer ones are dropped as they come and
// fail.
const maxLostMessage = 8 << 10

// run reads the client's messages (after buffered, the bytes already read)
// and answers them until the client is out of its failed block. discard
// bytes of a message cut short come first; owes says that message is
// answered as a failed request once they have gone.
func (lr *lostResponder) run(buffered []byte, discard int, owes bool) ([]byte, bool) {
	in := &lostInput{s: lr.s, buf: append([]byte(nil), buffered...)}
	if err := in.drop(discard); err != nil {
		return nil, false
	}
	if owes {
		lr.answerFailed()
	}
	for {
		if err := lr.flush(); err != nil {
			return nil, false
		}
		if lr.over {
			return in.rest(), true
		}
		typ, body, err := in.next()
		if err != nil {
			return nil, false
		}
		if lr.skip && typ != 'S' && typ != 'X' {
			continue
		}
		switch typ {
		case 'X':
			return nil, false
		case 'Q':
			lr.query(body)
		case 'P':
			lr.parse(body)
		case 'B':
			lr.bind(body)
		case 'D':
			if lr.exitSt {
				if len(body) > 0 && body[0] == 'S' {
					lr.out = append(lr.out, 't', 0, 0, 0, 6, 0, 0) // no parameters
				}
				lr.out = append(lr.out, 'n', 0, 0, 0, 4) // NoData
			} else {
				lr.fail()
			}
		case 'E':
			if lr.portal {
				lr.out = appendTag(lr.out, "ROLLBACK")
				lr.done = true
			} else {
				lr.fail()
			}
		case 'C':
			lr.close(body)
		case 'S':
			if lr.pending != nil {
				lr.fail() // the batch the client is ending was lost
			}
			lr.skip = false
			lr.ready()
			lr.exitSt, lr.portal = false, false
		case 'H', 'd', 'c', 'f':
			// Flush: answers go at once; COPY messages after a failed COPY
			// are ignored, as PostgreSQL does.
		case 'F':
			lr.answerFailed()
		default:
			lr.s.writeError(errMalformedClient)
			return nil, false
		}
	}
}

// query answers a simple Query in the failed block.
func (lr *lostResponder) query(body []byte) {
	switch exit := txnExit(body); {
	case len(bytes.Trim(body, "\x00 \t\r\n;")) == 0:
		lr.out = append(lr.out, 'I', 0, 0, 0, 4) // EmptyQueryResponse
	case exit == 'R' || exit == 'C' && lr.pending == nil:
		// A COMMIT of a failed block is a ROLLBACK, as in PostgreSQL;
		// one the client sends before it has heard of the failure
		// gets the error instead.
		lr.out = appendTag(lr.out, "ROLLBACK")
		lr.done = true
	default:
		lr.fail()
	}
	lr.skip = false
	lr.ready()
}

func (lr *lostResponder) parse(body []byte) {
	name, rest, ok := cutCString(body)
	exit := txnExit(rest)
	if ok && len(name) == 0 && (exit == 'R' || exit == 'C' && lr.pending == nil) {
		lr.exitSt = true
		lr.out = append(lr.out, msgParseComplete...)
		return
	}
	lr.fail()
}

func (lr *lostResponder) bind(body []byte) {
	portal, rest, ok := cutCString(body)
	var name []byte
	if ok {
		name, _, ok = cutCString(rest)
	}
	exit := false
	switch {
	case !ok || len(portal) != 0:
	case len(name) == 0:
		exit = lr.exitSt
	case lr.ps != nil:
		if st := lr.ps.names[string(name)]; st != nil {
			e := txnExit(st.body)
			exit = e == 'R' || e == 'C' && lr.pending == nil
		}
	}
	if !exit {
		lr.fail()
		return
	}
	lr.portal, lr.exitSt = true, true
	lr.out = append(lr.out, '2', 0, 0, 0, 4) // BindComplete
}

// close answers Close: a statement or portal is gone as asked (PostgreSQL
// allows Close in a failed block); the client's name of a protocol-level
// statement is forgotten.
func (lr *lostResponder) close(body []byte) {
	if len(body) > 1 && body[0] == 'S' && lr.ps != nil {
		if name, _, ok := cutCString(body[1:]); ok && len(name) > 0 {
			if st := lr.ps.names[string(name)]; st != nil {
				lr.ps.forget(string(name), st)
			}
		}
	}
	lr.out = append(lr.out, msgCloseComplete...)
}

// appendTag appends a CommandComplete.
func appendTag(dst []byte, tag string) []byte {
	dst, st := wire.Begin(dst, 'C')
	dst = wire.AppendString(dst, tag)
	return wire.Finish(dst, st)
}

// txnExit reads a query text (a Query body or a Parse's query) that is one
// statement: 'R' for ROLLBACK or ABORT (not ROLLBACK TO or PREPARED), 'C'
// for COMMIT or END (not COMMIT PREPARED), each with WORK or TRANSACTION
// and AND NO CHAIN allowed; 0 for anything else.
func txnExit(q []byte) byte {
	if i := bytes.IndexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	l := sqlLexer{b: q}
	t := l.next()
	var kind byte
	switch {
	case l.isWord(t, "rollback"), l.isWord(t, "abort"):
		kind = 'R'
	case l.isWord(t, "commit"), l.isWord(t, "end"):
		kind = 'C'
	default:
		return 0
	}
	t = l.next()
	if l.isWord(t, "work") || l.isWord(t, "transaction") {
		t = l.next()
	}
	if l.isWord(t, "and") {
		if t = l.next(); !l.isWord(t, "no") {
			return 0
		}
		if t = l.next(); !l.isWord(t, "chain") {
			return 0
		}
		t = l.next()
	}
	if t.kind == tokSemi {
		t = l.next()
	}
	if t.kind != tokEOF {
		return 0
	}
	return kind
}

// lostInput reads whole client messages for the responder.
type lostInput struct {
	s   *session
	buf []byte
}

func (in *lostInput) rest() []byte { return in.buf }

// fill reads until buf holds n bytes.
func (in *lostInput) fill(n int) error {
	for len(in.buf) < n {
		var tmp [512]byte
		k, err := in.s.conn.Read(tmp[:])
		in.buf = append(in.buf, tmp[:k]...)
		if k == 0 && err != nil {
			return err
		}
	}
	return nil
}

// drop skips n bytes of the client stream.
func (in *lostInput) drop(n int) error {
	for n > 0 {
		if len(in.buf) == 0 {
			if err := in.fill(1); err != nil {
				return err
			}
		}
		k := min(n, len(in.buf))
		in.buf = in.buf[k:]
		n -= k
	}
	return nil
}

// next returns the next message; a body longer than maxLostMessage is
// dropped and returned empty.
func (in *lostInput) next() (typ byte, body []byte, err error) {
	if err := in.fill(5); err != nil {
		return 0, nil, err
	}
	typ = in.buf[0]
	n := int(binary.BigEndian.Uint32(in.buf[1:5]))
	if n < 4 {
		return 0, nil, errors.New("malformed")
	}
	in.buf = in.buf[5:]
	n -= 4
	if n > maxLostMessage {
		return typ, nil, in.drop(n)
	}
	if err := in.fill(n); err != nil {
		return 0, nil, err
	}
	body = in.buf[:n:n]
	in.buf = in.buf[n:]
	return typ, body, nil
}
