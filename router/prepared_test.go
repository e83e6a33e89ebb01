package router

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// The prepared-statement rewrite and the FIFO of answers, without
// PostgreSQL: client bytes in, what the server gets out; server bytes in,
// what the client gets out.

func pmsg(typ byte, parts ...string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	for _, p := range parts {
		b = append(b, p...)
	}
	binary.BigEndian.PutUint32(b[1:], uint32(len(b)-1))
	return b
}

func cat(ms ...[]byte) []byte { return bytes.Join(ms, nil) }

func parse(name, sql string) []byte       { return pmsg('P', name, "\x00", sql, "\x00\x00\x00") }
func bind(name string) []byte             { return pmsg('B', "\x00", name, "\x00\x00\x00\x00\x00\x00\x00") }
func describeS(name string) []byte        { return pmsg('D', "S", name, "\x00") }
func closeS(name string) []byte           { return pmsg('C', "S", name, "\x00") }
func execute() []byte                     { return pmsg('E', "\x00\x00\x00\x00\x00") }
func syncMsg() []byte                     { return pmsg('S') }
func srv(typ byte, body ...string) []byte { return pmsg(typ, body...) }

var (
	parseComplete = srv('1')
	bindComplete  = srv('2')
	closeComplete = srv('3')
	noData        = srv('n')
	cmdComplete   = srv('C', "SELECT 1\x00")
	rfq           = srv('Z', "I")
	srvError      = srv('E', "SERROR\x00C42601\x00Msyntax error\x00\x00")
)

type prepRig struct {
	t  tracker
	ps *prepLink
}

func newPrepRig(reg *stmtRegistry, be *backend, max int) *prepRig {
	r := &prepRig{ps: newPrepLink(reg)}
	r.t.reset('I')
	r.t.classify, r.t.window = true, 1000
	r.ps.begin(be, max)
	r.t.ps = r.ps
	return r
}

// client scans in as the goroutine engine does; it returns what the server
// gets and what pgwrt answers the client at once.
func (r *prepRig) client(in []byte) (toServer, toClient []byte) {
	toServer, _ = r.scan(in)
	r.t.prepDrain()
	toClient = append(toClient, r.ps.toClient...)
	r.ps.toClient = r.ps.toClient[:0]
	return toServer, toClient
}

// server feeds in (in pieces of split bytes) and returns what the client gets.
func (r *prepRig) server(in []byte, split int) []byte {
	var out []byte
	for len(in) > 0 {
		n := min(split, len(in))
		if _, err := r.t.feedServer(in[:n]); err != nil {
			panic(err)
		}
		out = append(out, r.ps.be.out...)
		in = in[n:]
	}
	return out
}

func expect(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, got, want)
	}
}

func TestPreparedRewrite(t *testing.T) {
	for _, split := range []int{1, 3, 1 << 20} {
		t.Run(fmt.Sprint("split", split), func(t *testing.T) {
			reg := &stmtRegistry{}
			be := &backend{}
			a := newPrepRig(reg, be, 10)
			// First Parse: under pgwrt's name.
			s, c := a.client(cat(parse("s1", "SELECT 1"), describeS("s1"), syncMsg()))
			expect(t, "server gets", s, cat(parse("pgwrt_1", "SELECT 1"), describeS("pgwrt_1"), syncMsg()))
			expect(t, "client now", c, nil)
			resp := cat(parseComplete, srv('t', "\x00\x00"), noData, rfq)
			expect(t, "client gets", a.server(resp, split), resp)
			// Bind names the server's statement.
			s, _ = a.client(cat(bind("s1"), execute(), syncMsg()))
			expect(t, "server gets", s, cat(bind("pgwrt_1"), execute(), syncMsg()))
			resp = cat(bindComplete, cmdComplete, rfq)
			expect(t, "client gets", a.server(resp, split), resp)

			// Another client, same statement, another name, same backend:
			// nothing goes to the server for its Parse.
			b := newPrepRig(reg, be, 10)
			s, c = b.client(cat(parse("other", "SELECT 1"), bind("other"), execute(), syncMsg()))
			expect(t, "server gets", s, cat(bind("pgwrt_1"), execute(), syncMsg()))
			expect(t, "client now", c, parseComplete)
			expect(t, "client gets", b.server(cat(bindComplete, cmdComplete, rfq), split), cat(bindComplete, cmdComplete, rfq))

			// In order: an injected ParseComplete after an unnamed Execute's answer.
			s, c = b.client(cat(pmsg('B', "\x00\x00\x00\x00\x00\x00\x00\x00"), execute(), parse("again", "SELECT 1"), bind("again"), execute(), syncMsg()))
			expect(t, "server gets", s, cat(pmsg('B', "\x00\x00\x00\x00\x00\x00\x00\x00"), execute(), bind("pgwrt_1"), execute(), syncMsg()))
			expect(t, "client now", c, nil)
			expect(t, "client gets", b.server(cat(bindComplete, cmdComplete, bindComplete, cmdComplete, rfq), split),
				cat(bindComplete, cmdComplete, parseComplete, bindComplete, cmdComplete, rfq))

			// The client's next transaction lands on a backend that lacks
			// the statement: pgwrt parses it first and swallows the answer.
			be2 := &backend{}
			a.ps.begin(be2, 10)
			s, _ = a.client(cat(bind("s1"), execute(), syncMsg()))
			expect(t, "server gets", s, cat(parse("pgwrt_1", "SELECT 1"), bind("pgwrt_1"), execute(), syncMsg()))
			expect(t, "client gets", a.server(cat(parseComplete, bindComplete, cmdComplete, rfq), split), cat(bindComplete, cmdComplete, rfq))

			// Close is answered by pgwrt; the name is free again.
			s, c = a.client(cat(closeS("s1"), syncMsg()))
			expect(t, "server gets", s, syncMsg())
			expect(t, "client now", c, closeComplete)
			expect(t, "client gets", a.server(rfq, split), rfq)
			s, c = a.client(cat(parse("s1", "SELECT 2"), syncMsg()))
			expect(t, "server gets", s, cat(parse("pgwrt_2", "SELECT 2"), syncMsg()))
			expect(t, "client gets", a.server(cat(parseComplete, rfq), split), cat(parseComplete, rfq))

			// Re-Parse without Close: 42P05 where the server's answer
			// would be, and the server skips to Sync.
			s, _ = a.client(cat(parse("s1", "SELECT 3"), bind("s1"), execute(), syncMsg()))
			if !bytes.Contains(s, []byte(missingStmt)) || !bytes.HasSuffix(s, syncMsg()) {
				t.Fatalf("server gets %q", s)
			}
			got := a.server(cat(srvError, rfq), split)
			if !bytes.Contains(got, []byte("C42P05\x00")) || !bytes.Contains(got, []byte(`prepared statement "s1" already exists`)) || !bytes.HasSuffix(got, rfq) || bytes.Contains(got, []byte("syntax")) {
				t.Fatalf("client gets %q", got)
			}
			if !a.ps.be.settled() {
				t.Fatal("FIFO not empty")
			}

			// A Parse that fails, in a pipeline: the statement is not
			// prepared, the name not taken, nothing injected for the
			// skipped messages.
			s, _ = a.client(cat(parse("bad", "SELEC 1"), bind("bad"), execute(), parse("s3", "SELECT 1"), syncMsg()))
			expect(t, "server gets", s, cat(parse("pgwrt_3", "SELEC 1"), bind("pgwrt_3"), execute(), syncMsg()))
			expect(t, "client gets", a.server(cat(srvError, rfq), split), cat(srvError, rfq))
			if a.ps.names["bad"] != nil || a.ps.names["s3"] != nil || len(be2.stmts.lru) != 2 {
				t.Fatalf("after the error: names %v, %d statements on the backend", a.ps.names, len(be2.stmts.lru))
			}
			// Nobody names it: the registry forgot it, and the next
			// Parse of it is sent again, under a new name.
			s, _ = a.client(cat(parse("bad", "SELEC 1"), syncMsg()))
			expect(t, "server gets", s, cat(parse("pgwrt_4", "SELEC 1"), syncMsg()))
			a.server(cat(srvError, rfq), split)
			if !a.ps.be.settled() || reg.size() != 2 {
				t.Fatalf("settled %v, registry %d", a.ps.be.settled(), reg.size())
			}
		})
	}
}

// TestPreparedEviction: at most max statements per backend; the least
// recently used is closed, its CloseComplete swallowed.
func TestPreparedEviction(t *testing.T) {
	reg := &stmtRegistry{}
	be := &backend{}
	a := newPrepRig(reg, be, 2)
	for i := 1; i <= 2; i++ {
		s, _ := a.client(cat(parse(fmt.Sprint("s", i), fmt.Sprint("SELECT ", i)), syncMsg()))
		expect(t, "server gets", s, cat(parse(fmt.Sprint("pgwrt_", i), fmt.Sprint("SELECT ", i)), syncMsg()))
		a.server(cat(parseComplete, rfq), 1<<20)
	}
	a.client(cat(bind("s1"), execute(), syncMsg())) // s1 is now the most recent
	a.server(cat(bindComplete, cmdComplete, rfq), 1<<20)
	s, _ := a.client(cat(parse("s3", "SELECT 3"), syncMsg()))
	expect(t, "server gets", s, cat(closeS("pgwrt_2"), parse("pgwrt_3", "SELECT 3"), syncMsg()))
	expect(t, "client gets", a.server(cat(closeComplete, parseComplete, rfq), 2), cat(parseComplete, rfq))
	s, _ = a.client(cat(bind("s2"), execute(), syncMsg()))
	expect(t, "server gets", s, cat(closeS("pgwrt_1"), parse("pgwrt_2", "SELECT 2"), bind("pgwrt_2"), execute(), syncMsg()))
	expect(t, "client gets", a.server(cat(closeComplete, parseComplete, bindComplete, cmdComplete, rfq), 1<<20), cat(bindComplete, cmdComplete, rfq))
	if len(be.stmts.lru) != 2 || !a.ps.be.settled() {
		t.Fatalf("%d statements on the backend", len(be.stmts.lru))
	}
}

// TestPreparedUnknownAndPassthrough: a Bind of a name never prepared fails
// as PostgreSQL fails it; unnamed statements pass unchanged; a named Parse
// too long to hold passes under its own name and pins.
func TestPreparedUnknownAndPassthrough(t *testing.T) {
	reg := &stmtRegistry{}
	a := newPrepRig(reg, &backend{}, 10)
	s, _ := a.client(cat(bind("nope"), execute(), syncMsg()))
	expect(t, "server gets", s, cat(bind(missingStmt), execute(), syncMsg()))
	got := a.server(cat(srv('E', "SERROR\x00C26000\x00Mprepared statement \"pgwrt_no_such_statement\" does not exist\x00\x00"), rfq), 1<<20)
	if !bytes.Contains(got, []byte(`prepared statement "nope" does not exist`)) {
		t.Fatalf("client gets %q", got)
	}
	in := cat(parse("", "SELECT 1"), bind(""), describeS(""), execute(), closeS(""), syncMsg())
	s, _ = a.client(in)
	expect(t, "unnamed", s, in)
	a.server(cat(parseComplete, bindComplete, noData, cmdComplete, closeComplete, rfq), 1<<20)
	// Longer than the window is held whole (TestPreparedLongParseHeld);
	// longer than maxHeldParse passes under the client's name and pins.
	long := parse("big", "SELECT '"+strings.Repeat("x", maxHeldParse)+"'")
	s, _ = a.client(long[:100])
	expect(t, "a Parse too long to hold passes as it comes", s, long[:100])
	if a.t.pinned&effNamedParse == 0 || !a.ps.raw {
		t.Fatal("a named Parse too long to hold does not pin")
	}
	if !a.ps.be.settled() == true && a.ps.be.fn != 1 {
		t.Fatal("no FIFO entry for the long Parse")
	}
}

// TestPreparedBindAllocs: a Bind of a statement the backend has, its
// Execute and Sync, and their answers allocate nothing.
func TestPreparedBindAllocs(t *testing.T) {
	reg := &stmtRegistry{}
	a := newPrepRig(reg, &backend{}, 10)
	a.client(cat(parse("s1", "SELECT 1"), syncMsg()))
	a.server(cat(parseComplete, rfq), 1<<20)
	in := cat(bind("s1"), execute(), syncMsg())
	resp := cat(bindComplete, cmdComplete, rfq)
	stage := make([]byte, 0, 256)
	allocs := testing.AllocsPerRun(1000, func() {
		start := 0
		stage = stage[:0]
		for {
			k, act, m := a.t.scanClient(in[start:])
			stage = append(stage, in[start:start+k]...)
			start += k
			if act != cliRewrite {
				break
			}
			stage = append(stage, a.ps.rew...)
			a.ps.rew = a.ps.rew[:0]
			start += m
		}
		a.t.prepDrain()
		a.t.feedServer(resp)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Bind round trip", allocs)
	}
	expect(t, "server gets", stage, cat(bind("pgwrt_1"), execute(), syncMsg()))
}

func BenchmarkPreparedBind(b *testing.B) {
	reg := &stmtRegistry{}
	a := newPrepRig(reg, &backend{}, 10)
	a.client(cat(parse("s1", "SELECT 1"), syncMsg()))
	a.server(cat(parseComplete, rfq), 1<<20)
	in := cat(bind("s1"), execute(), syncMsg())
	resp := cat(bindComplete, cmdComplete, rfq)
	b.ReportAllocs()
	for b.Loop() {
		start := 0
		for {
			k, act, m := a.t.scanClient(in[start:])
			start += k
			if act != cliRewrite {
				break
			}
			a.ps.rew = a.ps.rew[:0]
			start += m
		}
		a.t.feedServer(resp)
	}
}

// A named Parse longer than the window arrives in pieces: it is gathered
// whole and goes out under pgwrt's name, the client stream not at a
// boundary meanwhile; a second client's Parse of the same text costs the
// server nothing. Unnamed long ones pass as they come.
func TestPreparedLongParseHeld(t *testing.T) {
	sql := "SELECT 1 -- " + strings.Repeat("y", 3000) // window 1000
	for _, piece := range []int{1, 7, 999, 1 << 20} {
		t.Run(fmt.Sprint("piece", piece), func(t *testing.T) {
			reg := &stmtRegistry{}
			be := &backend{}
			a := newPrepRig(reg, be, 10)
			in := cat(parse("long", sql), bind("long"), execute(), syncMsg())
			s := a.pieces(in, piece, func(read int) {
				if read >= 6 && read < len(parse("long", sql)) && a.t.client.atBoundary() {
					t.Fatalf("at a boundary with %d of the Parse's bytes read", read)
				}
			})
			expect(t, "server gets", s, cat(parse("pgwrt_1", sql), bind("pgwrt_1"), execute(), syncMsg()))
			if a.t.pinned != 0 || a.ps.raw {
				t.Errorf("pinned %v, raw %v", a.t.pinned, a.ps.raw)
			}
			resp := cat(parseComplete, bindComplete, cmdComplete, rfq)
			expect(t, "client gets", a.server(resp, 5), resp)

			b := newPrepRig(reg, be, 10)
			s, c := b.client(cat(parse("mine", sql), bind("mine"), execute(), syncMsg()))
			expect(t, "second client: server gets", s, cat(bind("pgwrt_1"), execute(), syncMsg()))
			expect(t, "second client now", c, parseComplete)

			u := newPrepRig(reg, be, 10)
			unnamed := cat(parse("", sql), bind(""), execute(), syncMsg())
			expect(t, "unnamed: server gets", u.pieces(unnamed, piece, nil), unnamed)
		})
	}
}

// pieces feeds in as it arrives, piece bytes at a time, bringing back what
// the tracker left unscanned as an engine does; after each piece it calls
// after (if any) with the bytes arrived so far. It returns what the
// server gets.
func (r *prepRig) pieces(in []byte, piece int, after func(read int)) []byte {
	var toServer, pending []byte
	for i := 0; i < len(in); i += piece {
		pending = append(pending, in[i:min(i+piece, len(in))]...)
		out, used := r.scan(pending)
		toServer = append(toServer, out...)
		pending = append(pending[:0], pending[used:]...)
		if after != nil {
			after(min(i+piece, len(in)))
		}
	}
	return toServer
}

// scan runs the tracker over in as the goroutine engine does: what the
// server gets, and how many bytes of in were used (the rest waits for
// more).
func (r *prepRig) scan(in []byte) (toServer []byte, used int) {
	for {
		k, act, m := r.t.scanClient(in[used:])
		toServer = append(toServer, in[used:used+k]...)
		used += k
		if act != cliRewrite {
			return toServer, used
		}
		toServer = append(toServer, r.ps.rew...)
		r.ps.rew = r.ps.rew[:0]
		used += m
	}
}
