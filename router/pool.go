package router

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"
)

// poolKey identifies interchangeable backend connections: same user, same
// database, same startup parameters (application_name excepted: it is set
// per client on checkout).
type poolKey struct {
	user, database, params string
}

func makePoolKey(params map[string]string) poolKey {
	var extra []string
	for k, v := range params {
		switch k {
		case "user", "database", "application_name":
			continue
		}
		extra = append(extra, k+"="+v)
	}
	sort.Strings(extra)
	return poolKey{user: params["user"], database: params["database"], params: strings.Join(extra, "\x00")}
}

// pools owns every backend connection not owned by a session: per-key idle
// lists, one global LRU across them, and the global cap on open backends.
type pools struct {
	mu    sync.Mutex
	idle  map[poolKey][]*backend // most recently used last
	open  int                    // all backend connections, idle and busy
	head  *backend               // LRU: least recently used
	tail  *backend
	freed chan struct{} // closed and replaced when a backend closes or goes idle
}

func newPools() *pools {
	return &pools{idle: make(map[poolKey][]*backend), freed: make(chan struct{})}
}

func (p *pools) lruRemove(b *backend) {
	if b.prev != nil {
		b.prev.next = b.next
	} else if p.head == b {
		p.head = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else if p.tail == b {
		p.tail = b.prev
	}
	b.prev, b.next = nil, nil
}

func (p *pools) lruPush(b *backend) {
	b.prev, b.next = p.tail, nil
	if p.tail != nil {
		p.tail.next = b
	} else {
		p.head = b
	}
	p.tail = b
}

func (p *pools) removeIdleLocked(b *backend) {
	l := p.idle[b.key]
	for i, x := range l {
		if x == b {
			l = append(l[:i], l[i+1:]...)
			break
		}
	}
	if len(l) == 0 {
		delete(p.idle, b.key)
	} else {
		p.idle[b.key] = l
	}
	p.lruRemove(b)
}

func (p *pools) signalLocked() {
	close(p.freed)
	p.freed = make(chan struct{})
}

// checkout returns an idle backend for key on node primary at epoch, or nil
// with a reservation to open a new one (call opened or cancelReservation).
// It closes idle connections that no longer point at the primary, evicts
// the least recently used idle connection of another key when the global
// cap is reached, and waits for a free connection until ctx ends.
func (r *Router) checkout(ctx context.Context, key poolKey, t *Topology, allowIdle bool) (*backend, error) {
	p := r.pools
	prim := t.PrimaryNode()
	var stale []*backend
	defer func() {
		for _, b := range stale {
			b.close()
		}
	}()
	for {
		cfg := r.config()
		p.mu.Lock()
		l := p.idle[key]
		for allowIdle && len(l) > 0 {
			b := l[len(l)-1]
			l = l[:len(l)-1]
			p.lruRemove(b)
			if !b.fitFor(prim, cfg, time.Now()) || peekDead(b.conn) {
				p.open--
				stale = append(stale, b)
				continue
			}
			if len(l) == 0 {
				delete(p.idle, key)
			} else {
				p.idle[key] = l
			}
			p.mu.Unlock()
			r.metrics.reused.Inc()
			return b, nil
		}
		if allowIdle {
			delete(p.idle, key)
		}
		if p.open < cfg.MaxBackendConnections {
			p.open++
			p.mu.Unlock()
			return nil, nil
		}
		if v := p.head; v != nil { // evict the LRU idle connection of another key
			p.removeIdleLocked(v)
			stale = append(stale, v)
			p.mu.Unlock()
			return nil, nil // its place is ours
		}
		ch := p.freed
		p.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, errorf(codeTooManyBackends, "pgwrt: all %d backend connections are busy", cfg.MaxBackendConnections)
		}
	}
}

// cancelReservation gives back a reservation made by checkout when the dial
// failed.
func (p *pools) cancelReservation() {
	p.mu.Lock()
	p.open--
	p.signalLocked()
	p.mu.Unlock()
}

// release takes back a backend a session is done with. reusable says it is
// at a clean ReadyForQuery boundary, reset, and on the current primary.
func (r *Router) release(b *backend, reusable bool) {
	p := r.pools
	cfg := r.config()
	if reusable && (cfg.MaxPool == 0 || !b.fitFor(r.Topology().PrimaryNode(), cfg, time.Now())) {
		reusable = false
	}
	p.mu.Lock()
	if reusable && len(p.idle[b.key]) < cfg.MaxPool {
		b.lastUsed = time.Now()
		p.idle[b.key] = append(p.idle[b.key], b)
		p.lruPush(b)
		p.signalLocked()
		p.mu.Unlock()
		return
	}
	p.open--
	p.signalLocked()
	p.mu.Unlock()
	b.close()
}

// closeIdle closes idle backends matching drop (nil: all).
func (r *Router) closeIdle(drop func(*backend) bool) int {
	p := r.pools
	var out []*backend
	p.mu.Lock()
	for b := p.head; b != nil; {
		next := b.next
		if drop == nil || drop(b) {
			p.removeIdleLocked(b)
			p.open--
			out = append(out, b)
		}
		b = next
	}
	if len(out) > 0 {
		p.signalLocked()
	}
	p.mu.Unlock()
	for _, b := range out {
		b.close()
	}
	return len(out)
}

// poolStats is a point-in-time count for status pages.
type poolStats struct {
	Open, Idle int
}

func (p *pools) stats() poolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return poolStats{Open: p.open, Idle: n}
}
