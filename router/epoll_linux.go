//go:build linux

package router

import (
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// The epoll forwarding loop: one thread waits in epoll_wait on the sockets
// of many links (level triggered), reads what is ready, and writes it to
// the peer. It is the loop where io_uring is refused; loop_linux.go holds
// what it shares with the io_uring loop.

type evloop struct {
	poster // wakes the loop for posted work
	epfd   int

	// owned by the loop goroutine
	fds      []*pipe // link by descriptor
	stopping bool

	dead     atomic.Bool // the loop has exited
	finished chan struct{}
	gov      sliceGovernor // usable is set before the loop is handed out; the rest is the loop's
}

// newEpollWaker makes an epoll set with an eventfd in it that a poster
// writes to wake the loop.
func newEpollWaker() (epfd, efd int, err error) {
	epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return -1, -1, os.NewSyscallError("epoll_create1", err)
	}
	efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return -1, -1, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(efd)
		return -1, -1, os.NewSyscallError("epoll_ctl", err)
	}
	return epfd, efd, nil
}

func newEvloop() (*evloop, error) {
	epfd, efd, err := newEpollWaker()
	if err != nil {
		return nil, err
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
	l.post(func() { l.stopping = true })
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
	for !l.stopping {
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
			posted = l.runPosted(posted)
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

// add registers p (on the loop goroutine).
func (l *evloop) add(p *pipe) {
	p.ep = epollState{}
	for _, fd := range []int{p.cfd, p.bfd} {
		for fd >= len(l.fds) {
			l.fds = append(l.fds, nil)
		}
		l.fds[fd] = p
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p.cfd)}
	err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, p.cfd, &ev)
	if err == nil {
		p.ep.creg, p.ep.cmask = true, unix.EPOLLIN
		ev = unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p.bfd)}
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, p.bfd, &ev)
		if err == nil {
			p.ep.breg, p.ep.bmask = true, unix.EPOLLIN
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
	if p.ep.creg {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, p.cfd, nil)
	}
	if p.ep.breg {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, p.bfd, nil)
	}
	p.ep.creg, p.ep.breg = false, false
	p.ep.cmask, p.ep.bmask = 0, 0
	if p.cfd < len(l.fds) && l.fds[p.cfd] == p {
		l.fds[p.cfd] = nil
	}
	if p.bfd < len(l.fds) && l.fds[p.bfd] == p {
		l.fds[p.bfd] = nil
	}
}

// event handles readiness of fd, one of p's descriptors.
func (p *pipe) event(fd int, ev uint32) {
	if fd == p.cfd {
		if ev&unix.EPOLLOUT != 0 {
			if p.loop.sendClient(p) {
				p.pumpClient() // input waited for our own answer to go out
			}
		}
		if !p.ended && ev&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			if p.ep.cmask&unix.EPOLLIN == 0 {
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
			if p.ep.bmask&unix.EPOLLIN == 0 {
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
	l := p.loop.(*evloop)
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
	if cm != p.ep.cmask {
		ev := unix.EpollEvent{Events: cm, Fd: int32(p.cfd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, p.cfd, &ev); err != nil {
			p.end(endLoopFailed, os.NewSyscallError("epoll_ctl", err))
			return
		}
		p.ep.cmask = cm
	}
	if bm != p.ep.bmask {
		ev := unix.EpollEvent{Events: bm, Fd: int32(p.bfd)}
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, p.bfd, &ev); err != nil {
			p.end(endLoopFailed, os.NewSyscallError("epoll_ctl", err))
			return
		}
		p.ep.bmask = bm
	}
}

func (p *pipe) clientIn() {
	n, err := unix.Read(p.cfd, p.cbuf[p.cn:])
	if n > 0 {
		p.clientData(n)
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

// epollState is what the epoll loop keeps per pipe.
type epollState struct {
	cmask, bmask uint32 // epoll interest now registered
	creg, breg   bool   // cfd, bfd are in the epoll set
}

func (l *evloop) name() string { return EngineEpoll }

func (l *evloop) forward(lk *link) (reusable, handled bool) { return forwardOn(l, lk) }

func (l *evloop) prepare(cfd, bfd int)   {}
func (l *evloop) handback(p *pipe)       {}
func (l *evloop) receiving(p *pipe) bool { return false }
func (l *evloop) settled(p *pipe)        {}

func (l *evloop) stop(p *pipe) bool {
	l.remove(p)
	return true
}

// sendBackend writes scanned client bytes to the backend until they are
// gone or the socket is full (EPOLLOUT resumes).
func (l *evloop) sendBackend(p *pipe) bool {
	for p.cw < p.cpos {
		n, err := unix.Write(p.bfd, p.cbuf[p.cw:p.cpos])
		if n > 0 {
			p.cw += n
			continue
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			return false
		}
		p.end(endServerWrite, err)
		return false
	}
	return true
}

// sendClient writes what waits for the client; it reports whether all of
// it went.
func (l *evloop) sendClient(p *pipe) bool {
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
