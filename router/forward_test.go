package router

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"pgwrt/config"
	"pgwrt/router/wire"
)

// pipeSession wires a session between two connection pairs: the test plays
// the client on one and the server on the other. With net.Pipe the session
// forwards with goroutines; with TCP loopback pairs (loop set) it forwards
// on an event loop where the platform has one.
type pipeSession struct {
	s          *session
	be         *backend
	client     net.Conn // test side of the client connection
	server     net.Conn // test side of the backend connection
	clientSide net.Conn
	serverSide net.Conn
	mode       string
}

// forwardModes are the ways a session forwards: copier goroutines (over
// net.Pipe), the epoll event loop and the io_uring loop (over loopback
// TCP). "tcp", copier goroutines over loopback TCP, is there to compare
// them in benchmarks.
var forwardModes = []string{"goroutines", "loop", "uring"}

func newPipeSession(t testing.TB, bufSize int) *pipeSession {
	return newForwardSession(t, bufSize, "goroutines")
}

func newForwardSession(t testing.TB, bufSize int, mode string) *pipeSession {
	cfg := config.Default()
	cfg.Backends = []config.Backend{{Name: "n1", Host: "127.0.0.1", Port: 1}}
	r := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.topo.Store(&Topology{Primary: 0, Nodes: []NodeState{{Name: "n1", Host: "127.0.0.1", Port: 1, Up: true, Role: RolePrimary}}, changed: make(chan struct{})})
	switch mode {
	case "loop":
		r.ev.engine = EngineEpoll
	case "uring":
		if err := uringUsable(); err != nil {
			t.Skip("io_uring unavailable:", err)
		}
		r.ev.engine = EngineIOUring
	}
	var cl, cs, sv, ss net.Conn
	if mode != "goroutines" {
		cl, cs = tcpPair(t)
		sv, ss = tcpPair(t)
	} else {
		cl, cs = net.Pipe()
		sv, ss = net.Pipe()
	}
	r.bufs = newBufs(1, bufSize)
	s := &session{r: r, conn: cs, slot: &slot{}, atBoundary: true}
	be := &backend{conn: ss, node: "n1", params: map[string]string{}}
	return &pipeSession{s: s, be: be, client: cl, server: sv, clientSide: cs, serverSide: ss, mode: mode}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-acc
	if b == nil {
		t.Fatal("accept failed")
	}
	return a, b
}

// forward runs the session's forwarding phase in the pipeSession's mode.
func (p *pipeSession) forward() (bool, byte) {
	l := newLink(p.s, p.be)
	if p.mode == "loop" || p.mode == "uring" {
		e := p.s.r.ev.pick(p.s.r)
		if e != nil {
			want := map[string]string{"loop": EngineEpoll, "uring": EngineIOUring}[p.mode]
			if got := e.name(); got != want {
				panic("forwarded with " + got + ", not " + want)
			}
			if ok, handled := e.forward(l); handled {
				return ok, l.t.status()
			}
		}
		if runtime.GOOS == "linux" {
			panic("no loop took a TCP session on Linux")
		}
	}
	ok, _ := goroutineEngine{}.forward(l)
	return ok, l.t.status()
}

// answer plays a server that answers every req with resp, until its
// connection closes.
func (p *pipeSession) answer(t testing.TB, req, resp []byte) {
	buf := make([]byte, len(req))
	for {
		if _, err := io.ReadFull(p.server, buf); err != nil {
			return
		}
		if !bytes.Equal(buf, req) {
			t.Error("server got a different query")
			return
		}
		if _, err := p.server.Write(resp); err != nil {
			return
		}
	}
}

// forwardResult is what forward returned.
type forwardResult struct {
	ok     bool
	status byte
}

// start runs forward on its own goroutine; its result arrives on the
// channel.
func (p *pipeSession) start() <-chan forwardResult {
	done := make(chan forwardResult, 1)
	go func() {
		ok, st := p.forward()
		done <- forwardResult{ok, st}
	}()
	return done
}

// close closes the test's ends and stops the router's loops.
func (p *pipeSession) close() {
	for _, c := range []net.Conn{p.client, p.server, p.clientSide, p.serverSide} {
		c.Close()
	}
}

// stopLoops stops the router's loops once forwarding has ended, and closes
// the conn a reusable backend was given back on.
// endedUnreusable waits (bounded) for a forwarding started by start to
// end, and fails the test if it does not, or if it judged its backend
// reusable; why names what ended it.
func endedUnreusable(t *testing.T, done <-chan forwardResult, why string) {
	t.Helper()
	select {
	case r := <-done:
		if r.ok {
			t.Errorf("backend judged reusable after %s", why)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("session still forwarding after %s", why)
	}
}

func (p *pipeSession) stopLoops() {
	if p.be.conn != p.serverSide {
		p.be.conn.Close()
	}
	p.s.r.ev.close()
}

func msg(typ byte, body string) []byte {
	b, s := wire.Begin(nil, typ)
	b = append(b, body...)
	return wire.Finish(b, s)
}

// writeChunks writes p in pieces of the given sizes (cycled), to exercise
// headers and bodies split across reads.
func writeChunks(w io.Writer, p []byte, sizes []int) error {
	for i := 0; len(p) > 0; i++ {
		n := len(p)
		if len(sizes) > 0 {
			n = sizes[i%len(sizes)]
			if n <= 0 {
				n = 1
			}
			if n > len(p) {
				n = len(p)
			}
		}
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines leaked: %d > %d\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestForwardSplitAndTerminate sends a stream byte by byte both ways: it
// must arrive unchanged, Terminate must not reach the server, and the
// backend must be judged reusable.
func TestForwardSplitAndTerminate(t *testing.T) {
	for _, mode := range forwardModes {
		t.Run(mode, func(t *testing.T) { testForwardSplitAndTerminate(t, mode) })
	}
}

func testForwardSplitAndTerminate(t *testing.T, mode string) {
	before := runtime.NumGoroutine()
	for _, sizes := range [][]int{nil, {1}, {2, 3}, {5}, {7, 1, 4096}} {
		p := newForwardSession(t, 1024, mode)
		fromClient := bytes.Join([][]byte{msg('Q', "SELECT 1\x00"), msg('P', "\x00SELECT $1\x00\x00\x00"), msg('S', ""), msg('d', string(bytes.Repeat([]byte("x"), 3000)))}, nil)
		// The answers to the Query and to the Parse/Sync batch.
		fromServer := bytes.Join([][]byte{msg('T', "\x00\x00"), msg('D', string(bytes.Repeat([]byte("y"), 5000))), msg('C', "SELECT 1\x00"), msg('Z', "I"), msg('1', ""), msg('Z', "I")}, nil)
		done := p.start()
		gotServer := make(chan []byte, 1)
		go func() {
			b := make([]byte, len(fromClient))
			_, err := io.ReadFull(p.server, b)
			if err != nil {
				t.Error(err)
			}
			gotServer <- b
		}()
		go writeChunks(p.client, fromClient, sizes)
		if got := <-gotServer; !bytes.Equal(got, fromClient) {
			t.Fatalf("server got a different stream (sizes %v)", sizes)
		}
		gotClient := make(chan []byte, 1)
		go func() {
			b := make([]byte, len(fromServer))
			io.ReadFull(p.client, b)
			gotClient <- b
		}()
		writeChunks(p.server, fromServer, sizes)
		if got := <-gotClient; !bytes.Equal(got, fromServer) {
			t.Fatalf("client got a different stream (sizes %v)", sizes)
		}
		// Terminate, split too: must stop forwarding and not reach the server.
		p.server.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		go writeChunks(p.client, wire.AppendTerminate(nil), sizes)
		res := <-done
		if !res.ok || res.status != 'I' {
			t.Fatalf("sizes %v: reusable=%v status=%q", sizes, res.ok, res.status)
		}
		var b [1]byte
		if n, _ := p.server.Read(b[:]); n != 0 {
			t.Fatalf("Terminate reached the server")
		}
		p.close()
		p.stopLoops()
	}
	checkNoLeak(t, before)
}

// TestForwardServerGone: the server side closes mid-session; the client
// gets 08006 and the session ends, not reusable.
func TestForwardServerGone(t *testing.T) {
	for _, mode := range forwardModes {
		t.Run(mode, func(t *testing.T) { testForwardServerGone(t, mode) })
	}
}

func testForwardServerGone(t *testing.T, mode string) {
	before := runtime.NumGoroutine()
	p := newForwardSession(t, 1024, mode)
	done := p.start()
	p.server.Close()
	p.client.SetReadDeadline(time.Now().Add(2 * time.Second))
	rd := wire.Reader{R: p.client}
	m, err := rd.Read()
	if err != nil || m.Type != 'E' || wire.ParseError(m.Body).Code != "08006" {
		t.Fatalf("got %q %v", m.Type, err)
	}
	if (<-done).ok {
		t.Fatal("dead backend judged reusable")
	}
	p.close()
	p.stopLoops()
	checkNoLeak(t, before)
}

// TestForwardMidMessageNotReusable: a client leaving while a response is
// being sent leaves the backend unusable.
func TestForwardMidMessageNotReusable(t *testing.T) {
	for _, mode := range forwardModes {
		t.Run(mode, func(t *testing.T) { testForwardMidMessageNotReusable(t, mode) })
	}
}

func testForwardMidMessageNotReusable(t *testing.T, mode string) {
	p := newForwardSession(t, 1024, mode)
	defer p.stopLoops()
	done := p.start()
	go io.Copy(io.Discard, p.server)
	go io.Copy(io.Discard, p.client)
	p.client.Write(msg('Q', "SELECT 1\x00"))
	p.server.Write(msg('D', "partial")[:6]) // half a message
	time.Sleep(20 * time.Millisecond)
	p.client.Close()
	if (<-done).ok {
		t.Fatal("backend in the middle of a message judged reusable")
	}
	p.close()
}

func TestShowPoolNodesIntercept(t *testing.T) {
	for _, mode := range forwardModes {
		t.Run(mode, func(t *testing.T) { testShowPoolNodesIntercept(t, mode) })
	}
}

func testShowPoolNodesIntercept(t *testing.T, mode string) {
	p := newForwardSession(t, 1024, mode)
	done := p.start()
	defer func() {
		p.close()
		<-done
		p.stopLoops()
	}()
	writeChunks(p.client, msg('Q', " show  Pool_Nodes ;\x00"), []int{3})
	p.client.SetReadDeadline(time.Now().Add(2 * time.Second))
	rd := wire.Reader{R: p.client}
	var types []byte
	for {
		m, err := rd.Read()
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, m.Type)
		if m.Type == 'Z' {
			break
		}
	}
	if string(types) != "TDCZ" {
		t.Fatalf("message types %q", types)
	}
}

// FuzzForward checks that any split of a valid stream reaches the server
// unchanged.
func FuzzForward(f *testing.F) {
	f.Add([]byte{1, 2, 3}, 10)
	f.Add([]byte{5}, 3)
	f.Fuzz(func(t *testing.T, sizes []byte, nmsg int) {
		if nmsg < 0 {
			nmsg = -nmsg
		}
		nmsg = nmsg%20 + 1
		var stream []byte
		for i := 0; i < nmsg; i++ {
			stream = append(stream, msg("QPBEdS"[i%6], string(bytes.Repeat([]byte{byte(i)}, i*37%300)))...)
		}
		sz := make([]int, len(sizes))
		for i, s := range sizes {
			sz[i] = int(s)
		}
		for _, mode := range forwardModes {
			p := newForwardSession(t, 1024, mode)
			done := p.start()
			go writeChunks(p.client, stream, sz)
			got := make([]byte, len(stream))
			p.server.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.ReadFull(p.server, got)
			p.close()
			<-done
			p.stopLoops()
			if err != nil {
				t.Fatal(mode, err)
			}
			if !bytes.Equal(got, stream) {
				t.Fatal(mode, "stream changed")
			}
		}
	})
}

// BenchmarkForwardServerToClient measures the server → client copier on a
// typical small query response; it must not allocate per message.
func BenchmarkForwardServerToClient(b *testing.B) {
	p := newPipeSession(b, 8192)
	resp := bytes.Join([][]byte{msg('T', string(make([]byte, 30))), msg('D', string(make([]byte, 40))), msg('C', "SELECT 1\x00"), msg('Z', "I")}, nil)
	sc := &serverCopier{l: newLink(p.s, p.be)}
	go sc.run()
	go func() {
		buf := make([]byte, 8192)
		for {
			if _, err := p.client.Read(buf); err != nil {
				return
			}
		}
	}()
	b.SetBytes(int64(len(resp)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.server.Write(resp); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	p.server.Close()
	p.client.Close()
}

// BenchmarkForwardClientToServer measures the client → server copier on
// Bind/Execute/Sync.
func BenchmarkForwardClientToServer(b *testing.B) {
	p := newPipeSession(b, 8192)
	req := bytes.Join([][]byte{msg('B', string(make([]byte, 24))), msg('E', "\x00\x00\x00\x00\x00"), msg('S', "")}, nil)
	cc := &clientCopier{l: newLink(p.s, p.be)}
	go cc.run()
	go func() {
		buf := make([]byte, 8192)
		for {
			if _, err := p.server.Read(buf); err != nil {
				return
			}
		}
	}()
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := p.client.Write(req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	p.server.Close()
	p.client.Close()
}

func TestIsFatal(t *testing.T) {
	fatal := wire.AppendError(nil, &wire.Error{Severity: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"})
	plain := wire.AppendError(nil, &wire.Error{Severity: "ERROR", Code: "42P01", Message: "no such table"})
	if !isFatal(fatal[5:]) {
		t.Error("FATAL not recognised")
	}
	if isFatal(plain[5:]) || isFatal([]byte("SFATA")) || isFatal(nil) {
		t.Error("non-FATAL recognised")
	}
	for code, want := range map[string]bool{"57P01": true, "57P02": true, "57P03": true, "57P05": false, "25P03": false, "08P01": false} {
		b := wire.AppendError(nil, &wire.Error{Severity: "FATAL", Code: code, Message: "m"})
		if got := nodeGoingAway(b[5:]); got != want {
			t.Errorf("%s: nodeGoingAway = %v", code, got)
		}
	}
	if nodeGoingAway(plain[5:]) {
		t.Error("ERROR counted")
	}
	if n := testing.AllocsPerRun(100, func() { nodeGoingAway(fatal[5:]) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestShowPoolNodesMatchAllocs(t *testing.T) {
	q := []byte("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;\x00")
	if n := testing.AllocsPerRun(100, func() { isShowPoolNodes(q) }); n != 0 {
		t.Fatalf("%v allocations per short query", n)
	}
	for _, ok := range []string{"SHOW POOL_NODES\x00", "show pool_nodes;\x00", " \tSHOW\n pool_nodes \x00", "show pool_nodes ; \x00"} {
		if !isShowPoolNodes([]byte(ok)) {
			t.Errorf("%q not matched", ok)
		}
	}
	for _, no := range []string{"SHOWpool_nodes\x00", "show pool_nodes;;\x00", "show pool_nodes x\x00", "show\x00",
		"SHOW POOL_NODESX\x00", "SELECT 1\x00", "SHOW pool_nodes", "SHOW POOL NODES\x00"} {
		if isShowPoolNodes([]byte(no)) {
			t.Errorf("%q matched", no)
		}
	}
}

// BenchmarkForwardRoundTrip sends a query and its answer through a session
// over loopback TCP, the test playing client and server: the per-query
// cost of copier goroutines ("tcp") and of the event loop ("loop"). Neither
// may allocate per query. One ping-pong at a time measures latency, not the
// batching an event loop gains under many sessions (see make bench).
func BenchmarkForwardRoundTrip(b *testing.B) {
	req := msg('Q', "SELECT 1\x00")
	resp := bytes.Join([][]byte{msg('T', string(make([]byte, 30))), msg('D', string(make([]byte, 40))), msg('C', "SELECT 1\x00"), msg('Z', "I")}, nil)
	for _, mode := range []string{"tcp", "loop", "uring"} {
		b.Run(mode, func(b *testing.B) {
			p := newForwardSession(b, 8192, mode)
			done := p.start()
			go p.answer(b, req, resp)
			got := make([]byte, len(resp))
			b.SetBytes(int64(len(req) + len(resp)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.client.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(p.client, got); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			p.close()
			<-done
			p.stopLoops()
		})
	}
}

// TestForwardBackpressure: a client that reads slowly while the server
// sends far more than the socket buffers hold gets every byte, in order.
func TestForwardBackpressure(t *testing.T) {
	for _, mode := range forwardModes {
		t.Run(mode, func(t *testing.T) {
			p := newForwardSession(t, 1024, mode)
			done := p.start()
			var stream []byte
			for i := 0; len(stream) < 4<<20; i++ {
				stream = append(stream, msg('D', string(bytes.Repeat([]byte{byte(i)}, 1000+i%3000)))...)
			}
			stream = append(stream, msg('Z', "I")...)
			go writeChunks(p.server, stream, []int{70000, 3, 9000})
			got := make([]byte, 0, len(stream))
			buf := make([]byte, 4096)
			p.client.SetReadDeadline(time.Now().Add(30 * time.Second))
			for len(got) < len(stream) {
				n, err := p.client.Read(buf)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, buf[:n]...)
				if len(got)%(256<<10) < n {
					time.Sleep(5 * time.Millisecond) // read slowly now and then
				}
			}
			if !bytes.Equal(got, stream) {
				t.Fatal("client got a different stream")
			}
			p.client.Write(wire.AppendTerminate(nil))
			if !(<-done).ok {
				t.Fatal("backend at ReadyForQuery judged not reusable")
			}
			p.close()
			p.stopLoops()
		})
	}
}

// TestForwardKill: a session killed while forwarding (primary moved) gives
// its client the error, at a message boundary, and its backend up.
func TestForwardKill(t *testing.T) {
	for _, mode := range forwardModes {
		t.Run(mode, func(t *testing.T) {
			p := newForwardSession(t, 1024, mode)
			done := p.start()
			go io.Copy(io.Discard, p.server)
			// Let forwarding start before the kill, as in life.
			p.client.Write(msg('Q', "SELECT 1\x00"))
			time.Sleep(50 * time.Millisecond)
			// (net.Pipe writes wait for the reader: kill from the side.)
			go p.s.kill(errorf(codePrimaryMoved, "pgwrt: primary moved from a to b; reconnect"))
			p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
			rd := wire.Reader{R: p.client}
			m, err := rd.Read()
			if err != nil || m.Type != 'E' || wire.ParseError(m.Body).Code != "57P01" {
				t.Fatalf("got %q %v", m.Type, err)
			}
			if (<-done).ok {
				t.Fatal("killed session's backend judged reusable")
			}
			p.close()
			p.stopLoops()
		})
	}
}

// TestForwardKillStuckClient: a session killed while its client reads
// nothing (the send to it is stuck on a full socket) still ends promptly:
// the loop gives up on the client instead of waiting for it.
func TestForwardKillStuckClient(t *testing.T) {
	for _, mode := range []string{"loop", "uring"} {
		t.Run(mode, func(t *testing.T) {
			p := newForwardSession(t, 1024, mode)
			done := p.start()
			p.client.Write(msg('Q', "SELECT 1\x00"))
			// The server answers with far more than the socket buffers
			// hold; the client never reads.
			row := msg('D', string(make([]byte, 60000)))
			go func() {
				for i := 0; i < 1000; i++ {
					if _, err := p.server.Write(row); err != nil {
						return
					}
				}
			}()
			time.Sleep(200 * time.Millisecond)
			p.s.kill(errorf(codePrimaryMoved, "pgwrt: primary moved from a to b; reconnect"))
			endedUnreusable(t, done, "a kill, with a client that reads nothing")
			p.close()
			p.stopLoops()
		})
	}
}
