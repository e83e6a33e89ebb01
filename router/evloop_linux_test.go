//go:build linux

package router

import (
	"sync"
	"testing"

	"golang.org/x/sys/unix"
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
	p := &pipe{ep: l, cfd: c[0], bfd: b[0], cbuf: make([]byte, 64), sbuf: make([]byte, 64), done: make(chan struct{})}
	res := make(chan [2]error, 1)
	l.post(func() {
		l.add(p)
		// Client bytes scanned but not yet written, server output
		// pending: no interest on either socket.
		p.cpos, p.sr = 1, 1
		p.interest()
		if p.cmask != unix.EPOLLOUT || p.bmask != unix.EPOLLOUT {
			t.Errorf("masks %x %x", p.cmask, p.bmask)
		}
		p.cpos, p.cn, p.sr = 1, len(p.cbuf), 0
		p.interest()
		if p.cmask != 0 || p.bmask != unix.EPOLLIN|unix.EPOLLOUT {
			t.Errorf("masks %x %x", p.cmask, p.bmask)
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
