package router

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"pgwrt/config"
	"pgwrt/router/scram"
)

// Router is one running pgwrt: listener, slots, pools, monitors and the
// topology they share. It owns its logger and metrics; there is no global
// state.
type Router struct {
	cfg      atomic.Pointer[config.Config]
	log      *slog.Logger
	slots    *slots
	bufs     *bufs
	pools    *pools
	sessions *sessions
	scram    *scram.Cache
	metrics  *routerMetrics
	pepper   [16]byte

	vmu      sync.Mutex
	verified map[string]verified

	topoMu    sync.Mutex // guards nodes, monitors, holdStart and publishing
	changeMu  sync.Mutex // serialises onPrimaryChange
	nodes     []NodeState
	monitors  []*monitor
	holdStart time.Time
	topo      atomic.Pointer[Topology]

	connMu sync.Mutex
	conns  map[net.Conn]struct{} // every accepted connection, until it ends

	ev evloops  // forwarding event loops (Linux)
	tl txnLoops // transaction-mode loops (Linux)

	stmts stmtRegistry // transaction mode: protocol-level statements (prepared.go)

	stopping chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// New builds a Router for a validated config. Nothing runs until Start.
func New(cfg *config.Config, log *slog.Logger) *Router {
	if log == nil {
		log = slog.Default()
	}
	r := &Router{
		log:      log,
		slots:    newSlots(cfg.MaxClients),
		bufs:     newBufs(min(cfg.MaxClients, cfg.MaxBackendConnections), cfg.BufferSize),
		sessions: newSessions(),
		scram:    scram.NewCache(256),
		verified: make(map[string]verified),
		conns:    make(map[net.Conn]struct{}),
		stopping: make(chan struct{}),
	}
	r.pools = newPools(r.config)
	rand.Read(r.pepper[:])
	r.cfg.Store(cfg)
	r.ev.engine = cfg.IOEngine
	r.metrics = newMetrics(r)
	r.topo.Store(&Topology{Primary: -1, changed: make(chan struct{})})
	return r
}

func (r *Router) config() *config.Config { return r.cfg.Load() }

// Topology returns the current snapshot.
func (r *Router) Topology() *Topology { return r.topo.Load() }

// Metrics returns the router's metrics set (for /metrics).
func (r *Router) Metrics() *metrics.Set { return r.metrics.set }

// Start launches the monitors and the janitor.
func (r *Router) Start() {
	cfg := r.config()
	r.topoMu.Lock()
	for _, b := range cfg.Backends {
		r.nodes = append(r.nodes, NodeState{Name: b.ID(), Host: b.Host, Port: b.Port, LagBytes: -1})
		m := newMonitor(r, b)
		r.monitors = append(r.monitors, m)
		go m.run()
	}
	r.publishLocked()
	r.topoMu.Unlock()
	r.wg.Add(1)
	go r.janitor()
}

// Listen opens the client listener for cfg (IP_FREEBIND when asked).
func Listen(cfg *config.Config) (net.Listener, error) {
	lc := net.ListenConfig{}
	if cfg.FreeBind {
		lc.Control = func(network, address string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = setFreeBind(fd) }); err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", cfg.Listen)
}

// Serve accepts clients on ln until ctx ends or Close is called.
func (r *Router) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		select {
		case <-ctx.Done():
		case <-r.stopping:
		}
		ln.Close()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			select {
			case <-r.stopping:
				return nil
			case <-ctx.Done():
				return nil
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Temporary (out of descriptors): back off, as net/http does.
				if backoff == 0 {
					backoff = 5 * time.Millisecond
				} else if backoff *= 2; backoff > time.Second {
					backoff = time.Second
				}
				r.log.Warn("accept error; retrying", "error", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		r.wg.Add(1)
		r.connMu.Lock()
		r.conns[c] = struct{}{}
		r.connMu.Unlock()
		go func() {
			defer r.wg.Done()
			defer func() {
				r.connMu.Lock()
				delete(r.conns, c)
				r.connMu.Unlock()
			}()
			r.serveConn(c)
		}()
	}
}

// Close stops monitors, ends all sessions with 57P01 and closes idle
// backends.
func (r *Router) Close() {
	r.stopOnce.Do(func() {
		close(r.stopping)
		r.topoMu.Lock()
		ms := r.monitors
		r.monitors = nil
		r.topoMu.Unlock()
		for _, m := range ms {
			m.close()
		}
		for _, s := range r.sessions.all() {
			s.kill(errorf(codeShutdown, "pgwrt is shutting down"))
		}
		// Connections still logging in (or silent) do not hold up the stop.
		r.connMu.Lock()
		for c := range r.conns {
			c.SetDeadline(time.Now())
		}
		r.connMu.Unlock()
		r.closeIdle(nil)
		r.wg.Wait()
		r.closeIdle(nil)
		r.ev.close()
		r.tl.close()
	})
}
