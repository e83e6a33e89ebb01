//go:build linux

package router

import (
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"pgwrt/router/iouring"
)

// An io_uring forwarding loop. The epoll loop pays one kernel entry per
// read and per write; here a receive stays posted on every socket whose
// bytes can be taken, sends are queued as entries in shared memory, and
// one io_uring_enter per turn both submits everything queued and collects
// every completion. Same pipes, same scanning (loop_linux.go); only the
// way bytes move differs.
//
// The ring needs Linux 5.7 (fast poll: a receive on an empty socket waits
// on the socket instead of tying up a kernel worker) and uses 6.1's
// single-issuer deferred task running where the kernel has it. Kernels
// built without io_uring (common on OpenWrt), io_uring_disabled, and
// seccomp profiles that refuse it all show up as a failed setup, and the
// router then uses the epoll loop.

// What a completion belongs to: the low bits of user_data, above them the
// pipe's index in its loop.
const (
	opCRecv  = 1 << iota // receive from the client
	opCSend              // send to the client
	opBRecv              // receive from the backend
	opBSend              // send to the backend
	opCancel             // a cancellation (its completion is ignored)
	opWake               // the loop's eventfd read
	opBits   = 6
)

// urloop forwards the pipes of many sessions on one ring.
type urloop struct {
	poster
	ring     iouring.Ring
	entries  uint32
	pipes    []*pipe // by pipe.id
	free     []uint32
	wakeBuf  [8]byte
	waking   bool // the eventfd read is posted
	run1     []func()
	stopping bool
	broken   error // the ring failed; pipes added now end at once
	dead     atomic.Bool
	finished chan struct{}
	gov      sliceGovernor // usable is set before the loop is handed out; the rest is the loop's
}

// ringEntries is the submission queue size: room for four operations of
// 64 sessions in one turn before entries wait in the backlog.
const ringEntries = 256

// newUrloop starts a loop, or reports why io_uring cannot be used.
func newUrloop() (*urloop, error) { return newUrloopSize(ringEntries) }

func newUrloopSize(entries uint32) (*urloop, error) {
	// Blocking: the ring reads it, and a read of a non-blocking descriptor
	// would complete at once with EAGAIN.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("eventfd", err)
	}
	l := &urloop{entries: entries, finished: make(chan struct{})}
	l.efd = efd
	ready := make(chan error, 1)
	go l.run(ready)
	if err := <-ready; err != nil {
		<-l.finished
		return nil, err
	}
	return l, nil
}

func (l *urloop) failed() bool { return l.dead.Load() }

func (l *urloop) timeSlice() time.Duration { return l.gov.slice() }

func (l *urloop) close() {
	l.post(func() { l.stopping = true })
	<-l.finished
}

func (l *urloop) run(ready chan<- error) {
	// A single-issuer ring takes submissions only from the thread that
	// made it. The thread is never unlocked: it exits with the loop.
	runtime.LockOSThread()
	defer close(l.finished)
	defer l.dead.Store(true)
	if err := l.ring.Setup(l.entries); err != nil {
		unix.Close(l.efd)
		ready <- err
		return
	}
	lastYield := time.Now()
	l.gov.start(cpusPerLoop(), lastYield)
	ready <- nil
	l.armWake()
	for l.waking {
		// See evloop.run: without a yield every few milliseconds sysmon
		// keeps taking the loop's P at each system call.
		now := time.Now()
		if now.Sub(lastYield) > 5*time.Millisecond {
			runtime.Gosched()
			lastYield = now
		}
		l.gov.tick(now)
		if err := l.ring.Enter(1); err != nil && !iouring.Transient(err) {
			l.fail(os.NewSyscallError("io_uring_enter", err))
			return
		}
		l.ring.Reap(l.complete)
	}
	for _, f := range l.take(nil, true) {
		f() // kills of sessions already gone: nothing to do
	}
	l.ring.Close()
	unix.Close(l.efd)
}

// fail ends every pipe when the ring itself fails (it cannot, with a valid
// ring). Their operations die with the ring, which is closed first; then
// nothing may touch the ring again: every pipe is ended with nothing in
// flight before the posted work (kills, adds) runs.
func (l *urloop) fail(err error) {
	l.broken = err
	l.ring.Close()
	rest := l.take(nil, true)
	unix.Close(l.efd)
	for _, p := range l.pipes {
		if p == nil {
			continue
		}
		p.ur.ops = 0 // the ring's end ended them
		if p.ended {
			p.settle()
		} else {
			p.end(endLoopFailed, err)
		}
	}
	for _, f := range rest {
		f() // kills find their pipes ended; adds end theirs at once
	}
}

func (l *urloop) armWake() {
	e := l.ring.Get()
	e.Opcode = iouring.OpRead
	e.Fd = int32(l.efd)
	e.SetBuf(l.wakeBuf[:])
	e.UserData = opWake
	l.waking = true
}

func (l *urloop) complete(ud uint64, res int32) {
	op := uint(ud & (1<<opBits - 1))
	switch op {
	case opCancel:
		return
	case opWake:
		l.waking = false
		l.run1 = l.take(l.run1, false)
		for i, f := range l.run1 {
			f()
			l.run1[i] = nil
		}
		if !l.stopping {
			l.armWake()
		}
		return
	}
	id := ud >> opBits
	if id >= uint64(len(l.pipes)) || l.pipes[id] == nil {
		return // cannot happen: an index is freed only when nothing is in flight
	}
	p := l.pipes[id]
	if op == opCRecv {
		l.gov.touch(&p.busyWin)
	}
	defer p.survive()
	l.completion(p, op, res)
}

// add registers p (on the loop goroutine) and posts its first receives.
func (l *urloop) add(p *pipe) {
	if n := len(l.free); n > 0 {
		p.ur.id = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		p.ur.id = uint32(len(l.pipes))
		l.pipes = append(l.pipes, nil)
	}
	l.pipes[p.ur.id] = p
	if l.broken != nil {
		p.end(endLoopFailed, l.broken)
		return
	}
	l.arm(p)
}

func (l *urloop) release(p *pipe) {
	if l.pipes[p.ur.id] == p {
		l.pipes[p.ur.id] = nil
		l.free = append(l.free, p.ur.id)
	}
}

func (l *urloop) queue(p *pipe, op uint, opcode uint8, fd int, b []byte, flags uint32) {
	e := l.ring.Get()
	e.Opcode = opcode
	e.Fd = int32(fd)
	e.SetBuf(b)
	e.OpFlags = flags
	e.UserData = uint64(p.ur.id)<<opBits | uint64(op)
	p.ur.ops |= op
}

// cancel asks the kernel to end p's operations in flight; each still
// completes (most with ECANCELED), and p settles after the last.
func (l *urloop) cancel(p *pipe) {
	for op := uint(opCRecv); op <= opBSend; op <<= 1 {
		if p.ur.ops&op != 0 {
			e := l.ring.Get()
			e.Opcode = iouring.OpAsyncCancel
			e.Fd = -1
			e.Addr = uint64(p.ur.id)<<opBits | uint64(op)
			e.UserData = opCancel
		}
	}
}

// ringState is what the io_uring loop keeps per pipe.
type ringState struct {
	id  uint32 // index in the loop, in each operation's user data
	ops uint   // operations in flight (opCRecv…)
}

func (l *urloop) name() string { return EngineIOUring }

func (l *urloop) forward(lk *link) (reusable, handled bool) { return forwardOn(l, lk) }

// prepare: the ring waits on the sockets itself; with O_NONBLOCK a receive
// would end at once with EAGAIN. (Shared with nobody: Go's copies are
// closed.) handback makes them non-blocking again, for writeRaw and Go's
// netpoller.
func (l *urloop) prepare(cfd, bfd int) {
	unix.SetNonblock(cfd, false)
	unix.SetNonblock(bfd, false)
}

func (l *urloop) handback(p *pipe) {
	unix.SetNonblock(p.cfd, true)
	unix.SetNonblock(p.bfd, true)
}

func (l *urloop) receiving(p *pipe) bool { return p.ur.ops&opCRecv != 0 }

func (l *urloop) stop(p *pipe) bool {
	l.cancel(p)
	return p.ur.ops == 0
}

func (l *urloop) settled(p *pipe) { l.release(p) }

// arm posts the receives p can take now: from a side only while nothing
// read from it is still waiting to go out (the epoll loop's EPOLLIN rule).
func (l *urloop) arm(p *pipe) {
	if p.ur.ops&opCRecv == 0 && p.cw == p.cpos && len(p.extra) == 0 && p.cn < len(p.cbuf) {
		l.queue(p, opCRecv, iouring.OpRecv, p.cfd, p.cbuf[p.cn:], 0)
	}
	if p.ur.ops&opBRecv == 0 && p.sw == p.sr && len(p.extra) == 0 {
		l.queue(p, opBRecv, iouring.OpRecv, p.bfd, p.sbuf, 0)
	}
}

// sendBackend queues the scanned client bytes for the backend, unless a
// send is already in flight; its completion comes back to pumpClient.
func (l *urloop) sendBackend(p *pipe) bool {
	if p.ur.ops&opBSend == 0 {
		l.queue(p, opBSend, iouring.OpSend, p.bfd, p.cbuf[p.cw:p.cpos], unix.MSG_NOSIGNAL)
	}
	return false
}

// sendClient queues what waits for the client and reports whether nothing
// does.
func (l *urloop) sendClient(p *pipe) bool {
	if p.ur.ops&opCSend != 0 {
		return false
	}
	if p.sw < p.sr {
		l.queue(p, opCSend, iouring.OpSend, p.cfd, p.sbuf[p.sw:p.sr], unix.MSG_NOSIGNAL)
		return false
	}
	p.sw, p.sr = 0, 0
	if len(p.extra) > 0 {
		l.queue(p, opCSend, iouring.OpSend, p.cfd, p.extra, unix.MSG_NOSIGNAL)
		return false
	}
	p.extra = nil
	return true
}

// sentClient accounts n bytes sent to the client: from sbuf while any of
// it waited when the send was queued, else from extra.
func (p *pipe) sentClient(n int) {
	if p.sw < p.sr {
		p.sw += n
	} else {
		p.extra = p.extra[n:]
	}
}

// opEnds says how a pipe ends when one of its operations fails (or a
// receive meets end of stream).
var opEnds = map[uint]struct {
	reason endReason
	eof    string
}{
	opCRecv: {endClientGone, "client closed the connection"},
	opCSend: {endClientGone, "client connection closed"},
	opBRecv: {endServerGone, "server closed the connection"},
	opBSend: {endServerWrite, "server connection closed"},
}

// completion handles the end of one of p's operations.
func (l *urloop) completion(p *pipe, op uint, res int32) {
	p.ur.ops &^= op
	n := max(int(res), 0)
	// Sent bytes count whether or not the pipe has ended: finish reads
	// the books.
	switch op {
	case opCSend:
		p.sentClient(n)
	case opBSend:
		p.cw += n
	}
	if p.ended {
		if op == opBRecv && n > 0 {
			p.lost = true // backend bytes nobody will see: not reusable
		}
		if p.ur.ops == 0 {
			p.settle()
		}
		return
	}
	if res <= 0 && res != -int32(unix.EINTR) && res != -int32(unix.EAGAIN) {
		e := opEnds[op]
		p.end(e.reason, resErr(res, e.eof))
		return
	}
	// Data, or an interrupted operation to post again.
	switch op {
	case opCRecv:
		if n > 0 {
			p.clientData(n)
		}
	case opCSend:
		if l.sendClient(p) {
			p.pumpClient() // input waited for our own answer to go out
		}
	case opBRecv:
		if n > 0 {
			p.serverData(n)
		}
	case opBSend:
		p.pumpClient()
	}
	if !p.ended {
		l.arm(p)
	}
}

// resErr turns a completion's result (0 or -errno) into an error.
func resErr(res int32, eof string) error {
	if res == 0 {
		return errors.New(eof)
	}
	return syscall.Errno(-res)
}
