//go:build linux

package router

import (
	"bytes"
	"fmt"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pgwrt/router/wire"
)

// TestLoopRemoveWithoutInterest: a session whose sockets were registered
// with no interest at the end (waiting on the other side) still leaves the
// epoll set; the backend socket lives on after the loop lets go of it, and
// a leftover registration would keep reporting its events.
func TestLoopRemoveWithoutInterest(t *testing.T) {
	l, err := newEvloop()
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	c, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range []int{c[0], c[1], b[0], b[1]} {
		defer unix.Close(fd)
	}
	lk := &link{cbuf: make([]byte, 64), sbuf: make([]byte, 64)}
	p := &pipe{link: lk, loop: l, cfd: c[0], bfd: b[0], done: make(chan struct{})}
	res := make(chan [2]error, 1)
	l.post(func() {
		l.add(p)
		// Client bytes scanned but not yet written, server output
		// pending: no interest on either socket.
		p.cpos, p.sr = 1, 1
		p.interest()
		if p.ep.cmask != unix.EPOLLOUT || p.ep.bmask != unix.EPOLLOUT {
			t.Errorf("masks %x %x", p.ep.cmask, p.ep.bmask)
		}
		p.cpos, p.cn, p.sr = 1, len(p.cbuf), 0
		p.interest()
		if p.ep.cmask != 0 || p.ep.bmask != unix.EPOLLIN|unix.EPOLLOUT {
			t.Errorf("masks %x %x", p.ep.cmask, p.ep.bmask)
		}
		p.end(endKilled, nil)
		ev := unix.EpollEvent{Events: unix.EPOLLIN}
		res <- [2]error{
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, p.cfd, &ev),
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, p.bfd, &ev),
		}
	})
	<-p.done
	for i, err := range <-res {
		if err != unix.ENOENT {
			t.Errorf("socket %d still in the epoll set after end (%v)", i, err)
		}
	}
}

var uringProbe struct {
	once sync.Once
	err  error
}

// uringUsable reports whether this kernel lets pgwrt make a ring.
func uringUsable() error {
	uringProbe.once.Do(func() {
		l, err := newUrloop()
		if err == nil {
			l.close()
		}
		uringProbe.err = err
	})
	return uringProbe.err
}

// TestUringSmallRing runs many sessions at once on a ring with room for
// four submissions: what does not fit waits in the backlog, and every byte
// must still arrive in order.
func TestUringSmallRing(t *testing.T) {
	l := testUrloop(t, 4)
	const sessions, rounds = 12, 200
	req := msg('Q', "SELECT 1\x00")
	resp := append(msg('C', "SELECT 1\x00"), msg('Z', "I")...)
	var wg sync.WaitGroup
	for i := 0; i < sessions; i++ {
		p := newForwardSession(t, 1024, "uring")
		p.s.r.ev.once.Do(func() { p.s.r.ev.loops = []fwdLoop{l} })
		done := p.start()
		go p.answer(t, req, resp)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.close()
			got := make([]byte, len(resp))
			for j := 0; j < rounds; j++ {
				if _, err := p.client.Write(req); err != nil {
					t.Error(err)
					return
				}
				if _, err := io.ReadFull(p.client, got); err != nil || !bytes.Equal(got, resp) {
					t.Error("client got a different answer", err)
					return
				}
			}
			p.client.Write(wire.AppendTerminate(nil))
			if !(<-done).ok {
				t.Error("backend at ReadyForQuery judged not reusable")
			}
			if p.be.conn != p.serverSide {
				p.be.conn.Close()
			}
		}()
	}
	wg.Wait()
}

// TestUringRingFailure: if the ring itself stops working (here its
// descriptor is swapped for /dev/null under the loop), every session on it
// ends with an error instead of hanging, the loop is marked failed, and
// new sessions forward without it.
func TestUringRingFailure(t *testing.T) {
	l := testUrloop(t, 16)
	p := newForwardSession(t, 1024, "uring")
	p.s.r.ev.once.Do(func() { p.s.r.ev.loops = []fwdLoop{l} })
	done := p.start()
	req := msg('Q', "SELECT 1\x00")
	p.client.Write(req)
	buf := make([]byte, len(req))
	if _, err := io.ReadFull(p.server, buf); err != nil {
		t.Fatal(err)
	}
	null, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(null)
	if err := unix.Dup3(null, l.ring.Fd(), unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	// A completion wakes the loop; its next io_uring_enter fails.
	p.server.Write(append(msg('C', "SELECT 1\x00"), msg('Z', "I")...))
	p.client.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(p.client)
	if err != nil {
		t.Fatalf("client not let go: %v (got %q)", err, rest)
	}
	endedUnreusable(t, done, "the ring failed")
	if !l.failed() {
		t.Error("loop not marked failed")
	}
	if p.s.r.ev.pick(p.s.r) != nil {
		t.Error("a failed loop is still picked")
	}
}

// testUrloop starts an io_uring loop of the given size, closed when the
// test ends; it skips the test where io_uring is unavailable.
func testUrloop(t *testing.T, entries uint32) *urloop {
	t.Helper()
	if err := uringUsable(); err != nil {
		t.Skip("io_uring unavailable:", err)
	}
	l, err := newUrloopSize(entries)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.close)
	return l
}

// TestLoopSlice: both loops run on a thread of their own that asked for
// the short slice, and the kernel holds it where it takes such requests
// (6.12+); elsewhere the loop says it runs with the default.
func TestLoopSlice(t *testing.T) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	want := time.Duration(0)
	if major > 6 || major == 6 && minor >= 12 {
		want = loopSlice
	}
	ep, err := newEvloop()
	if err != nil {
		t.Fatal(err)
	}
	defer ep.close()
	loops := map[string]fwdLoop{"epoll": ep}
	govs := map[string]*sliceGovernor{"epoll": &ep.gov}
	if uringUsable() == nil {
		ul := testUrloop(t, 8)
		loops["io_uring"], govs["io_uring"] = ul, &ul.gov
	}
	// On the loop's thread, in one go so the loop's own windows cannot
	// come between: the slice its thread holds after the governor closes
	// a window with each count of busy sessions.
	held := func(l fwdLoop, g *sliceGovernor, counts ...int) []time.Duration {
		got := make(chan []time.Duration, 1)
		l.post(func() {
			var ds []time.Duration
			for _, busy := range counts {
				for i := 0; i < busy; i++ {
					var seen uint32
					g.touch(&seen)
				}
				g.tick(g.end)
				a, err := unix.SchedGetAttr(0, 0)
				if err != nil {
					t.Error(err)
				}
				ds = append(ds, time.Duration(a.Runtime))
			}
			got <- ds
		})
		return <-got
	}
	for name, l := range loops {
		g := govs[name]
		if got := l.timeSlice(); got != want {
			t.Errorf("%s: slice %v, want %v (kernel %d.%d)", name, got, want, major, minor)
		}
		if want == 0 {
			continue
		}
		counts := []int{0, g.on, g.off + 1, g.off}
		shortNow := []bool{false, true, true, false} // the last two: kept between the thresholds, then given back
		for i, d := range held(l, g, counts...) {
			if (d == loopSlice) != shortNow[i] {
				t.Errorf("%s: after a window with %d busy sessions the loop thread's slice is %v; want the short one (%v): %v",
					name, counts[i], d, loopSlice, shortNow[i])
			}
		}
	}
	// The test's own thread keeps the kernel's default.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if a, err := unix.SchedGetAttr(0, 0); err == nil && want != 0 && time.Duration(a.Runtime) == loopSlice {
		t.Errorf("a thread that is not a loop's has the loop's slice")
	}
}

// The governor counts each session once per window and switches with a
// gap between its thresholds, so a load at the edge does not flap.
func TestSliceGovernor(t *testing.T) {
	var g sliceGovernor
	now := time.Now()
	g.start(2, now)
	g.usable = false // decisions only; TestLoopSlice covers the thread
	if g.on != 2*loopSliceOn || g.off != 2*loopSliceOff {
		t.Fatalf("thresholds %d/%d for two CPUs", g.on, g.off)
	}
	seen := make([]uint32, 5)
	for i := 0; i < 10; i++ {
		for j := range seen {
			g.touch(&seen[j]) // the same five sessions, many messages
		}
	}
	if g.busy != 5 {
		t.Fatalf("five sessions counted as %d busy", g.busy)
	}
	g.tick(now.Add(loopSliceWindow / 2))
	if g.busy != 5 || g.window != 1 {
		t.Fatalf("the window closed early")
	}
	g.tick(now.Add(loopSliceWindow))
	if g.busy != 0 || g.window != 2 {
		t.Fatalf("the window did not close: busy %d, window %d", g.busy, g.window)
	}
	for _, c := range []struct {
		short bool
		busy  int
		want  bool
	}{
		{false, 0, false},
		{false, 8, false},
		{false, 14, false},
		{false, 16, true},
		{false, 32, true},
		{true, 32, true},
		{true, 14, true},
		{true, 13, true},
		{true, 12, false},
		{true, 8, false},
	} {
		g.short = c.short
		if got := g.want(c.busy); got != c.want {
			t.Errorf("holding short=%v, %d busy: want short=%v, got %v", c.short, c.busy, c.want, got)
		}
	}
}
