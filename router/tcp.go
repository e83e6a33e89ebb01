package router

import (
	"context"
	"net"
	"syscall"
	"time"

	"pgwrt/config"
)

// dialer builds the dialer for backend sockets: TCP keepalive so a dead peer
// is noticed on an idle socket, and TCP_USER_TIMEOUT so unacknowledged data
// (a frozen or vanished node) fails the socket instead of hanging it.
func dialer(cfg *config.Config) *net.Dialer {
	ut := cfg.TCPUserTimeout.D()
	return &net.Dialer{
		Timeout: cfg.ServerConnectTimeout.D(),
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   cfg.TCPKeepaliveCount > 0,
			Idle:     cfg.TCPKeepaliveIdle.D(),
			Interval: cfg.TCPKeepaliveInterval.D(),
			Count:    cfg.TCPKeepaliveCount,
		},
		Control: func(network, address string, c syscall.RawConn) error {
			if ut <= 0 {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) { serr = setUserTimeout(fd, ut) })
			if err != nil {
				return err
			}
			return serr
		},
	}
}

func dialContext(ctx context.Context, cfg *config.Config, addr string) (net.Conn, error) {
	return dialer(cfg).DialContext(ctx, "tcp", addr)
}

// deadline returns now+d, or the zero time for d <= 0.
func deadline(d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}
