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
// per loop waits in epoll_wait on the sockets of many sessions (level
// triggered), reads what is ready, frames it and writes it to the peer.
// Go's netpoller would cost two more system calls per query (an eager read
// that finds nothing before each wait, on both sockets); on a small router,
// and on virtual machines where a kernel entry is dear, that is a quarter
// of the forwarding cost. Login, authentication, holding, reset and health
// checks stay on goroutines; only the byte pumping is here.
//
// A session enters the loop with copies of its two descriptors (dup), and
// its net.Conns are closed, which takes the sockets out of Go's netpoller
// (otherwise every packet would also wake it). When the session ends, the
// backend descriptor becomes a net.Conn again if it is to be reused.

// evloops is the router's set of event loops, started on first use.
type evloops struct {
	engine string // EngineAuto ("" too), EngineIOUring, EngineEpoll or EngineGoroutines
	once   sync.Once
	loops  []fwdLoop
	next   atomic.Uint32
}

// fwdLoop is an event loop that forwards pipes: epoll (evloop) or io_uring
// (urloop).
type fwdLoop interface {
	post(func()) bool // runs f on the loop; false once the loop is gone
	add(*pipe)        // on the loop: start forwarding p
	close()
	failed() bool
	timeSlice() time.Duration // the slice the loop thread asks for while busy; 0: always the kernel's default
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

// pick returns a loop for a new session, or nil when none can run (then
// the session forwards with goroutines).
func (e *evloops) pick(r *Router) fwdLoop {
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
	if _, ok := e.loops[0].(*urloop); ok {
		return EngineIOUring
	}
	return EngineEpoll
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

// close stops the loops; every session must have left them.
func (e *evloops) close() {
	e.once.Do(func() {}) // none may start after this
	for _, l := range e.loops {
		l.close()
	}
	e.loops = nil
}

type evloop struct {
	poster // wakes the loop for posted work
	epfd   int

	// owned by the loop goroutine
	fds  []*pipe // session by descriptor
	stop bool

	dead     atomic.Bool // the loop has exited
	finished chan struct{}
	gov      sliceGovernor // usable is set before the loop is handed out; the rest is the loop's
}

func newEvloop() (*evloop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	l := &evloop{epfd: epfd, finished: make(chan struct{})}
	l.efd = efd
	ready := make(chan struct{})
	go l.run(ready)
	<-ready
	return l, nil
}

func (l *evloop) failed() bool { return l.dead.Load() }

func (l *evloop) timeSlice() time.Duration { return l.gov.slice() }

func (l *evloop) close() {
	l.post(func() { l.stop = true })
	<-l.finished
}

func (l *evloop) run(ready chan<- struct{}) {
	// The thread keeps the slice its governor asks for, so it is the
	// loop's alone and exits with it.
	runtime.LockOSThread()
	lastYield := time.Now()
	l.gov.start(cpusPerLoop(), lastYield)
	close(ready)
	defer close(l.finished)
	defer l.dead.Store(true)
	events := make([]unix.EpollEvent, 128)
	var posted []func()
	for !l.stop {
		// Yield every few milliseconds. A goroutine that never
		// reschedules keeps its P's schedule tick still, and after 10 ms
		// sysmon takes the P away at every system call it finds the loop
		// in, then polls every 20 µs: measured, that was a tenth of
		// pgwrt's CPU under load. Yielding every batch instead wakes
		// other threads (futex) as often.
		now := time.Now()
		if now.Sub(lastYield) > 5*time.Millisecond {
			runtime.Gosched()
			lastYield = now
		}
		l.gov.tick(now)
		// A blocking epoll_wait measured cheaper than parking in Go's
		// netpoller (with the epoll descriptor registered there) and than
		// raw non-blocking polls: per query, waking a parked goroutine
		// costs more than a thread returning from a system call.
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// Cannot happen with a valid epoll descriptor; end what
			// runs here rather than spin.
			for _, p := range l.fds {
				if p != nil {
					p.end(endLoopFailed, err)
				}
			}
			break
		}
		wake := false
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			if fd == l.efd {
				wake = true
				continue
			}
			if fd < len(l.fds) {
				if p := l.fds[fd]; p != nil {
					l.dispatch(p, fd, events[i].Events)
				}
			}
		}
		if wake {
			var b [8]byte
			unix.Read(l.efd, b[:])
			posted = l.take(posted, false)
			for i, f := range posted {
				f()
				posted[i] = nil
			}
		}
	}
	for _, f := range l.take(nil, true) {
		f() // kills of sessions already gone: nothing to do
	}
	unix.Close(l.epfd)
	unix.Close(l.efd)
}

// dispatch hands an event to its pipe.
func (l *evloop) dispatch(p *pipe, fd int, ev uint32) {
	if fd == p.cfd && ev&unix.EPOLLIN != 0 {
		l.gov.touch(&p.busyWin)
	}
	defer p.survive()
	p.event(fd, ev)
}

// survive, deferred around a pipe's handling of an event, turns a panic
// there (a bug) into the end of that session, as serveConn's recover does
// for a session goroutine, instead of every session on the loop and the
// process with them.
func (p *pipe) survive() {
	if v := recover(); v != nil {
		p.s.r.log.Error("panic forwarding", "user", p.s.user, "panic", v)
		p.end(endLoopFailed, fmt.Errorf("panic: %v", v))
	}
}

// add registers p (on the loop goroutine).
func (l *evloop) add(p *pipe) {
	for _, fd := range []int{p.cfd, p.bfd} {
		for fd >= len(l.fds) {
			l.fds = append(l.fds, nil)
		}
		l.fds[fd] = p
	}
	p.cmask, p.bmask = 0, 0
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p.cfd)}
	err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, p.cfd, &ev)
	if err == nil {
		p.creg, p.cmask = true, unix.EPOLLIN
		ev = unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p.bfd)}
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, p.bfd, &ev)
		if err == nil {
			p.breg, p.bmask = true, unix.EPOLLIN
		}
	}
	if err != nil {
		p.end(endLoopFailed, os.NewSyscallError("epoll_ctl", err))
		return
	}
	// Bytes the client sent with its login may already be waiting; level
	// triggering reports them.
}

func (l *evloop) remove(p *pipe) {
	// By registration, not interest: a socket registered with no interest
	// still reports errors, and the backend's socket lives on (reused)
	// after our descriptor for it is closed, so epoll would not drop it.
	if p.creg {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, p.cfd, nil)
	}
	if p.breg {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, p.bfd, nil)
	}
	p.creg, p.breg = false, false
	p.cmask, p.bmask = 0, 0
	if p.cfd < len(l.fds) && l.fds[p.cfd] == p {
		l.fds[p.cfd] = nil
	}
	if p.bfd < len(l.fds) && l.fds[p.bfd] == p {
		l.fds[p.bfd] = nil
	}
}

// Why a pipe ended.
type endReason int

const (
	endTerminate       endReason = iota + 1 // client sent Terminate
	endClientGone                           // client closed or failed
	endClientMalformed                      // client sent a bad message length
	endServerGone                           // backend closed or failed
	endServerWrite                          // a write to the backend failed
	endServerMalformed                      // backend sent a bad message length
	endKilled                               // ended from outside (primary moved, shutdown)
	endLoopFailed                           // the loop itself failed
)

func (r endReason) String() string {
	switch r {
	case endTerminate:
		return "terminate"
	case endClientGone:
		return "client gone"
	case endClientMalformed:
		return "client malformed"
	case endServerGone:
		return "server gone"
	case endServerWrite:
		return "server write failed"
	case endServerMalformed:
		return "server malformed"
	case endKilled:
		return "killed"
	case endLoopFailed:
		return "loop failed"
	}
	return "?"
}

// pipe is one session's forwarding state on a loop. Every field is owned
// by the loop goroutine until done is closed, then by the session.
type pipe struct {
	ep       *evloop // the loop, epoll
	ur       *urloop // or io_uring
	s        *session
	cfd, bfd int
	sc       serverCopier // server → client framing, status, idleness

	// client → backend: cbuf[cw:cpos] is scanned and still to be written,
	// cbuf[cpos:cn] is read but not yet scanned.
	cbuf          []byte
	cw, cpos, cn  int
	cremain       int // body bytes still to pass of the current client message
	sbuf          []byte
	sw, sr        int    // sbuf[sw:sr] is still to be written to the client
	extra         []byte // pgwrt's own answer (SHOW POOL_NODES), after sbuf
	cmask, bmask  uint32 // epoll interest now registered
	creg, breg    bool   // cfd, bfd are in the epoll set
	ended         bool
	reason        endReason
	err           error
	clientAtBound bool // the client stream ends on a message boundary
	done          chan struct{}
	busyWin       uint32 // the loop's slice window in which the client last sent

	// io_uring only
	id   uint32 // index in the loop, in each operation's user data
	ops  uint   // operations in flight (opCRecv…)
	lost bool   // backend bytes arrived after the end: not reusable
}

// event handles readiness of fd, one of p's descriptors.
func (p *pipe) event(fd int, ev uint32) {
	if fd == p.cfd {
		if ev&unix.EPOLLOUT != 0 {
			if p.flushClient() {
				p.pumpClient() // input waited for our own answer to go out
			}
		}
		if !p.ended && ev&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			if p.cmask&unix.EPOLLIN == 0 {
				if ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					p.end(endClientGone, errors.New("client connection hung up"))
				}
			} else {
				p.clientIn()
			}
		}
	} else {
		if ev&unix.EPOLLOUT != 0 {
			p.pumpClient()
		}
		if !p.ended && ev&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			if p.bmask&unix.EPOLLIN == 0 {
				if ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					p.end(endServerGone, errors.New("server connection hung up"))
				}
			} else {
				p.serverIn()
			}
		}
	}
	if !p.ended {
		p.interest()
	}
}

// interest registers what p waits for now: input from a side only while
// nothing read from it is still waiting to go out, output only while
// something waits.
func (p *pipe) interest() {
	var cm, bm uint32
	if p.cw == p.cpos && len(p.extra) == 0 && p.cn < len(p.cbuf) {
		cm |= unix.EPOLLIN
	}
	if p.sw < p.sr || len(p.extra) > 0 {
		cm |= unix.EPOLLOUT
	}
	if p.sw == p.sr && len(p.extra) == 0 {
		bm |= unix.EPOLLIN
	}
	if p.cw < p.cpos {
		bm |= unix.EPOLLOUT
	}
	if cm != p.cmask {
		ev := unix.EpollEvent{Events: cm, Fd: int32(p.cfd)}
		if err := unix.EpollCtl(p.ep.epfd, unix.EPOLL_CTL_MOD, p.cfd, &ev); err != nil {
			p.end(endLoopFailed, os.NewSyscallError("epoll_ctl", err))
			return
		}
		p.cmask = cm
	}
	if bm != p.bmask {
		ev := unix.EpollEvent{Events: bm, Fd: int32(p.bfd)}
		if err := unix.EpollCtl(p.ep.epfd, unix.EPOLL_CTL_MOD, p.bfd, &ev); err != nil {
			p.end(endLoopFailed, os.NewSyscallError("epoll_ctl", err))
			return
		}
		p.bmask = bm
	}
}

func (p *pipe) clientIn() {
	n, err := unix.Read(p.cfd, p.cbuf[p.cn:])
	if n > 0 {
		p.cn += n
		p.pumpClient()
		return
	}
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	if err == nil {
		err = errors.New("client closed the connection")
	}
	p.end(endClientGone, err)
}

// What scanClient stopped at.
type scanStop int

const (
	scanMore      scanStop = iota // everything scanned, or a part message waits for more
	scanFlush                     // write what is scanned before going on
	scanTerminate                 // Terminate, with everything before it written
	scanIntercept                 // SHOW POOL_NODES taken out of the stream
	scanMalformed
)

// pumpClient writes scanned client bytes to the backend and scans on, until
// the input is used up or the backend cannot take more.
func (p *pipe) pumpClient() {
	for !p.ended {
		for p.cw < p.cpos {
			if p.ur != nil {
				p.sendBackendRing() // its completion resumes
				return
			}
			n, err := unix.Write(p.bfd, p.cbuf[p.cw:p.cpos])
			if n > 0 {
				p.cw += n
				continue
			}
			if err == unix.EAGAIN || err == unix.EINTR {
				return // EPOLLOUT on the backend resumes
			}
			p.end(endServerWrite, err)
			return
		}
		if len(p.extra) > 0 {
			return // our answer must reach the client first
		}
		switch p.scanClient() {
		case scanMore:
			if p.cw < p.cpos {
				continue
			}
			return
		case scanFlush:
			continue
		case scanTerminate:
			p.end(endTerminate, nil)
			return
		case scanIntercept:
			p.extra = p.s.r.poolNodesReply(p.sc.status)
			p.flushClient()
		case scanMalformed:
			p.end(endClientMalformed, errMalformedClient)
			return
		}
	}
}

// scanClient passes client messages, stopping at Terminate and at SHOW
// POOL_NODES sent while the backend is idle. Called with nothing pending
// (cw == cpos).
func (p *pipe) scanClient() scanStop {
	if p.cpos > 0 && p.cw == p.cpos && p.ops&opCRecv == 0 {
		// Move the unscanned tail (a part header or part query) to the
		// front so the next read has room.
		p.cn = copy(p.cbuf, p.cbuf[p.cpos:p.cn])
		p.cw, p.cpos = 0, 0
	}
	b := p.cbuf
	for p.cpos < p.cn {
		if p.cremain > 0 {
			take := min(p.cremain, p.cn-p.cpos)
			p.cpos += take
			p.cremain -= take
			continue
		}
		if p.cn-p.cpos < 5 {
			return scanMore
		}
		typ := b[p.cpos]
		l := int(binary.BigEndian.Uint32(b[p.cpos+1:]))
		if l < 4 {
			return scanMalformed
		}
		switch {
		case typ == 'X':
			if p.cw < p.cpos {
				return scanFlush
			}
			p.cpos += 5
			p.cw = p.cpos
			return scanTerminate
		case typ == 'Q' && l <= maxIntercept && p.cw == p.cpos && p.sc.idle.Load():
			if p.cn-p.cpos < 1+l {
				return scanMore
			}
			if isShowPoolNodes(b[p.cpos+5 : p.cpos+1+l]) {
				p.cpos += 1 + l
				p.cw = p.cpos
				return scanIntercept
			}
		}
		p.sc.idle.Store(false)
		p.cpos += 5
		p.cremain = l - 4
	}
	return scanMore
}

func (p *pipe) serverIn() {
	n, err := unix.Read(p.bfd, p.sbuf)
	if n > 0 {
		p.serverData(n)
		return
	}
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	if err == nil {
		err = errors.New("server closed the connection")
	}
	p.end(endServerGone, err)
}

// serverData passes on n bytes the backend sent, read into sbuf.
func (p *pipe) serverData(n int) {
	p.sw, p.sr = 0, n
	if err := p.sc.feed(p.sbuf[:n]); err != nil {
		p.end(endServerMalformed, err)
		return
	}
	p.flushClient()
}

// flushClient writes what waits for the client; it reports whether all of
// it went.
func (p *pipe) flushClient() bool {
	if p.ur != nil {
		return p.flushClientRing()
	}
	for p.sw < p.sr {
		n, err := unix.Write(p.cfd, p.sbuf[p.sw:p.sr])
		if n > 0 {
			p.sw += n
			continue
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			return false
		}
		p.end(endClientGone, err)
		return false
	}
	p.sw, p.sr = 0, 0
	for len(p.extra) > 0 {
		n, err := unix.Write(p.cfd, p.extra)
		if n > 0 {
			p.extra = p.extra[n:]
			continue
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			return false
		}
		p.end(endClientGone, err)
		return false
	}
	p.extra = nil
	return true
}

// end stops forwarding and hands the pipe back to its session.
func (p *pipe) end(reason endReason, err error) {
	if p.ended {
		return
	}
	p.ended = true
	p.reason, p.err = reason, err
	if p.ur != nil {
		p.ur.cancel(p)
		if p.ops != 0 {
			return // settles when the last completion arrives
		}
	} else {
		p.ep.remove(p)
	}
	p.settle()
}

// settle hands an ended pipe, with nothing in flight, back to its session.
func (p *pipe) settle() {
	if p.ur != nil {
		p.ur.release(p)
	}
	p.clientAtBound = p.sw == p.sr && len(p.extra) == 0 && p.sc.f.atBoundary()
	close(p.done)
}

// post runs f on p's loop.
func (p *pipe) post(f func()) bool {
	if p.ur != nil {
		return p.ur.post(f)
	}
	return p.ep.post(f)
}

// dupConn returns a new descriptor for c's socket and closes c, which takes
// the socket out of Go's netpoller. The descriptor is non-blocking.
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

// forwardLoop forwards on an event loop. It reports false in handled when
// it could not (no loop, a connection without a descriptor); the caller
// then forwards with goroutines, and nothing has been touched.
func (s *session) forwardLoop(be *backend) (reusable bool, status byte, handled bool) {
	l := s.r.ev.pick(s.r)
	if l == nil {
		return false, 0, false
	}
	cfd, ok := dupConn(s.conn)
	if !ok {
		return false, 0, false
	}
	bfd, ok := dupConn(be.conn)
	if !ok {
		unix.Close(cfd)
		return false, 0, false
	}
	// From here the sockets live in cfd and bfd.
	s.conn.Close()
	be.conn.Close()
	p := &pipe{s: s, cfd: cfd, bfd: bfd, cbuf: s.slot.cbuf, sbuf: s.slot.sbuf, done: make(chan struct{})}
	switch l := l.(type) {
	case *evloop:
		p.ep = l
	case *urloop:
		p.ur = l
		// The ring waits on the sockets itself; with O_NONBLOCK a receive
		// would end at once with EAGAIN. (Shared with nobody: Go's
		// copies are closed.)
		unix.SetNonblock(cfd, false)
		unix.SetNonblock(bfd, false)
	}
	p.sc = serverCopier{s: s, be: be, status: 'I'}
	p.sc.idle.Store(true)

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
		return false, 0, true
	}
	s.pipe = p
	if !l.post(func() { l.add(p) }) {
		// The loop died since pick (it cannot, short of a kernel fault).
		s.pipe = nil
		s.mu.Unlock()
		p.ended, p.reason, p.err = true, endLoopFailed, errors.New("event loop gone")
		p.clientAtBound = true
		return p.finish(be), 'I', true
	}
	s.mu.Unlock()

	<-p.done
	s.mu.Lock()
	s.pipe = nil
	s.mu.Unlock()
	return p.finish(be), p.sc.status, true
}

// killPipe ends a session that is forwarding on a loop (called with s.mu).
func (s *session) killPipe(err error) bool {
	p := s.pipe
	if p == nil {
		return false
	}
	return p.post(func() {
		if !p.ended {
			p.end(endKilled, err)
		}
	})
}

// finish runs on the session goroutine once the loop let go of p: it tells
// the client what it must hear, closes the client socket, and either gives
// the backend socket back to be as a net.Conn (reusable) or closes it.
func (p *pipe) finish(be *backend) bool {
	s := p.s
	s.r.log.Debug("forwarding ended", "user", s.user, "reason", p.reason.String(), "error", p.err)
	if p.ur != nil {
		unix.SetNonblock(p.cfd, true) // for writeRaw, and Go's netpoller
		unix.SetNonblock(p.bfd, true)
	}
	var msg error
	reusable := false
	switch p.reason {
	case endKilled:
		msg = p.err // why it was killed
	case endServerGone, endServerWrite:
		if !s.killed.Load() {
			msg = s.serverLost(&p.sc, p.err)
		}
	case endLoopFailed:
		if !s.killed.Load() {
			msg = errorf(codeBackendLost, "pgwrt: server connection lost")
		}
	case endServerMalformed:
		msg = errMalformedServer
	case endClientMalformed:
		msg = errMalformedClient
	case endTerminate, endClientGone:
		reusable = !s.killed.Load() && !p.lost && p.sc.idle.Load() && p.sc.f.atBoundary() &&
			p.cremain == 0 && p.cw == p.cpos && (p.reason == endTerminate || p.cpos == p.cn)
	}
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
	if p.cremain == 0 && p.cw == p.cpos && p.cpos == p.cn {
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
