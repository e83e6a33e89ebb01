//go:build !nosystemd

package main

// systemd integration (sd_notify, watchdog, socket activation). All of it
// is a no-op when systemd did not start us: no NOTIFY_SOCKET, no
// WATCHDOG_USEC, no LISTEN_FDS for our pid. procd sets none of them. A
// router build leaves this file out with -tags nosystemd (sd_stub.go).

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// sdNotify sends state to systemd (Type=notify). Errors are ignored: there
// is nothing to do about them, and systemd times us out if READY=1 never
// arrives.
func sdNotify(state string) {
	daemon.SdNotify(false, state)
}

// sdReady says the listeners are open and the router runs, and after a
// reload that it is done; status is what "systemctl status" shows.
func sdReady(status string) {
	sdNotify(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// sdReloading starts a reload (for Type=notify-reload, systemd ≥ 253):
// RELOADING=1 with the CLOCK_MONOTONIC time it began.
func sdReloading() {
	sdNotify(daemon.SdNotifyReloading + "\n" + daemon.SdNotifyMonotonicUsec())
}

// sdStopping says the daemon is shutting down.
func sdStopping() {
	sdNotify(daemon.SdNotifyStopping)
}

// sdWatchdog sends WATCHDOG=1 every WatchdogSec/2 until ctx ends, as long
// as healthy(WatchdogSec) says the accept loops are alive. When they hang,
// the pings stop and systemd restarts the service.
func sdWatchdog(ctx context.Context, log *slog.Logger, healthy func(grace time.Duration) bool) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog: bad environment; not pinging", "error", err)
		return
	}
	if d <= 0 {
		return
	}
	tk := time.NewTicker(d / 2)
	defer tk.Stop()
	sick := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		if !healthy(d) {
			if !sick {
				log.Error("accept loop stuck; no longer pinging the systemd watchdog", "watchdog", d)
			}
			sick = true
			continue
		}
		if sick {
			log.Info("accept loop alive again; pinging the systemd watchdog")
			sick = false
		}
		sdNotify(daemon.SdNotifyWatchdog)
	}
}

// sdListeners returns the stream sockets systemd passed (LISTEN_FDS for
// our pid), or none. The LISTEN_* variables are unset either way.
func sdListeners() ([]net.Listener, error) {
	all, err := activation.Listeners()
	if err != nil {
		return nil, err
	}
	var lns []net.Listener
	for _, ln := range all {
		if ln != nil {
			lns = append(lns, ln)
		}
	}
	if len(all) > 0 && len(lns) == 0 {
		return nil, fmt.Errorf("systemd passed %d sockets, but none is a listening stream socket (ListenStream=)", len(all))
	}
	return lns, nil
}
