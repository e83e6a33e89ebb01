package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"pgwrt/config"
	"pgwrt/router"
)

// runDaemon is "pgwrt run" once the config has loaded: it runs until SIGINT or
// SIGTERM (exit 0) or until a listener fails (exit 1). load reads the
// config again on SIGHUP.
func runDaemon(cfg *config.Config, load func() (*config.Config, error), stderr io.Writer) int {
	level := new(slog.LevelVar)
	level.Set(logLevel(cfg.LogLevel))
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// From here on SIGHUP no longer kills: one that comes while starting
	// up is a reload once started.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	lns, err := clientListeners(cfg, log)
	if err != nil {
		log.Error("cannot listen", "listen", cfg.Listen, "error", err)
		return 1
	}
	r := router.New(cfg, log)
	r.Start()

	// One accept loop per listener (systemd may pass several); the first
	// to fail stops the daemon.
	watched := make([]*acceptWatch, len(lns))
	serveErr := make(chan error, len(lns))
	addrs := make([]string, len(lns))
	for i, ln := range lns {
		w := newAcceptWatch(ln)
		watched[i], addrs[i] = w, ln.Addr().String()
		go func() {
			err := r.Serve(ctx, w)
			w.exited.Store(true)
			serveErr <- err
		}()
	}
	hs := startHTTP(cfg.HTTPListen, r, log)
	log.Info("pgwrt started", "version", version, "listen", strings.Join(addrs, ","), "backends", len(cfg.Backends), "max_clients", cfg.MaxClients)
	sdReady(fmt.Sprintf("listening on %s, %d backends", strings.Join(addrs, ", "), len(cfg.Backends)))
	go sdWatchdog(ctx, log, func(grace time.Duration) bool {
		for _, w := range watched {
			if !w.alive(grace) {
				return false
			}
		}
		return true
	})

	reloaded := make(chan struct{})
	go func() {
		defer close(reloaded)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			sdReloading()
			if ncfg := reload(r, load, log); ncfg != nil {
				level.Set(logLevel(ncfg.LogLevel))
				hs = hs.moveTo(ncfg.HTTPListen, r, log)
				cfg = ncfg
			}
			sdReady(fmt.Sprintf("listening on %s, %d backends", strings.Join(addrs, ", "), len(cfg.Backends)))
		}
	}()

	var failed error
	pending := len(lns)
	select {
	case <-ctx.Done():
	case failed = <-serveErr:
		pending--
	}
	stop()
	<-reloaded // a reload under way ends (and says READY=1) first; hs is ours again
	sdStopping()
	log.Info("pgwrt stopping")
	r.Close()
	hs.close()
	for ; pending > 0; pending-- {
		if err := <-serveErr; err != nil && failed == nil {
			failed = err
		}
	}
	if failed != nil {
		log.Error("listener failed", "error", failed)
		return 1
	}
	log.Info("pgwrt stopped")
	return 0
}

// reload loads the config again and hands it to the router (which logs
// what changed). It returns the new config, or nil when it was refused (the
// old one keeps running).
func reload(r *router.Router, load func() (*config.Config, error), log *slog.Logger) *config.Config {
	ncfg, err := load()
	if err != nil {
		log.Error("reload failed; keeping the running config", "error", strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; "))
		return nil
	}
	if err := r.Reload(ncfg); err != nil {
		log.Error("reload failed; keeping the running config", "error", err)
		return nil
	}
	return ncfg
}

// clientListeners returns the sockets systemd passed (socket activation;
// listen is then not used), or else one listener on cfg.Listen.
func clientListeners(cfg *config.Config, log *slog.Logger) ([]net.Listener, error) {
	lns, err := sdListeners()
	if err != nil {
		return nil, err
	}
	if len(lns) > 0 {
		log.Info("socket activation: serving the sockets systemd passed; listen is not used", "sockets", len(lns))
		return lns, nil
	}
	ln, err := router.Listen(cfg)
	if err != nil {
		return nil, err
	}
	return []net.Listener{ln}, nil
}

func logLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// acceptWatch is a listener that knows whether its accept loop is alive,
// for the systemd watchdog: a healthy loop is either waiting in Accept or
// came back from it a moment ago (it only hands the connection to a
// goroutine, or backs off briefly when out of descriptors).
type acceptWatch struct {
	net.Listener
	start    time.Time
	inAccept atomic.Bool
	last     atomic.Int64 // when Accept last returned, as time since start (monotonic)
	exited   atomic.Bool  // Serve returned
}

func newAcceptWatch(ln net.Listener) *acceptWatch {
	return &acceptWatch{Listener: ln, start: time.Now()}
}

func (w *acceptWatch) Accept() (net.Conn, error) {
	w.inAccept.Store(true)
	c, err := w.Listener.Accept()
	w.last.Store(int64(time.Since(w.start)))
	w.inAccept.Store(false)
	return c, err
}

// alive reports whether the accept loop is in Accept now or left it less
// than grace ago.
func (w *acceptWatch) alive(grace time.Duration) bool {
	if w.exited.Load() {
		return false
	}
	if w.inAccept.Load() {
		return true
	}
	return time.Since(w.start)-time.Duration(w.last.Load()) < grace
}
