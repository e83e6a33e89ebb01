//go:build linux

package router

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The transaction loop: transaction-mode clients live on an epoll loop
// from login to goodbye, parked between transactions with nothing but
// their socket registered, linked to a backend from the first bytes of a
// transaction to the safe point that ends it. Checking out a backend,
// waiting for one (the pool's waiter queue wakes the loop), following both
// streams with the tracker and handing the backend back all happen on the
// loop thread, as in PgBouncer: per transaction that is a read and a write
// on each socket and the epoll calls that batch them, where goroutines
// cost two more reads and two parkings.
//
// What the loop does not do it hands to the session's goroutine, which
// waits while the loop has its client: dialling a new backend, holding
// while there is no primary, setting a backend's parameters for the
// client, and every end of a link other than a clean detach (reset,
// a lost transaction, the client leaving). The goroutine then gives the
// client back, with a backend if it got one.
//
// It is epoll, not io_uring, by design: a parked client must cost no
// buffer, and readiness is what says when to take one.

// txnLoops is the router's set of transaction loops, started on first use.
type txnLoops struct {
	once  sync.Once
	loops []*tloop
	next  atomic.Uint32
}

func (t *txnLoops) pick(r *Router) *tloop {
	t.once.Do(func() {
		if r.ev.engine == EngineGoroutines {
			return
		}
		for i := 0; i < loopCount(); i++ {
			l, err := newTloop(r)
			if err == nil {
				l.idx = uint8(i)
			}
			if err != nil {
				r.log.Warn("transaction loop unavailable; transaction-mode links forward with goroutines", "error", err)
				break
			}
			t.loops = append(t.loops, l)
		}
		if len(t.loops) > 0 {
			r.log.Info("transaction-mode clients on epoll transaction loops", "loops", len(t.loops))
		}
	})
	if len(t.loops) == 0 {
		return nil
	}
	l := t.loops[int(t.next.Add(1))%len(t.loops)]
	if l.dead.Load() {
		return nil
	}
	return l
}

func (t *txnLoops) close() {
	t.once.Do(func() {})
	for _, l := range t.loops {
		l.close()
	}
	t.loops = nil
}

type tloop struct {
	poster
	idx      uint8 // its place in txnLoops.loops
	r        *Router
	epfd     int
	fds      []*tclient // by descriptor, client's or backend's
	clients  map[*tclient]struct{}
	stopping bool
	dead     atomic.Bool
	finished chan struct{}
}

func newTloop(r *Router) (*tloop, error) {
	epfd, efd, err := newEpollWaker()
	if err != nil {
		return nil, err
	}
	l := &tloop{r: r, epfd: epfd, finished: make(chan struct{}), clients: make(map[*tclient]struct{})}
	l.efd = efd
	go l.run()
	return l, nil
}

func (l *tloop) close() {
	l.post(func() { l.stopping = true })
	<-l.finished
}

func (l *tloop) run() {
	runtime.LockOSThread()
	defer close(l.finished)
	defer l.dead.Store(true)
	events := make([]unix.EpollEvent, 128)
	var posted []func()
	lastYield := time.Now()
	for !l.stopping {
		// As the forwarding loops do (epoll_linux.go): yield now and
		// then so that sysmon does not take the thread's P at every
		// system call.
		if now := time.Now(); now.Sub(lastYield) > 5*time.Millisecond {
			runtime.Gosched()
			lastYield = now
		}
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
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
				if c := l.fds[fd]; c != nil {
					c.event(fd, events[i].Events)
				}
			}
		}
		if wake {
			posted = l.runPosted(posted)
		}
	}
	for _, f := range l.take(nil, true) {
		f()
	}
	// Clients still here go back to their sessions, which end.
	for c := range l.clients {
		c.handback(handback{kind: hbGone})
	}
	unix.Close(l.epfd)
	unix.Close(l.efd)
}

func (l *tloop) register(c *tclient, fd int) error {
	for fd >= len(l.fds) {
		l.fds = append(l.fds, nil)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	l.fds[fd] = c
	return nil
}

// registerBackend makes the loop's events for a backend's socket c's. A
// backend stays in the epoll set of each loop it has served on until it
// closes (closing drops it), so a transaction on it costs no epoll_ctl:
// the loop only forgets whose events they are when the link ends.
func (l *tloop) registerBackend(c *tclient, be *backend, fd int) error {
	bit := uint8(1) << l.idx
	if be.loops&bit == 0 {
		if err := l.register(c, fd); err != nil && err.(*os.SyscallError).Err != unix.EEXIST {
			return err
		}
		be.loops |= bit
	}
	for fd >= len(l.fds) {
		l.fds = append(l.fds, nil)
	}
	l.fds[fd] = c
	return nil
}

// forget drops c as the receiver of fd's events (fd stays registered).
func (l *tloop) forget(c *tclient, fd int) {
	if fd < len(l.fds) && l.fds[fd] == c {
		l.fds[fd] = nil
	}
}

func (l *tloop) unregister(fd int) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	if fd < len(l.fds) {
		l.fds[fd] = nil
	}
}

// What a loop hands back to a session's goroutine.
type hbKind uint8

const (
	hbGone  hbKind = iota + 1 // the client left (or the loop stopped)
	hbError                   // err is for the client (a wait that timed out)
	hbNeed                    // a backend is needed that the loop cannot get: carry is the client's, be (if any) needs its parameters set
	hbEnded                   // the link l ended other than by a clean detach; clean as for endTurns
)

type handback struct {
	kind  hbKind
	err   error
	carry []byte
	be    *backend
	l     *link
	clean bool
}

// tclient is a transaction-mode client on a loop. Its fields are the
// loop goroutine's while the loop has it (on), else the session's.
type tclient struct {
	s    *session
	loop *tloop
	cc   *fdConn
	ps   *prepLink
	key  poolKey
	back chan handback

	on       bool
	readable bool   // the client may have bytes not read yet (edge triggered)
	carry    []byte // read, not yet passed to a backend
	first    [firstRead]byte

	// waiting for the pool
	w     *waiter
	timer *time.Timer

	// linked
	l          *link
	bc         *fdConn
	breadable  bool
	cn, cpos   int    // l.cbuf[cpos:cn] is read and not yet scanned
	outB, outC []byte // written in part: the rest for the backend, for the client
	outCBound  bool   // outC ends on a message boundary
}

// serveOnLoop runs a transaction-mode session's transactions on loop lp,
// the goroutine doing what the loop hands back. It reports false, with
// nothing touched, when the client's connection cannot go on a loop.
func (s *session) serveOnLoop(lp *tloop, lp2 loginParams, ps **prepLink) (err error, handled bool) {
	cc, ok := s.takeConn()
	if !ok {
		return nil, false
	}
	defer cc.Close()
	if s.killed.Load() {
		return nil, true
	}
	if *ps == nil {
		*ps = newPrepLink(&s.r.stmts)
	}
	c := &tclient{s: s, loop: lp, cc: cc, ps: *ps, key: lp2.key, back: make(chan handback, 1)}
	return s.loopTransactions(c, lp2), true
}

// takeConn moves the client's socket out of Go's netpoller.
func (s *session) takeConn() (*fdConn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	cc, ok := newFdConn(s.conn)
	if !ok {
		return nil, false
	}
	s.conn = cc
	return cc, true
}

// run gives the loop the client (with carry, the bytes it sent that no
// backend has seen, and be, a backend ready for it, or nil) and waits
// until the loop hands it back.
func (c *tclient) run(carry []byte, be *backend) handback {
	c.carry = append(c.carry[:0], carry...)
	if !c.loop.post(func() { c.resume(be) }) {
		if be != nil {
			c.s.r.release(be, false)
		}
		return handback{kind: hbGone}
	}
	return <-c.back
}

// resume (on the loop) takes the client on.
func (c *tclient) resume(be *backend) {
	l := c.loop
	// The loop holds the client's socket while it is registered, so a
	// kill's Close only shuts it down: the loop sees that, and the
	// descriptor closes when the loop lets go.
	if !c.cc.hold() {
		if be != nil {
			c.s.r.release(be, false)
		}
		c.back <- handback{kind: hbGone}
		return
	}
	if err := l.register(c, c.cc.fd); err != nil {
		c.cc.let()
		if be != nil {
			c.s.r.release(be, false)
		}
		c.back <- handback{kind: hbGone}
		return
	}
	c.on, c.readable = true, false
	l.clients[c] = struct{}{}
	if be != nil {
		c.attach(be)
		return
	}
	if len(c.carry) > 0 {
		c.startTxn()
	}
	// Else the registration reports bytes already waiting.
}

// handback gives the client to its session's goroutine.
func (c *tclient) handback(hb handback) {
	if !c.on {
		return
	}
	l := c.loop
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if c.w != nil {
		if be, granted := l.r.pools.cancelWait(c.w); granted {
			if be != nil {
				l.r.release(be, true)
			} else {
				l.r.pools.cancelReservation(c.w.key)
			}
		}
		c.w = nil
	}
	if c.l != nil {
		l.forget(c, c.bc.fd)
		c.bc.let()
		c.bc = nil
		c.outB, c.outC = c.outB[:0], c.outC[:0]
		c.l = nil
	}
	l.unregister(c.cc.fd)
	c.cc.let()
	delete(l.clients, c)
	c.on = false
	c.back <- hb
}

func (c *tclient) event(fd int, ev uint32) {
	defer func() {
		if v := recover(); v != nil {
			c.s.r.log.Error("panic forwarding", "user", c.s.user, "panic", v)
			if c.l != nil {
				c.endLink(endLoopFailed, fmt.Errorf("panic: %v", v))
			} else {
				c.handback(handback{kind: hbGone})
			}
		}
	}()
	if fd == c.cc.fd {
		if ev&unix.EPOLLOUT != 0 && len(c.outC) > 0 && c.l != nil {
			if c.flushClient() {
				c.pumpServer()
				c.pumpClient()
			}
		}
		if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 || !c.on {
			return
		}
		c.readable = true
		switch {
		case c.l != nil:
			c.pumpClient()
		case c.w != nil:
			if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				c.handback(handback{kind: hbGone})
			}
		default:
			c.parkedInput()
		}
		return
	}
	if c.l == nil || c.bc == nil || fd != c.bc.fd {
		return
	}
	if ev&unix.EPOLLOUT != 0 && len(c.outB) > 0 {
		if c.flushBackend() {
			c.pumpClient()
		}
	}
	if c.l != nil && ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.breadable = true
		c.pumpServer()
	}
}

// parkedInput reads what a client between transactions sent: its next
// transaction starts.
func (c *tclient) parkedInput() {
	n, err := readFd(c.cc.fd, c.first[:])
	if n > 0 {
		if n < len(c.first) {
			c.readable = false
		}
		c.carry = append(c.carry, c.first[:n]...)
		c.startTxn()
		return
	}
	if err == unix.EAGAIN {
		c.readable = false
		return
	}
	c.handback(handback{kind: hbGone})
}

// readFd reads once, retrying EINTR; end of file is io.EOF.
func readFd(fd int, p []byte) (int, error) {
	for {
		n, err := rawIO(unix.SYS_READ, fd, p)
		if n > 0 {
			return n, nil
		}
		if err == unix.EINTR {
			continue
		}
		if err == nil {
			return 0, io.EOF
		}
		return 0, err
	}
}

// rawIO is read(2) or write(2) on a non-blocking socket without Go's
// system-call bookkeeping (entersyscall, exitsyscall: a tenth of the
// loop's CPU when measured): the call cannot block, and the loop's
// thread is its own.
func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := unix.RawSyscall(trap, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// startTxn gets the client a backend: an idle one at once, or a place in
// the pool's queue; anything else is the goroutine's.
func (c *tclient) startTxn() {
	s := c.s
	r := s.r
	if s.killed.Load() {
		c.handback(handback{kind: hbGone})
		return
	}
	if len(c.carry) >= 5 && c.carry[0] == 'X' && string(c.carry[1:5]) == "\x00\x00\x00\x04" {
		// A goodbye between transactions needs no backend.
		c.handback(handback{kind: hbGone})
		return
	}
	cfg := r.config()
	prim := r.Topology().PrimaryNode()
	if prim == nil || prim.Suspect || len(c.carry) > r.bufs.size {
		c.handback(handback{kind: hbNeed, carry: c.carry})
		return
	}
	w := &waiter{key: c.key, allowIdle: true, size: s.poolSize(cfg)}
	w.notify = func() { c.loop.post(func() { c.granted(w) }) }
	w.owner, w.onLoop = c.loop, func() { c.granted(w) }
	be, queued := r.pools.checkout(w, prim)
	if queued {
		c.w = w
		c.timer = time.AfterFunc(cfg.ClientWaitTimeout.D(), func() { c.loop.post(func() { c.waitTimedOut(w) }) })
		return
	}
	c.take(be, w.key)
}

// take acts on what the pool gave: a backend, attached, or a reservation
// to open one, which is the goroutine's to dial (on a reservation of its
// own).
func (c *tclient) take(be *backend, key poolKey) {
	r := c.s.r
	if be == nil {
		r.pools.cancelReservation(key)
		c.handback(handback{kind: hbNeed, carry: c.carry})
		return
	}
	r.metrics.reused.Inc()
	if !be.fitFor(r.Topology().PrimaryNode(), r.config(), time.Now()) {
		r.release(be, false)
		c.startTxn()
		return
	}
	c.attach(be)
}

// granted (on the loop): the pool has given the waiting client what it
// waited for.
func (c *tclient) granted(w *waiter) {
	if c.w != w {
		return
	}
	c.w = nil
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	be, ok := c.s.r.pools.cancelWait(w)
	if ok {
		c.take(be, w.key)
	}
}

func (c *tclient) waitTimedOut(w *waiter) {
	if c.w != w {
		return
	}
	c.timer = nil
	r := c.s.r
	size := c.s.poolSize(r.config())
	c.handback(handback{kind: hbError, err: errorf(codeTooManyBackends, "pgwrt: all backend connections of pool %s/%s are busy (pool_size %d)", w.key.database, w.key.user, size)})
}

// attach links the client to be for a transaction.
func (c *tclient) attach(be *backend) {
	s := c.s
	r := s.r
	fc, ok := be.conn.(*fdConn)
	if !ok {
		if fc, ok = newFdConn(be.conn); !ok {
			r.release(be, false)
			c.handback(handback{kind: hbNeed, carry: c.carry})
			return
		}
		be.conn = fc
	}
	if !s.paramsFit(be) {
		c.handback(handback{kind: hbNeed, carry: c.carry, be: be})
		return
	}
	if !fc.hold() {
		r.release(be, false)
		c.startTxn()
		return
	}
	if err := c.loop.registerBackend(c, be, fc.fd); err != nil {
		fc.let()
		r.release(be, false)
		c.handback(handback{kind: hbNeed, carry: c.carry})
		return
	}
	l := s.newTxnLink(be, c.ps)
	c.l, c.bc, c.breadable = l, fc, false
	c.outB, c.outC = c.outB[:0], c.outC[:0]
	c.cn, c.cpos = copy(l.cbuf, c.carry), 0
	c.carry = c.carry[:0]
	s.setBackend(be)
	c.pumpClient()
}

// pumpClient passes the client's bytes to the backend, as far as the
// tracker lets them and the backend takes them.
func (c *tclient) pumpClient() {
	for c.l != nil && len(c.outB) == 0 && len(c.outC) == 0 {
		if c.cpos < c.cn && c.scan() {
			continue
		}
		if c.l == nil {
			return
		}
		if c.cpos > 0 {
			c.cn = copy(c.l.cbuf, c.l.cbuf[c.cpos:c.cn])
			c.cpos = 0
		}
		if !c.readable || c.cn == len(c.l.cbuf) {
			return
		}
		n, err := readFd(c.cc.fd, c.l.cbuf[c.cn:])
		if n == 0 {
			if err == unix.EAGAIN {
				c.readable = false
				return
			}
			c.endLink(endClientGone, err)
			return
		}
		if c.cn+n < len(c.l.cbuf) {
			c.readable = false
		}
		c.cn += n
	}
}

// scan passes what the tracker lets through of cbuf[cpos:cn]; it reports
// whether it got anywhere (else more input is needed).
func (c *tclient) scan() bool {
	l := c.l
	t := &l.t
	b := l.cbuf[c.cpos:c.cn]
	var stage []byte
	var act clientAction
	var m, start int
	if ps := t.ps; ps != nil {
		stage, start, act, m = t.stageClient(b, len(b)+len(l.cbuf))
		if len(ps.toClient) > 0 {
			c.toClient(ps.toClient, true)
			ps.toClient = ps.toClient[:0]
		}
	} else {
		start, act, m = t.scanClient(b)
		stage = b[:start]
	}
	c.cpos += start
	if c.l != nil && len(stage) > 0 {
		c.toBackend(stage)
	}
	if c.l == nil {
		return false
	}
	switch act {
	case cliTerminate:
		c.endLink(endTerminate, nil)
		return false
	case cliMalformed:
		c.endLink(endClientMalformed, errMalformedClient)
		return false
	case cliIntercept:
		c.cpos += m
		c.toClient(c.s.r.poolNodesReply(t.status()), true)
		return true
	}
	return start > 0
}

// toBackend writes p to the backend; what the socket does not take now
// waits in outB (and the client is not read meanwhile).
func (c *tclient) toBackend(p []byte) {
	if len(c.outB) > 0 {
		c.outB = append(c.outB, p...)
		return
	}
	n, err := writeFd(c.bc.fd, p)
	if err != nil {
		c.endLink(endServerWrite, &backendWriteError{err})
		return
	}
	if n < len(p) {
		c.outB = append(c.outB[:0], p[n:]...)
	}
}

func (c *tclient) flushBackend() bool {
	n, err := writeFd(c.bc.fd, c.outB)
	if err != nil {
		c.endLink(endServerWrite, &backendWriteError{err})
		return false
	}
	c.outB = c.outB[:copy(c.outB, c.outB[n:])]
	return len(c.outB) == 0
}

// toClient writes p to the client; boundary says p ends on a message
// boundary. The rest waits in outC (and the server is not read meanwhile).
func (c *tclient) toClient(p []byte, boundary bool) {
	s := c.s
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if len(c.outC) > 0 {
		c.outC = append(c.outC, p...)
		c.outCBound = boundary
		return
	}
	n, err := writeFd(c.cc.fd, p)
	if err != nil {
		s.atBoundary = false
		c.endLink(endClientGone, &clientWriteError{err})
		return
	}
	if n < len(p) {
		c.outC = append(c.outC[:0], p[n:]...)
		c.outCBound = boundary
		s.atBoundary = false
		return
	}
	s.atBoundary = boundary
}

func (c *tclient) flushClient() bool {
	s := c.s
	s.wmu.Lock()
	n, err := writeFd(c.cc.fd, c.outC)
	if err == nil {
		c.outC = c.outC[:copy(c.outC, c.outC[n:])]
		if len(c.outC) == 0 {
			s.atBoundary = c.outCBound
		}
	}
	s.wmu.Unlock()
	if err != nil {
		c.endLink(endClientGone, &clientWriteError{err})
		return false
	}
	return len(c.outC) == 0
}

// writeFd writes what a non-blocking socket takes now.
func writeFd(fd int, p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := rawIO(unix.SYS_WRITE, fd, p[done:])
		if n > 0 {
			done += n
			continue
		}
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return done, nil
		case nil:
			return done, unix.EPIPE
		}
		return done, err
	}
	return done, nil
}

// pumpServer passes the backend's answers to the client; at the safe
// point that ends the transaction the backend goes back to its pool.
func (c *tclient) pumpServer() {
	for c.l != nil && c.breadable && len(c.outC) == 0 {
		n, err := readFd(c.bc.fd, c.l.sbuf)
		if n == 0 {
			if err == unix.EAGAIN {
				c.breadable = false
				return
			}
			c.endLink(endServerGone, err)
			return
		}
		if n < len(c.l.sbuf) {
			c.breadable = false
		}
		c.serverChunk(c.l.sbuf[:n])
	}
}

func (c *tclient) serverChunk(chunk []byte) {
	l := c.l
	t := &l.t
	ev, ferr := t.feedServer(chunk)
	l.serverEvents(ev)
	if ferr != nil {
		c.endLink(endServerMalformed, ferr)
		return
	}
	out, boundary := chunk, t.server.atBoundary()
	if t.ps != nil {
		out, boundary = t.ps.be.out, t.server.outBoundary()
	}
	if l.holdFatal(ev) {
		if at := t.server.errAt; at > 0 {
			c.toClient(out[:at], true)
		}
		if c.l != nil {
			c.endLink(endServerGone, errFatalHeld)
		}
		return
	}
	detach := len(c.outB) == 0 && l.detachAt()
	if len(out) > 0 {
		c.toClient(out, boundary)
	}
	if c.l != nil && detach {
		c.detach()
	}
}

// endLink ends the link other than by a detach: the goroutine settles it.
func (c *tclient) endLink(reason endReason, err error) {
	l := c.l
	if l == nil {
		return
	}
	l.setEnd(reason, err)
	l.leftover = append(l.leftover[:0], l.cbuf[c.cpos:c.cn]...)
	clean := len(c.outB) == 0
	if reason != endTerminate && reason != endClientGone && reason != endClientMalformed {
		clean = false // the server side ended: as the turn engine says
	}
	c.s.setBackend(l.be) // still the session's until the goroutine is done
	c.handback(handback{kind: hbEnded, l: l, clean: clean})
}

// detach ends the transaction's link at its safe point: the backend goes
// back to the pool, and the client's bytes not passed start the next.
func (c *tclient) detach() {
	l := c.l
	s := c.s
	be := l.be
	l.setEnd(endDetached, nil)
	reusable := !s.killed.Load() && l.t.safePoint() && l.t.status() == 'I'
	if reusable && be.stmts != nil {
		if !be.stmts.settled() {
			reusable = false
		} else if l.t.dealloc && be.stmts.count() > 0 {
			// DEALLOCATE ALL on the goroutine.
			c.endLinkDetached()
			return
		}
	}
	c.loop.forget(c, c.bc.fd)
	c.bc.let()
	c.bc, c.l = nil, nil
	c.carry = append(c.carry[:0], l.cbuf[c.cpos:c.cn]...)
	c.outB, c.outC = c.outB[:0], c.outC[:0]
	l.done()
	s.setBackend(nil)
	s.r.releaseBy(be, reusable, c.loop)
	if len(c.carry) > 0 {
		c.startTxn()
	} else if c.readable {
		c.parkedInput()
	}
}

// endLinkDetached hands a detached link to the goroutine (its backend
// needs a statement of its own first).
func (c *tclient) endLinkDetached() {
	l := c.l
	l.leftover = append(l.leftover[:0], l.cbuf[c.cpos:c.cn]...)
	c.handback(handback{kind: hbEnded, l: l, clean: true})
}

// loopTransactions is the goroutine's side of a client on a loop: it
// does what the loop hands back, then gives the client back.
func (s *session) loopTransactions(c *tclient, lp loginParams) error {
	r := s.r
	var carry []byte
	var be *backend
	for {
		hb := c.run(carry, be)
		carry, be = nil, nil
		switch hb.kind {
		case hbGone:
			return nil
		case hbError:
			return hb.err
		case hbNeed:
			carry = append(carry, hb.carry...)
			be = hb.be
			if be == nil {
				var err error
				if be, err = s.primaryBackend(r.config(), lp, true); err != nil {
					return err
				}
			} else {
				s.setBackend(be)
			}
			if err := s.syncSession(be); err != nil {
				r.log.Info("cannot give a backend the client's parameters; trying another", "node", be.node, "error", err)
				s.setBackend(nil)
				r.release(be, false)
				be = nil
			}
			s.setBackend(nil)
		case hbEnded:
			l := hb.l
			reusable := s.endTurns(l, hb.clean)
			rest, more := s.afterLink(l, reusable, c.ps)
			if !more {
				return nil
			}
			carry = append(carry, rest...)
		}
	}
}

var errLoopGone = errors.New("transaction loop gone")
