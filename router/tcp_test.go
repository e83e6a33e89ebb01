//go:build linux

package router

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"pgwrt/config"
)

// TestBackendSocketOptions: backend sockets carry the configured keepalive
// and TCP_USER_TIMEOUT, so a vanished or frozen node fails them.
func TestBackendSocketOptions(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cfg := config.Default()
	cfg.TCPKeepaliveIdle = config.Duration(7 * time.Second)
	cfg.TCPKeepaliveInterval = config.Duration(3 * time.Second)
	cfg.TCPKeepaliveCount = 4
	cfg.TCPUserTimeout = config.Duration(6500 * time.Millisecond)
	c, err := dialContext(context.Background(), cfg, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	rc.Control(func(fd uintptr) {
		get := func(name string, level, opt int) {
			v, err := unix.GetsockoptInt(int(fd), level, opt)
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			got[name] = v
		}
		get("SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE)
		get("TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
		get("TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)
		get("TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		get("TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
	})
	want := map[string]int{"SO_KEEPALIVE": 1, "TCP_KEEPIDLE": 7, "TCP_KEEPINTVL": 3, "TCP_KEEPCNT": 4, "TCP_USER_TIMEOUT": 6500}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}
