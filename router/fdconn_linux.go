//go:build linux

package router

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// fdConn is a socket outside Go's netpoller: a non-blocking descriptor
// that the transaction loop (txnloop_linux.go) reads and writes directly,
// and that goroutines may still use as a net.Conn for what is rare (a
// login's parameters, a reset, an error to the client): their reads and
// writes wait in poll(2) on their own thread. A socket that stayed in the
// netpoller would wake it for every packet the loop handles, and moving
// one in and out per transaction costs more system calls than the loop
// saves.
//
// Close shuts the socket down at once, which wakes every waiter on it (the
// loop sees end of file); the descriptor itself closes when its last user
// lets go (hold and let), so its number is never reused under a user.
type fdConn struct {
	fd           int
	laddr, raddr net.Addr

	mu     sync.Mutex
	users  int // goroutines inside Read or Write, plus a loop that registered it
	closed bool

	rdl, wdl atomic.Int64 // deadlines (UnixNano), 0 none
}

// newFdConn takes over c's socket: c is closed, and its descriptor's copy
// serves from now on. ok is false, with c untouched, where c has no
// descriptor.
func newFdConn(c net.Conn) (*fdConn, bool) {
	fd, ok := dupConn(c)
	if !ok {
		return nil, false
	}
	f := &fdConn{fd: fd, laddr: c.LocalAddr(), raddr: c.RemoteAddr()}
	c.Close()
	return f, true
}

// toNetConn gives c's socket back to Go's netpoller as a net.Conn; c is
// closed.
func (c *fdConn) toNetConn() (net.Conn, error) {
	if !c.hold() {
		return nil, net.ErrClosed
	}
	f := os.NewFile(uintptr(c.fd), "socket")
	nc, err := net.FileConn(f) // a copy of the descriptor; f's is ours
	c.let()
	c.Close()
	return nc, err
}

// hold marks a user; false once c is closed.
func (c *fdConn) hold() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.users++
	return true
}

// let ends a use; the last one out of a closed conn closes its descriptor.
func (c *fdConn) let() {
	c.mu.Lock()
	c.users--
	last := c.closed && c.users == 0
	c.mu.Unlock()
	if last {
		unix.Close(c.fd)
	}
}

func (c *fdConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	unix.Shutdown(c.fd, unix.SHUT_RDWR)
	last := c.users == 0
	c.mu.Unlock()
	if last {
		unix.Close(c.fd)
	}
	return nil
}

func (c *fdConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// pollSlice bounds one wait in poll, so that a deadline another goroutine
// sets is seen (Close wakes a waiter at once).
const pollSlice = 50 * time.Millisecond

// wait waits until c's socket is ready for ev or the deadline in dl has
// passed.
func (c *fdConn) wait(ev int16, dl *atomic.Int64) error {
	for {
		d := pollSlice
		if t := dl.Load(); t != 0 {
			left := time.Until(time.Unix(0, t))
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			d = min(d, left)
		}
		pfd := []unix.PollFd{{Fd: int32(c.fd), Events: ev}}
		n, err := unix.Poll(pfd, int((d+time.Millisecond-1)/time.Millisecond))
		if err != nil && err != unix.EINTR {
			return os.NewSyscallError("poll", err)
		}
		if n > 0 {
			return nil
		}
	}
}

func (c *fdConn) Read(p []byte) (int, error) {
	if !c.hold() {
		return 0, net.ErrClosed
	}
	defer c.let()
	for {
		n, err := unix.Read(c.fd, p)
		switch {
		case n > 0:
			return n, nil
		case err == nil:
			if len(p) == 0 {
				return 0, nil
			}
			return 0, io.EOF
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			return 0, &net.OpError{Op: "read", Net: "tcp", Addr: c.raddr, Err: os.NewSyscallError("read", err)}
		}
		if err := c.wait(unix.POLLIN, &c.rdl); err != nil {
			return 0, &net.OpError{Op: "read", Net: "tcp", Addr: c.raddr, Err: err}
		}
	}
}

func (c *fdConn) Write(p []byte) (int, error) {
	if !c.hold() {
		return 0, net.ErrClosed
	}
	defer c.let()
	done := 0
	for done < len(p) {
		n, err := unix.Write(c.fd, p[done:])
		if n > 0 {
			done += n
			continue
		}
		switch {
		case err == unix.EINTR:
			continue
		case err != unix.EAGAIN:
			if err == nil {
				err = unix.EPIPE
			}
			return done, &net.OpError{Op: "write", Net: "tcp", Addr: c.raddr, Err: os.NewSyscallError("write", err)}
		}
		if err := c.wait(unix.POLLOUT, &c.wdl); err != nil {
			return done, &net.OpError{Op: "write", Net: "tcp", Addr: c.raddr, Err: err}
		}
	}
	return done, nil
}

// writeNow writes what the socket takes without waiting (a goodbye).
func (c *fdConn) writeNow(p []byte) {
	if c.hold() {
		unix.Write(c.fd, p)
		c.let()
	}
}

func (c *fdConn) LocalAddr() net.Addr  { return c.laddr }
func (c *fdConn) RemoteAddr() net.Addr { return c.raddr }

func setDL(a *atomic.Int64, t time.Time) {
	if t.IsZero() {
		a.Store(0)
	} else {
		a.Store(t.UnixNano())
	}
}

func (c *fdConn) SetDeadline(t time.Time) error {
	setDL(&c.rdl, t)
	setDL(&c.wdl, t)
	return nil
}
func (c *fdConn) SetReadDeadline(t time.Time) error  { setDL(&c.rdl, t); return nil }
func (c *fdConn) SetWriteDeadline(t time.Time) error { setDL(&c.wdl, t); return nil }

// peek is peekDead for a conn outside the netpoller.
func (c *fdConn) peekDead() bool {
	if !c.hold() {
		return true
	}
	defer c.let()
	var b [1]byte
	n, _, err := unix.Recvfrom(c.fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n > 0 || (n == 0 && err == nil) || (err != nil && err != unix.EAGAIN)
}

// closeNow closes a connection outside the netpoller with a Terminate
// that never waits; false for any other kind.
func closeNow(c net.Conn) bool {
	fc, ok := c.(*fdConn)
	if !ok {
		return false
	}
	fc.writeNow([]byte{'X', 0, 0, 0, 4})
	fc.Close()
	return true
}

// backendToNet gives a backend's socket back to Go's netpoller (a
// session-mode client took a backend a transaction loop had used).
func backendToNet(r *Router, be *backend) error {
	fc, ok := be.conn.(*fdConn)
	if !ok {
		return nil
	}
	// Out of the loops' epoll sets first: Go's copy of the descriptor
	// would keep the registrations alive.
	for i, l := range r.tl.loops {
		if be.loops&(1<<i) != 0 {
			unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fc.fd, nil)
		}
	}
	be.loops = 0
	c, err := fc.toNetConn()
	if err != nil {
		return err
	}
	be.conn = c
	return nil
}

// txnLoop is a transaction loop for a new transaction-mode client, nil
// where there is none.
func (r *Router) txnLoop() *tloop { return r.tl.pick(r) }
