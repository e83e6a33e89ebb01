//go:build linux

package router

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"pgwrt/config"
)

// TestFreeBind binds the listener to an address no interface has, as a
// router's LAN address is at boot before the interface is up. It runs in a
// network namespace of its own (only a loopback that is down), so nothing
// outside the test sees the socket.
func TestFreeBind(t *testing.T) {
	type result struct {
		skip           string
		plain, freeErr error
	}
	ch := make(chan result, 1)
	go func() {
		// This thread enters a new network namespace and is never
		// unlocked, so Go discards it when the goroutine ends.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{skip: "cannot create a network namespace: " + err.Error()}
			return
		}
		if err := loopbackUp(); err != nil {
			ch <- result{skip: "cannot bring up lo in the namespace: " + err.Error()}
			return
		}
		cfg := config.Default()
		cfg.Listen = "192.0.2.10:5432" // TEST-NET-1, on no interface here
		var r result
		if ln, err := Listen(cfg); err == nil {
			ln.Close()
		} else {
			r.plain = err
		}
		cfg.FreeBind = true
		ln, err := Listen(cfg)
		if err == nil {
			ln.Close()
		}
		r.freeErr = err
		ch <- r
	}()
	r := <-ch
	if r.skip != "" {
		t.Skip(r.skip)
	}
	if r.plain == nil {
		t.Fatal("binding an absent address without freebind worked; the test proves nothing")
	}
	if r.freeErr != nil {
		t.Fatalf("freebind: %v", r.freeErr)
	}
}

// loopbackUp sets lo up in the current network namespace (with it down,
// Linux lets any address be bound, and the test would prove nothing).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
