//go:build !nosystemd

package main

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// TestWatchdogFollowsHealth runs sdWatchdog in the test process against a
// fake NOTIFY_SOCKET: it pings every WatchdogSec/2 while healthy, asks
// about health with WatchdogSec as the grace, stops pinging while the
// accept loops are stuck and starts again when they recover.
func TestWatchdogFollowsHealth(t *testing.T) {
	ns := newNotifySocket(t)
	t.Setenv("NOTIFY_SOCKET", ns.path)
	t.Setenv("WATCHDOG_USEC", "40000") // a ping every 20ms
	var healthy atomic.Bool
	var grace atomic.Int64
	healthy.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		sdWatchdog(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), func(g time.Duration) bool {
			grace.Store(int64(g))
			return healthy.Load()
		})
	}()
	defer func() { cancel(); <-done }()

	count := func(d time.Duration) int {
		n := 0
		end := time.After(d)
		for {
			select {
			case m := <-ns.msgs:
				if m != "WATCHDOG=1" {
					t.Fatalf("unexpected notification %q", m)
				}
				n++
			case <-end:
				return n
			}
		}
	}
	if n := count(300 * time.Millisecond); n < 5 {
		t.Errorf("healthy: %d pings in 300ms, want about 15", n)
	}
	if g := time.Duration(grace.Load()); g != 40*time.Millisecond {
		t.Errorf("health asked with grace %v, want WatchdogSec (40ms)", g)
	}
	healthy.Store(false)
	count(50 * time.Millisecond) // one may have been under way
	if n := count(300 * time.Millisecond); n != 0 {
		t.Errorf("stuck: %d pings, want none", n)
	}
	healthy.Store(true)
	if n := count(300 * time.Millisecond); n < 5 {
		t.Errorf("recovered: %d pings in 300ms, want about 15", n)
	}
}
