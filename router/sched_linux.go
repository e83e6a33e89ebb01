//go:build linux

package router

import (
	"time"

	"golang.org/x/sys/unix"
)

// loopSlice is the time slice a forwarding loop's thread asks the
// scheduler for. Every query of every session on a loop passes through
// its one thread, twice, in bursts of a few microseconds; with the
// default slice (milliseconds) a woken loop waits behind whichever
// backend or client holds the CPU, and on a machine whose cores are shared
// with PostgreSQL that wait is most of what the hop costs. A short slice
// (EEVDF, Linux 6.12+) gives the thread an earlier deadline so its wake-ups
// run sooner. It is a latency request, not a priority: the thread's weight
// (nice) and so its share of the CPU stay as they were. 100 µs is the
// shortest the kernel accepts.
const loopSlice = 100 * time.Microsecond

// askShortSlice asks for loopSlice on the calling (locked) thread and
// returns the slice in effect, or 0 where the kernel does not take the
// request (before 6.12 the field is ignored for normal threads; seccomp
// may refuse the call). Threads running under another policy (an
// administrator's SCHED_BATCH, IDLE or a real-time class) are left alone.
func askShortSlice() time.Duration {
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil || a.Policy != unix.SCHED_NORMAL {
		return 0
	}
	a.Size = unix.SizeofSchedAttr
	a.Flags = 0
	a.Runtime = uint64(loopSlice) // nice is kept as read
	if err := unix.SchedSetAttr(0, a, 0); err != nil {
		return 0
	}
	if a, err = unix.SchedGetAttr(0, 0); err != nil || time.Duration(a.Runtime) != loopSlice {
		return 0
	}
	return loopSlice
}
