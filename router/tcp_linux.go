//go:build linux

package router

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func setUserTimeout(fd uintptr, d time.Duration) error {
	return unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond))
}

func setFreeBind(fd uintptr) error {
	if err := unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_FREEBIND, 1); err != nil {
		return err
	}
	// IPv6 sockets honour the IPv4 option on Linux; IPV6_FREEBIND exists
	// since 4.15 and is best effort.
	unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_FREEBIND, 1)
	return nil
}

// peekDead reports whether an idle connection has been closed by its peer
// or has unexpected bytes waiting (a FATAL sent by a shutting-down backend).
// It costs one non-blocking recv with MSG_PEEK.
func peekDead(c net.Conn) bool {
	if fc, ok := c.(*fdConn); ok {
		return fc.peekDead()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	dead := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case n > 0:
			dead = true // nothing should arrive on an idle backend
		case n == 0 && err == nil:
			dead = true // EOF
		case err == unix.EAGAIN:
		default:
			dead = true
		}
		return true
	})
	return dead || err != nil
}
