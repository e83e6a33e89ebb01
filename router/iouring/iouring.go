//go:build linux

// Package iouring is the little of Linux's io_uring that pgwrt's forwarding
// loop uses: setting up a ring, filling submission entries, entering the
// kernel, and reading completions. It knows the kernel ABI
// (include/uapi/linux/io_uring.h) and nothing of PostgreSQL or of what the
// entries are for.
//
// A ring is used by one thread. Where the kernel has it (6.1), the ring is
// made single-issuer with deferred task running: the thread that calls
// Setup must be the only one that ever submits, so lock it to its OS
// thread first.
package iouring

import (
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Kernel ABI constants.
const (
	setupCoopTaskrun  = 1 << 8
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13

	featSingleMmap = 1 << 0
	featNodrop     = 1 << 1
	featFastPoll   = 1 << 5

	enterGetevents = 1 << 0

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

// Operations (the SQE opcode).
const (
	OpNop         = 0
	OpAsyncCancel = 14
	OpRead        = 22
	OpSend        = 26
	OpRecv        = 27
)

type sqRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqRingOffsets
	cqOff                                                                  cqRingOffsets
}

// SQE is a submission queue entry (64 bytes on every architecture: the
// 64-bit fields fall on 8-byte offsets).
type SQE struct {
	Opcode      uint8
	Flags       uint8
	IOPrio      uint16
	Fd          int32
	Off         uint64
	Addr        uint64
	Len         uint32
	OpFlags     uint32
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32
	Addr3       uint64
	pad         uint64
}

// SetBuf points the entry at b (which must stay put until it completes).
func (e *SQE) SetBuf(b []byte) {
	e.Addr = uint64(uintptr(unsafe.Pointer(&b[0])))
	e.Len = uint32(len(b))
}

type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// Ring is one io_uring instance, used by one thread.
type Ring struct {
	fd     int
	sqMem  []byte
	cqMem  []byte // same mapping as sqMem with a single mmap
	sqeMem []byte
	sqHead *uint32
	sqTail *uint32
	sqMask uint32
	sqSize uint32
	sqes   []SQE
	cqHead *uint32
	cqTail *uint32
	cqMask uint32
	cqes   []cqe
	tail   uint32 // our copy of the SQ tail
	// backlog holds entries made while the queue was full, in order,
	// until Enter moves them in: a burst (a failover's kills cancel four
	// operations per session) never has to submit from inside a handler.
	backlog []SQE
}

// Setup makes a ring of at least n entries; the caller's thread becomes
// its only submitter where the kernel supports that. It fails where the
// kernel lacks io_uring, has it disabled, or a seccomp profile refuses it,
// and where the ring lacks fast poll (5.7) or no-drop completions.
func (r *Ring) Setup(n uint32) error {
	var p params
	var fd uintptr
	var errno syscall.Errno
	for _, flags := range []uint32{
		setupSingleIssuer | setupDeferTaskrun, // Linux 6.1
		setupCoopTaskrun,                      // 5.19
		0,
	} {
		p = params{flags: flags}
		fd, _, errno = unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(n), uintptr(unsafe.Pointer(&p)), 0)
		if errno != unix.EINVAL {
			break
		}
	}
	if errno != 0 {
		return os.NewSyscallError("io_uring_setup", errno)
	}
	r.fd = int(fd)
	need := uint32(featNodrop | featFastPoll)
	if p.features&need != need {
		unix.Close(r.fd)
		return fmt.Errorf("io_uring lacks fast poll or no-drop completions (features %#x)", p.features)
	}
	sqLen := int(p.sqOff.array + p.sqEntries*4)
	cqLen := int(p.cqOff.cqes + p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	single := p.features&featSingleMmap != 0
	if single && cqLen > sqLen {
		sqLen = cqLen
	}
	var err error
	if r.sqMem, err = unix.Mmap(r.fd, offSQRing, sqLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.Close()
		return os.NewSyscallError("mmap", err)
	}
	r.cqMem = r.sqMem
	if !single {
		if r.cqMem, err = unix.Mmap(r.fd, offCQRing, cqLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
			r.cqMem = nil
			r.Close()
			return os.NewSyscallError("mmap", err)
		}
	}
	sqeLen := int(p.sqEntries) * int(unsafe.Sizeof(SQE{}))
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, sqeLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.Close()
		return os.NewSyscallError("mmap", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead = u32(r.sqMem, p.sqOff.head)
	r.sqTail = u32(r.sqMem, p.sqOff.tail)
	r.sqMask = *u32(r.sqMem, p.sqOff.ringMask)
	r.sqSize = p.sqEntries
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	array := unsafe.Slice(u32(r.sqMem, p.sqOff.array), p.sqEntries)
	for i := range array {
		array[i] = uint32(i) // entry i always uses descriptor i
	}
	r.cqHead = u32(r.cqMem, p.cqOff.head)
	r.cqTail = u32(r.cqMem, p.cqOff.tail)
	r.cqMask = *u32(r.cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&r.cqMem[p.cqOff.cqes])), p.cqEntries)
	r.tail = atomic.LoadUint32(r.sqTail)
	return nil
}

// Fd is the ring's descriptor (tests swap it to make the ring fail).
func (r *Ring) Fd() int { return r.fd }

// Close unmaps the ring and closes its descriptor; operations in flight end
// with it.
func (r *Ring) Close() {
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

// Get returns a cleared submission entry: the queue's next, or when the
// queue is full one at the end of the backlog. The entry is the caller's
// to fill before the next Get.
func (r *Ring) Get() *SQE {
	if len(r.backlog) > 0 || r.tail-atomic.LoadUint32(r.sqHead) >= r.sqSize {
		r.backlog = append(r.backlog, SQE{})
		return &r.backlog[len(r.backlog)-1]
	}
	e := &r.sqes[r.tail&r.sqMask]
	*e = SQE{}
	r.tail++
	return e
}

// Backlog is how many entries wait for room in the queue.
func (r *Ring) Backlog() int { return len(r.backlog) }

// Enter publishes the queued entries, submits them, and with wait > 0
// waits for that many completions. Completions are always gathered (with
// deferred task running that is the only time they are). While a backlog
// remains it submits again as the kernel takes entries, and does not wait
// until all are in.
func (r *Ring) Enter(wait uint32) error {
	for {
		r.moveBacklog()
		atomic.StoreUint32(r.sqTail, r.tail)
		submit := r.tail - atomic.LoadUint32(r.sqHead)
		w := wait
		if len(r.backlog) > 0 {
			w = 0
		}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(submit), uintptr(w), enterGetevents, 0, 0)
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

// Transient says whether an Enter error only means "reap, then enter
// again": a signal, a short allocation, or completions to collect first.
func Transient(err error) bool {
	return err == unix.EINTR || err == unix.EAGAIN || err == unix.EBUSY
}

// moveBacklog moves backlog entries into the queue as far as it has room.
func (r *Ring) moveBacklog() {
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

// Reap calls f for every completion there is, in order, with the entry's
// user data and its result (a count, 0, or -errno). f may queue new entries.
func (r *Ring) Reap(f func(userData uint64, res int32)) {
	for {
		head := atomic.LoadUint32(r.cqHead)
		tail := atomic.LoadUint32(r.cqTail)
		if head == tail {
			return
		}
		for ; head != tail; head++ {
			c := &r.cqes[head&r.cqMask]
			f(c.userData, c.res)
		}
		atomic.StoreUint32(r.cqHead, tail)
	}
}
