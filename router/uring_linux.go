//go:build linux

package router

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An io_uring forwarding loop. The epoll loop pays one kernel entry per
// read and per write; here a receive stays posted on every socket whose
// bytes can be taken, sends are queued as descriptors in shared memory,
// and one io_uring_enter per turn both submits everything queued and
// collects every completion. Same pipes, same framing; only the way bytes
// move differs.
//
// The ring needs Linux 5.7 (fast poll: a receive on an empty socket waits
// on the socket instead of tying up a kernel worker) and uses 6.1's
// single-issuer deferred task running where the kernel has it. Kernels
// built without io_uring (common on OpenWrt), io_uring_disabled, and
// seccomp profiles that refuse it all show up as a failed setup, and the
// router then uses the epoll loop.

// Kernel ABI (include/uapi/linux/io_uring.h).
const (
	iouSetupCoopTaskrun  = 1 << 8
	iouSetupSingleIssuer = 1 << 12
	iouSetupDeferTaskrun = 1 << 13

	iouFeatSingleMmap = 1 << 0
	iouFeatNodrop     = 1 << 1
	iouFeatFastPoll   = 1 << 5

	iouEnterGetevents = 1 << 0

	iouOffSQRing = 0
	iouOffCQRing = 0x8000000
	iouOffSQEs   = 0x10000000

	iouOpAsyncCancel = 14
	iouOpRead        = 22
	iouOpSend        = 26
	iouOpRecv        = 27
)

type iouSQRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type iouCQRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type iouParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  iouSQRingOffsets
	cqOff                                                                  iouCQRingOffsets
}

// iouSQE is a submission queue entry (64 bytes on every architecture: the
// 64-bit fields fall on 8-byte offsets).
type iouSQE struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	pad         uint64
}

type iouCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// ring is one io_uring instance, used by one thread.
type ring struct {
	fd     int
	sqMem  []byte
	cqMem  []byte // same mapping as sqMem with a single mmap
	sqeMem []byte
	sqHead *uint32
	sqTail *uint32
	sqMask uint32
	sqSize uint32
	sqes   []iouSQE
	cqHead *uint32
	cqTail *uint32
	cqMask uint32
	cqes   []iouCQE
	tail   uint32 // our copy of the SQ tail
	// backlog holds entries made while the queue was full, in order,
	// until enter moves them in: a burst (a failover's kills cancel four
	// operations per session) never has to submit from inside a handler.
	backlog []iouSQE
}

// setup makes a ring of at least n entries; the caller's thread becomes
// its only submitter where the kernel supports that.
func (r *ring) setup(n uint32) error {
	var p iouParams
	var fd uintptr
	var errno syscall.Errno
	for _, flags := range []uint32{
		iouSetupSingleIssuer | iouSetupDeferTaskrun, // Linux 6.1
		iouSetupCoopTaskrun,                         // 5.19
		0,
	} {
		p = iouParams{flags: flags}
		fd, _, errno = unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(n), uintptr(unsafe.Pointer(&p)), 0)
		if errno != unix.EINVAL {
			break
		}
	}
	if errno != 0 {
		return os.NewSyscallError("io_uring_setup", errno)
	}
	r.fd = int(fd)
	need := uint32(iouFeatNodrop | iouFeatFastPoll)
	if p.features&need != need {
		unix.Close(r.fd)
		return fmt.Errorf("io_uring lacks fast poll or no-drop completions (features %#x)", p.features)
	}
	sqLen := int(p.sqOff.array + p.sqEntries*4)
	cqLen := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(iouCQE{})))
	single := p.features&iouFeatSingleMmap != 0
	if single && cqLen > sqLen {
		sqLen = cqLen
	}
	var err error
	if r.sqMem, err = unix.Mmap(r.fd, iouOffSQRing, sqLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return os.NewSyscallError("mmap", err)
	}
	r.cqMem = r.sqMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, iouOffCQRing, cqLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			r.cqMem = nil
			r.close()
			return os.NewSyscallError("mmap", err)
		}
	}
	sqeLen := int(p.sqEntries) * int(unsafe.Sizeof(iouSQE{}))
	if r.sqeMem, err = unix.Mmap(r.fd, iouOffSQEs, sqeLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return os.NewSyscallError("mmap", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead = u32(r.sqMem, p.sqOff.head)
	r.sqTail = u32(r.sqMem, p.sqOff.tail)
	r.sqMask = *u32(r.sqMem, p.sqOff.ringMask)
	r.sqSize = p.sqEntries
	r.sqes = unsafe.Slice((*iouSQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	array := unsafe.Slice(u32(r.sqMem, p.sqOff.array), p.sqEntries)
	for i := range array {
		array[i] = uint32(i) // entry i always uses descriptor i
	}
	r.cqHead = u32(r.cqMem, p.cqOff.head)
	r.cqTail = u32(r.cqMem, p.cqOff.tail)
	r.cqMask = *u32(r.cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*iouCQE)(unsafe.Pointer(&r.cqMem[p.cqOff.cqes])), p.cqEntries)
	r.tail = atomic.LoadUint32(r.sqTail)
	return nil
}

func (r *ring) close() {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.cqMem != nil && len(r.cqMem) > 0 && &r.cqMem[0] != &r.sqMem[0] {
		unix.Munmap(r.cqMem)
	}
	if r.sqMem != nil {
		unix.Munmap(r.sqMem)
	}
	r.sqMem, r.cqMem, r.sqeMem = nil, nil, nil
	r.backlog = nil
	unix.Close(r.fd)
}

// get returns a cleared submission entry: the queue's next, or when the
// queue is full one at the end of the backlog. The entry is the caller's
// to fill before the next get.
func (r *ring) get() *iouSQE {
	if len(r.backlog) > 0 || r.tail-atomic.LoadUint32(r.sqHead) >= r.sqSize {
		r.backlog = append(r.backlog, iouSQE{})
		return &r.backlog[len(r.backlog)-1]
	}
	e := &r.sqes[r.tail&r.sqMask]
	*e = iouSQE{}
	r.tail++
	return e
}

// enter publishes the queued entries, submits them, and with wait > 0
// waits for that many completions. Completions are always gathered (with
// deferred task running that is the only time they are). While a backlog
// remains it submits again as the kernel takes entries, and does not wait
// until all are in.
func (r *ring) enter(wait uint32) error {
	for {
		r.moveBacklog()
		atomic.StoreUint32(r.sqTail, r.tail)
		submit := r.tail - atomic.LoadUint32(r.sqHead)
		w := wait
		if len(r.backlog) > 0 {
			w = 0
		}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(submit), uintptr(w), iouEnterGetevents, 0, 0)
		if errno != 0 {
			return errno
		}
		if len(r.backlog) == 0 || atomic.LoadUint32(r.sqHead) != r.tail {
			// All in, or the kernel took no more: the caller reaps
			// (which may be what frees the kernel) and comes back.
			return nil
		}
	}
}

// transient says whether an enter error only means "reap, then enter
// again": a signal, a short allocation, or completions to collect first.
func transient(err error) bool {
	return err == unix.EINTR || err == unix.EAGAIN || err == unix.EBUSY
}

// moveBacklog moves backlog entries into the queue as far as it has room.
func (r *ring) moveBacklog() {
	n := 0
	for n < len(r.backlog) && r.tail-atomic.LoadUint32(r.sqHead) < r.sqSize {
		r.sqes[r.tail&r.sqMask] = r.backlog[n]
		r.tail++
		n++
	}
	if n > 0 {
		r.backlog = r.backlog[:copy(r.backlog, r.backlog[n:])]
	}
}

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
	ring     ring
	entries  uint32
	pipes    []*pipe // by pipe.id
	free     []uint32
	wakeBuf  [8]byte
	waking   bool // the eventfd read is posted
	run1     []func()
	stop     bool
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
	l.post(func() { l.stop = true })
	<-l.finished
}

func (l *urloop) run(ready chan<- error) {
	// A single-issuer ring takes submissions only from the thread that
	// made it. The thread is never unlocked: it exits with the loop.
	runtime.LockOSThread()
	defer close(l.finished)
	defer l.dead.Store(true)
	if err := l.ring.setup(l.entries); err != nil {
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
		if err := l.ring.enter(1); err != nil && !transient(err) {
			l.fail(os.NewSyscallError("io_uring_enter", err))
			return
		}
		l.reap()
	}
	for _, f := range l.take(nil, true) {
		f() // kills of sessions already gone: nothing to do
	}
	l.ring.close()
	unix.Close(l.efd)
}

// fail ends every pipe when the ring itself fails (it cannot, with a valid
// ring). Their operations die with the ring, which is closed first; then
// nothing may touch the ring again: every pipe is ended with nothing in
// flight before the posted work (kills, adds) runs.
func (l *urloop) fail(err error) {
	l.broken = err
	l.ring.close()
	rest := l.take(nil, true)
	unix.Close(l.efd)
	for _, p := range l.pipes {
		if p == nil {
			continue
		}
		p.ops = 0 // the ring's end ended them
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
	e := l.ring.get()
	e.opcode = iouOpRead
	e.fd = int32(l.efd)
	e.addr = uint64(uintptr(unsafe.Pointer(&l.wakeBuf[0])))
	e.len = uint32(len(l.wakeBuf))
	e.userData = opWake
	l.waking = true
}

// reap handles every completion there is.
func (l *urloop) reap() {
	for {
		head := atomic.LoadUint32(l.ring.cqHead)
		tail := atomic.LoadUint32(l.ring.cqTail)
		if head == tail {
			return
		}
		for ; head != tail; head++ {
			c := &l.ring.cqes[head&l.ring.cqMask]
			ud, res := c.userData, c.res
			l.complete(ud, res)
		}
		atomic.StoreUint32(l.ring.cqHead, tail)
	}
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
		if !l.stop {
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
	p.completion(op, res)
}

// add registers p (on the loop goroutine) and posts its first receives.
func (l *urloop) add(p *pipe) {
	if n := len(l.free); n > 0 {
		p.id = l.free[n-1]
		l.free = l.free[:n-1]
	} else {
		p.id = uint32(len(l.pipes))
		l.pipes = append(l.pipes, nil)
	}
	l.pipes[p.id] = p
	if l.broken != nil {
		p.end(endLoopFailed, l.broken)
		return
	}
	p.arm()
}

func (l *urloop) release(p *pipe) {
	if l.pipes[p.id] == p {
		l.pipes[p.id] = nil
		l.free = append(l.free, p.id)
	}
}

func (l *urloop) queue(p *pipe, op uint, opcode uint8, fd int, b []byte, flags uint32) {
	e := l.ring.get()
	e.opcode = opcode
	e.fd = int32(fd)
	e.addr = uint64(uintptr(unsafe.Pointer(&b[0])))
	e.len = uint32(len(b))
	e.opFlags = flags
	e.userData = uint64(p.id)<<opBits | uint64(op)
	p.ops |= op
}

// cancel asks the kernel to end p's operations in flight; each still
// completes (most with ECANCELED), and p settles after the last.
func (l *urloop) cancel(p *pipe) {
	for op := uint(opCRecv); op <= opBSend; op <<= 1 {
		if p.ops&op != 0 {
			e := l.ring.get()
			e.opcode = iouOpAsyncCancel
			e.fd = -1
			e.addr = uint64(p.id)<<opBits | uint64(op)
			e.userData = opCancel
		}
	}
}

// arm posts the receives p can take now: from a side only while nothing
// read from it is still waiting to go out (the epoll loop's EPOLLIN rule).
func (p *pipe) arm() {
	if p.ops&opCRecv == 0 && p.cw == p.cpos && len(p.extra) == 0 && p.cn < len(p.cbuf) {
		p.ur.queue(p, opCRecv, iouOpRecv, p.cfd, p.cbuf[p.cn:], 0)
	}
	if p.ops&opBRecv == 0 && p.sw == p.sr && len(p.extra) == 0 {
		p.ur.queue(p, opBRecv, iouOpRecv, p.bfd, p.sbuf, 0)
	}
}

// sendBackend queues the scanned client bytes for the backend, unless a
// send is already in flight (its completion comes back to pumpClient).
func (p *pipe) sendBackendRing() {
	if p.ops&opBSend == 0 {
		p.ur.queue(p, opBSend, iouOpSend, p.bfd, p.cbuf[p.cw:p.cpos], unix.MSG_NOSIGNAL)
	}
}

// flushClientRing is flushClient on a ring: it queues what waits for the
// client and reports whether nothing does.
func (p *pipe) flushClientRing() bool {
	if p.ops&opCSend != 0 {
		return false
	}
	if p.sw < p.sr {
		p.ur.queue(p, opCSend, iouOpSend, p.cfd, p.sbuf[p.sw:p.sr], unix.MSG_NOSIGNAL)
		return false
	}
	p.sw, p.sr = 0, 0
	if len(p.extra) > 0 {
		p.ur.queue(p, opCSend, iouOpSend, p.cfd, p.extra, unix.MSG_NOSIGNAL)
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
func (p *pipe) completion(op uint, res int32) {
	p.ops &^= op
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
		if p.ops == 0 {
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
			p.cn += n
			p.pumpClient()
		}
	case opCSend:
		if p.flushClient() {
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
		p.arm()
	}
}

// resErr turns a completion's result (0 or -errno) into an error.
func resErr(res int32, eof string) error {
	if res == 0 {
		return errors.New(eof)
	}
	return syscall.Errno(-res)
}
