//go:build linux

package router

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"pgwrt/router/wire"
)

// The forwarding phase of a session runs on an event loop: one goroutine
// per loop, locked to its thread, moves the bytes of many links, on an
// io_uring ring (uring_linux.go) or waiting in epoll_wait (epoll_linux.go).
// Go's netpoller would cost two more system calls per query (an eager read
// that finds nothing before each wait, on both sockets); on a small router,
// and on virtual machines where a kernel entry is dear, that is a quarter
// of the forwarding cost. Login, authentication, holding, reset and health
// checks stay on goroutines; only the byte pumping is here.
//
// A link enters the loop with copies of its two descriptors (dup), and
// its net.Conns are closed, which takes the sockets out of Go's netpoller
// (otherwise every packet would also wake it). When the link ends, the
// backend descriptor becomes a net.Conn again if it is to be reused.
//
// This file holds what both loops share: the set of loops, the pipe (a
// link's place in its buffers) and how client and server bytes are
// scanned and passed. Each loop supplies the I/O (fwdLoop).

// evloops is the router's set of event loops, started on first use.
type evloops struct {
	engine string // EngineAuto ("" too), EngineIOUring, EngineEpoll or EngineGoroutines
	once   sync.Once
	loops  []fwdLoop
	next   atomic.Uint32
}

// fwdLoop is an event loop that forwards pipes: epoll (evloop) or io_uring
// (urloop). The pipe methods run on the loop goroutine.
type fwdLoop interface {
	engine
	post(func()) bool // runs f on the loop; false once the loop is gone
	add(*pipe)        // start forwarding p
	close()
	failed() bool
	timeSlice() time.Duration // the slice the loop thread asks for while busy; 0: always the kernel's default

	// sendBackend passes cbuf[cw:cpos] on; true when all of it went now
	// (else the loop comes back to pumpClient when it has).
	sendBackend(p *pipe) bool
	// sendClient passes sbuf[sw:sr], then extra, on; true when all of it
	// went now (then sw, sr and extra are reset; else the loop comes back
	// to pumpClient when it has).
	sendClient(p *pipe) bool
	// receiving: a receive into cbuf is in flight, so its bytes stay put.
	receiving(p *pipe) bool
	// stop ends p's I/O; true when nothing is in flight, else the loop
	// settles p when the last of it completes.
	stop(p *pipe) bool
	// settled forgets p: it has ended with nothing in flight.
	settled(p *pipe)
	// prepare readies the duplicated descriptors for the loop, and
	// handback for Go again once the loop has let go of them.
	prepare(cfd, bfd int)
	handback(p *pipe)
}

// loopCount is how many event loops forward: one per two CPUs. One loop
// batches the most events per epoll_wait; a second helps only where
// pgwrt itself, not PostgreSQL, is short of a core.
func loopCount() int {
	n := runtime.GOMAXPROCS(0) / 2
	if n < 1 {
		n = 1
	}
	if n > 4 {
		n = 4
	}
	return n
}

// cpusPerLoop is how many CPUs each loop has to itself, for its slice
// governor's thresholds.
func cpusPerLoop() int {
	n := runtime.GOMAXPROCS(0) / loopCount()
	if n < 1 {
		n = 1
	}
	return n
}

// pick returns a loop for a new link, or nil when none can run (then the
// link forwards with goroutines).
func (e *evloops) pick(r *Router) engine {
	e.once.Do(func() { e.loops = e.start(r) })
	if len(e.loops) == 0 {
		return nil
	}
	l := e.loops[int(e.next.Add(1))%len(e.loops)]
	if l.failed() {
		return nil
	}
	return l
}

func (e *evloops) start(r *Router) []fwdLoop {
	var loops []fwdLoop
	n := loopCount()
	switch e.engine {
	case EngineGoroutines:
		return nil
	case EngineAuto, "", EngineIOUring:
		for i := 0; i < n; i++ {
			l, err := newUrloop()
			if err != nil {
				lvl := slog.LevelInfo
				if e.engine == EngineIOUring {
					lvl = slog.LevelWarn
				}
				r.log.Log(context.Background(), lvl, "io_uring unavailable; forwarding with epoll", "error", err)
				for _, l := range loops {
					l.close()
				}
				loops = nil
				break
			}
			loops = append(loops, l)
		}
		if loops != nil {
			r.log.Info("forwarding with io_uring", "loops", n, "slice", sliceText(loops[0]))
			return loops
		}
	}
	for i := 0; i < n; i++ {
		l, err := newEvloop()
		if err != nil {
			r.log.Warn("event loop unavailable; forwarding with goroutines", "error", err)
			break
		}
		loops = append(loops, l)
	}
	if loops != nil {
		r.log.Info("forwarding with epoll", "loops", len(loops), "slice", sliceText(loops[0]))
	}
	return loops
}

func sliceText(l fwdLoop) string {
	if d := l.timeSlice(); d > 0 {
		return fmt.Sprintf("%v above %d busy sessions", d, loopSliceOn*cpusPerLoop())
	}
	return "default"
}

// engineName says which engine the loops are (tests check it).
func (e *evloops) engineName() string {
	if len(e.loops) == 0 {
		return EngineGoroutines
	}
	return e.loops[0].name()
}

// close stops the loops; every link must have left them.
func (e *evloops) close() {
	e.once.Do(func() {}) // none may start after this
	for _, l := range e.loops {
		l.close()
	}
	e.loops = nil
}

// poster queues functions for a loop goroutine and wakes it through an
// eventfd.
type poster struct {
	efd    int
	mu     sync.Mutex
	posted []func()
	closed bool
}

// post queues f to run on the loop; false once the loop has gone.
func (q *poster) post(f func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return false
	}
	q.posted = append(q.posted, f)
	if len(q.posted) == 1 {
		// Under the lock: once take(…, true) has returned, the loop
		// closes efd, and its number may then be anyone's.
		var one [8]byte
		binary.NativeEndian.PutUint64(one[:], 1)
		unix.Write(q.efd, one[:])
	}
	return true
}

// runPosted, on the loop after its eventfd woke it, runs what was
// posted; buf is the slice the last call returned.
func (q *poster) runPosted(buf []func()) []func() {
	var b [8]byte
	unix.Read(q.efd, b[:])
	posted := q.take(buf, false)
	for i, f := range posted {
		f()
		posted[i] = nil
	}
	return posted
}

// take swaps out what was posted, giving buf (emptied) for the next
// posts; with last, nothing more can be posted.
func (q *poster) take(buf []func(), last bool) []func() {
	q.mu.Lock()
	defer q.mu.Unlock()
	got := q.posted
	q.posted = buf[:0]
	q.closed = q.closed || last
	return got
}

// pipe is a link's state on a loop: where its bytes stand in the link's
// buffers. Every field is owned by the loop goroutine until done is
// closed, then by the session.
type pipe struct {
	*link
	loop     fwdLoop
	cfd, bfd int

	// client → backend: cbuf[cw:cpos] is scanned and still to be written,
	// cbuf[cpos:cn] is read but not yet scanned.
	cw, cpos, cn  int
	sw, sr        int    // sbuf[sw:sr] is still to be written to the client
	extra         []byte // pgwrt's own answer (SHOW POOL_NODES), after sbuf
	ended         bool
	lost          bool // backend bytes arrived after the end: not reusable
	clientAtBound bool // the client stream ends on a message boundary
	done          chan struct{}
	busyWin       uint32 // the loop's slice window in which the client last sent

	ep epollState // the epoll loop's books
	ur ringState  // the io_uring loop's books
}

// survive, deferred around a pipe's handling of an event, turns a panic
// there (a bug) into the end of that link, as serveConn's recover does
// for a session goroutine, instead of every link on the loop and the
// process with them.
func (p *pipe) survive() {
	if v := recover(); v != nil {
		p.s.r.log.Error("panic forwarding", "user", p.s.user, "panic", v)
		p.end(endLoopFailed, fmt.Errorf("panic: %v", v))
	}
}

// clientData takes n more client bytes, read into cbuf[cn:].
func (p *pipe) clientData(n int) {
	p.cn += n
	p.pumpClient()
}

// pumpClient writes scanned client bytes to the backend and scans on, until
// the input is used up or the backend cannot take more.
func (p *pipe) pumpClient() {
	for !p.ended {
		if p.cw < p.cpos {
			if !p.loop.sendBackend(p) {
				return // the loop comes back when the backend took it
			}
			continue
		}
		if len(p.extra) > 0 {
			return // our answer must reach the client first
		}
		if p.cpos > 0 && !p.loop.receiving(p) {
			// Move the unscanned tail (a part header or part query) to
			// the front so the next read has room.
			p.cn = copy(p.cbuf, p.cbuf[p.cpos:p.cn])
			p.cw, p.cpos = 0, 0
		}
		n, act, m := p.t.scanClient(p.cbuf[p.cpos:p.cn])
		p.cpos += n
		if act != cliMore && act != cliMalformed && p.cw < p.cpos {
			continue // write what passed first; the scan finds the stop again
		}
		switch act {
		case cliMore:
			if p.cw == p.cpos {
				return
			}
		case cliTerminate:
			p.cpos += m
			p.cw = p.cpos
			p.end(endTerminate, nil)
			return
		case cliIntercept:
			p.cpos += m
			p.cw = p.cpos
			p.extra = p.s.r.poolNodesReply(p.t.status())
			p.loop.sendClient(p)
		case cliMalformed:
			p.end(endClientMalformed, errMalformedClient)
			return
		}
	}
}

// serverData passes on n bytes the backend sent, read into sbuf.
func (p *pipe) serverData(n int) {
	p.sw, p.sr = 0, n
	ev, err := p.t.feedServer(p.sbuf[:n])
	p.serverEvents(ev)
	if err != nil {
		p.end(endServerMalformed, err)
		return
	}
	p.loop.sendClient(p)
}

// end stops forwarding and hands the pipe back to its session.
func (p *pipe) end(reason endReason, err error) {
	if p.ended {
		return
	}
	p.ended = true
	p.setEnd(reason, err)
	if p.loop.stop(p) {
		p.settle()
	}
}

// settle hands an ended pipe, with nothing in flight, back to its session.
func (p *pipe) settle() {
	p.loop.settled(p)
	p.clientAtBound = p.sw == p.sr && len(p.extra) == 0 && p.t.server.atBoundary()
	close(p.done)
}

// dupConn returns a new descriptor for c's socket. The descriptor is
// non-blocking.
func dupConn(c net.Conn) (int, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, false
	}
	if _, ok := c.(*net.TCPConn); !ok {
		if _, ok := c.(*net.UnixConn); !ok {
			return -1, false
		}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, false
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil || derr != nil {
		return -1, false
	}
	return nfd, true
}

// forwardOn runs l on loop lp; the fwdLoops' forward. It reports false in
// handled when it could not (a connection without a descriptor); nothing
// has been touched then.
func forwardOn(lp fwdLoop, l *link) (reusable, handled bool) {
	s, be := l.s, l.be
	if l.txn {
		// Not yet: a transaction-mode link forwards with goroutines.
		return false, false
	}
	cfd, ok := dupConn(s.conn)
	if !ok {
		return false, false
	}
	bfd, ok := dupConn(be.conn)
	if !ok {
		unix.Close(cfd)
		return false, false
	}
	// From here the sockets live in cfd and bfd.
	s.conn.Close()
	be.conn.Close()
	lp.prepare(cfd, bfd)
	p := &pipe{link: l, loop: lp, cfd: cfd, bfd: bfd, done: make(chan struct{})}
	l.stop = func(err error) bool {
		return lp.post(func() {
			if !p.ended {
				p.end(endKilled, err)
			}
		})
	}

	s.mu.Lock()
	select {
	case <-s.r.stopping:
		// Close has ended or is ending the sessions it knows; one that
		// got this far after that must not start forwarding.
		if !s.killed.Swap(true) {
			s.killErr = errorf(codeShutdown, "pgwrt is shutting down")
		}
	default:
	}
	if s.killed.Load() {
		kerr := s.killErr
		s.mu.Unlock()
		if kerr != nil {
			writeRaw(cfd, wire.AppendError(nil, toWire(kerr)), time.Second)
		}
		unix.Close(cfd)
		unix.Close(bfd)
		return false, true
	}
	s.link = l
	if !lp.post(func() { lp.add(p) }) {
		// The loop died since pick (it cannot, short of a kernel fault).
		s.link = nil
		s.mu.Unlock()
		p.ended = true
		p.setEnd(endLoopFailed, errors.New("event loop gone"))
		p.clientAtBound = true
		return p.finish(), true
	}
	s.mu.Unlock()

	<-p.done
	s.mu.Lock()
	s.link = nil
	s.mu.Unlock()
	return p.finish(), true
}

// finish runs on the session goroutine once the loop let go of p: it tells
// the client what it must hear, closes the client socket, and either gives
// the backend socket back to be as a net.Conn (reusable) or closes it.
func (p *pipe) finish() bool {
	s, be := p.s, p.be
	s.r.log.Debug("forwarding ended", "user", s.user, "reason", p.why.String(), "error", p.err)
	p.loop.handback(p)
	clean := !p.lost && p.cw == p.cpos && (p.why == endTerminate || p.cpos == p.cn)
	msg, reusable := p.outcome(clean)
	if msg != nil && p.clientAtBound {
		writeRaw(p.cfd, wire.AppendError(nil, toWire(msg)), time.Second)
	}
	unix.Close(p.cfd)
	if reusable {
		f := os.NewFile(uintptr(p.bfd), "backend")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return false
		}
		s.mu.Lock() // kill reads be.conn under s.mu
		be.conn = c
		s.mu.Unlock()
		return true
	}
	if p.t.client.atBoundary() && p.cw == p.cpos && p.cpos == p.cn {
		unix.Write(p.bfd, wire.AppendTerminate(nil)) // best effort, never blocks
	}
	unix.Close(p.bfd)
	return false
}

// writeRaw writes p to a non-blocking descriptor, waiting at most timeout.
func writeRaw(fd int, p []byte, timeout time.Duration) {
	until := time.Now().Add(timeout)
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if n > 0 {
			p = p[n:]
			continue
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return
		}
		left := time.Until(until)
		if left <= 0 {
			return
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		unix.Poll(pfd, int(left/time.Millisecond)+1)
	}
}
