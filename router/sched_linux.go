//go:build linux

package router

import (
	"time"

	"golang.org/x/sys/unix"
)

// loopSlice is the time slice a forwarding loop's thread asks the
// scheduler for while many sessions are busy on it. Every query of every
// session on a loop passes through its one thread, twice, in bursts of a
// few microseconds. With the default slice (milliseconds) and a deep run
// queue (32 pgbench clients on two cores shared with their PostgreSQL
// backends), a woken loop waits behind whichever backend holds the CPU,
// and every session waits with it. A short slice (EEVDF, Linux 6.12+)
// lets the woken thread preempt, so its turns come sooner. It is a
// latency request, not a priority: the thread's weight (nice), and so
// its share of the CPU, stay as they were.
//
// With few busy sessions the same request costs more than it saves: each
// wake-up preempts at once for a completion or two, where the default
// lets the loop run a little later and take several in one turn. Measured
// on two cores (docs/perf.md, select-only, ten rounds each), pgwrt/direct
// was 0.71 with the default slice against 0.56 with 100 µs at 8 clients,
// 0.64 against 0.74 with 300 µs at 32, and about even at 16. So the loop
// asks for the short slice only above loopSliceOn busy sessions per CPU
// it has, and gives it back at or below loopSliceOff; 300 µs measured
// better than 100 µs and 1 ms at 32 clients.
const (
	loopSlice       = 300 * time.Microsecond
	loopSliceOn     = 8 // busy sessions per CPU from which the loop asks for loopSlice
	loopSliceOff    = 6 // and at or below which it goes back to the default
	loopSliceWindow = 100 * time.Millisecond
)

// sliceGovernor counts a loop's busy sessions (those whose client sent
// something) over windows of loopSliceWindow and holds the loop thread's
// slice accordingly. It lives on the loop's locked thread.
type sliceGovernor struct {
	usable  bool // the kernel takes slice requests for this thread
	short   bool // the thread holds loopSlice now
	on, off int  // thresholds in busy sessions for this loop
	window  uint32
	busy    int
	end     time.Time
}

// start checks, on the loop's thread, that the kernel takes the request
// (asking for the slice and giving it back) and sets the thresholds for a
// loop that has cpus CPUs. A thread under another policy (an
// administrator's SCHED_BATCH, IDLE or a real-time class) is left alone.
func (g *sliceGovernor) start(cpus int, now time.Time) {
	if cpus < 1 {
		cpus = 1
	}
	g.on, g.off = loopSliceOn*cpus, loopSliceOff*cpus
	g.window = 1
	g.end = now.Add(loopSliceWindow)
	g.usable = setSlice(loopSlice) && setSlice(0)
}

// touch marks a session, whose mark is *seen, busy in this window.
func (g *sliceGovernor) touch(seen *uint32) {
	if *seen != g.window {
		*seen = g.window
		g.busy++
	}
}

// tick closes the window once it has run its length and asks for or gives
// back the short slice by the count of busy sessions in it.
func (g *sliceGovernor) tick(now time.Time) {
	if now.Before(g.end) {
		return
	}
	want := g.want(g.busy)
	g.busy = 0
	g.window++
	g.end = now.Add(loopSliceWindow)
	if g.usable && want != g.short {
		d := time.Duration(0)
		if want {
			d = loopSlice
		}
		if setSlice(d) {
			g.short = want
		}
	}
}

// want says whether a window with busy sessions should leave the thread
// with the short slice; between the thresholds it keeps what it has.
func (g *sliceGovernor) want(busy int) bool {
	switch {
	case busy >= g.on:
		return true
	case busy <= g.off:
		return false
	}
	return g.short
}

// slice is the slice the loop asks for when busy; 0 where the kernel does
// not take the request (before 6.12 the field is ignored for normal
// threads; seccomp may refuse the call).
func (g *sliceGovernor) slice() time.Duration {
	if g.usable {
		return loopSlice
	}
	return 0
}

// setSlice asks for d on the calling thread (0: the kernel's default) and
// reports whether the thread now holds it.
func setSlice(d time.Duration) bool {
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil || a.Policy != unix.SCHED_NORMAL {
		return false
	}
	a.Size = unix.SizeofSchedAttr
	a.Flags = 0
	a.Runtime = uint64(d) // nice is kept as read
	if err := unix.SchedSetAttr(0, a, 0); err != nil {
		return false
	}
	if d == 0 {
		return true // the kernel reports its default, whatever that is
	}
	a, err = unix.SchedGetAttr(0, 0)
	return err == nil && time.Duration(a.Runtime) == d
}
