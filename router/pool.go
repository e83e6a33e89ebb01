package router

import (
	"cmp"
	"context"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"pgwrt/config"
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

// poolID names a Pool: the (database, user) part of a poolKey.
type poolID struct {
	database, user string
}

func (k poolKey) pool() poolID { return poolID{database: k.database, user: k.user} }

// Pool is the backends and waiting clients of one (database, user), on the
// model of PgBouncer's objects.c: a backend is idle here or active (checked
// out to a session), and a client that found neither an idle backend nor
// room for a new one waits here until a release or a freed place is granted
// to it. Backends with different startup parameters share the pool, but an
// idle one goes only to a client with its exact poolKey.
type Pool struct {
	id          poolID
	idle        []*backend // most recently used last
	active      int        // backends checked out to sessions
	dialing     int        // reservations to open one, not yet opened
	first, last *waiter    // waiting clients, oldest first
	nwait       int
	// size caps the pool's backends (pool_size in transaction mode), 0
	// none; the last checkout's word.
	size int
}

func (pl *Pool) empty() bool {
	return len(pl.idle) == 0 && pl.active == 0 && pl.dialing == 0 && pl.nwait == 0
}

// full: the pool may not open another backend without closing one of its
// idle ones.
func (pl *Pool) full() bool {
	return pl.size > 0 && pl.active+pl.dialing+len(pl.idle) >= pl.size
}

// waiter is a client waiting in a Pool. Its grant is stored under pools.mu,
// then notify is called once, outside the lock, by whoever freed the place:
// a goroutine can wake on a channel, a loop thread could post to its loop.
type waiter struct {
	key       poolKey
	allowIdle bool // may take an idle backend someone else logged in
	size      int  // the pool's cap for this client (pool_size), 0 none
	notify    func()
	// owner (a transaction loop) and onLoop: a grant made by a release
	// on that same loop calls onLoop there and then instead of notify.
	owner  any
	onLoop func()

	// under pools.mu
	pool       *Pool
	since      time.Time
	seq        uint64 // order of arrival across pools
	prev, next *waiter
	queued     bool
	granted    bool
	be         *backend // the grant: a backend, or nil for a reservation to dial one
}

// pools owns every backend connection not owned by a session and counts
// those that are: a Pool per (database, user), one global LRU across their
// idle backends, and the global cap on open backends.
type pools struct {
	cfg   func() *config.Config
	mu    sync.Mutex
	byID  map[poolID]*Pool
	open  int // all backend connections: idle, active and reserved dials
	idle  int
	nwait int // waiters across all pools
	seq   uint64
	head  *backend // LRU: least recently used
	tail  *backend
}

func newPools(cfg func() *config.Config) *pools {
	return &pools{cfg: cfg, byID: make(map[poolID]*Pool)}
}

// after is what an operation on pools does once the lock is released:
// close connections (a Terminate write can block) and tell granted
// waiters. touched pools are dropped before that if they hold nothing.
type after struct {
	touched []*Pool
	close   []*backend
	notify  []*waiter
	owner   any // who is releasing: its own waiters are called by onLoop
}

func (p *pools) unlock(a *after) {
	for _, pl := range a.touched {
		if pl.empty() && p.byID[pl.id] == pl {
			delete(p.byID, pl.id)
		}
	}
	p.mu.Unlock()
	for _, b := range a.close {
		b.close()
	}
	for _, w := range a.notify {
		if a.owner != nil && w.owner == a.owner {
			w.onLoop()
		} else {
			w.notify()
		}
	}
}

// poolLocked returns key's pool, creating it.
func (p *pools) poolLocked(key poolKey) *Pool {
	id := key.pool()
	pl := p.byID[id]
	if pl == nil {
		pl = &Pool{id: id}
		p.byID[id] = pl
	}
	return pl
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

// removeIdleLocked takes b, idle, out of its pool and the LRU. It stays
// counted in open.
func (p *pools) removeIdleLocked(b *backend, a *after) {
	pl := b.pool
	if i := slices.Index(pl.idle, b); i >= 0 {
		pl.idle = slices.Delete(pl.idle, i, i+1)
	}
	p.lruRemove(b)
	p.idle--
	a.touched = append(a.touched, pl)
}

func (p *pools) pushIdleLocked(b *backend) {
	b.lastUsed = time.Now()
	b.pool.idle = append(b.pool.idle, b)
	p.lruPush(b)
	p.idle++
}

func (p *pools) enqueueLocked(pl *Pool, w *waiter) {
	p.seq++
	w.pool, w.seq, w.since, w.queued = pl, p.seq, time.Now(), true
	w.prev, w.next = pl.last, nil
	if pl.last != nil {
		pl.last.next = w
	} else {
		pl.first = w
	}
	pl.last = w
	pl.nwait++
	p.nwait++
}

func (p *pools) dequeueLocked(w *waiter, a *after) {
	pl := w.pool
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		pl.first = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		pl.last = w.prev
	}
	w.prev, w.next, w.queued = nil, nil, false
	pl.nwait--
	p.nwait--
	a.touched = append(a.touched, pl)
}

// grantLocked gives w a backend (active from now on) or, be nil, a
// reservation already counted in open.
func (p *pools) grantLocked(w *waiter, be *backend, a *after) {
	p.dequeueLocked(w, a)
	w.granted, w.be = true, be
	if be != nil {
		w.pool.active++
	} else {
		w.pool.dialing++
	}
	a.notify = append(a.notify, w)
}

// oldestLocked is the waiter that came first, across the pools that may
// open another backend (making room by closing one of their own idle ones
// if they must).
func (p *pools) oldestLocked() *waiter {
	var o *waiter
	for _, pl := range p.byID {
		if pl.full() && len(pl.idle) == 0 {
			continue
		}
		if w := pl.first; w != nil && (o == nil || w.seq < o.seq) {
			o = w
		}
	}
	return o
}

// grantWaitersLocked gives reservations to waiters, oldest first, while
// there is room: under the cap, or in the place of the least recently used
// idle backend, which is evicted as it would be for a newcomer. A waiter
// whose pool is at its size waits for its own pool's backends (or takes
// the place of one of its idle ones).
func (p *pools) grantWaitersLocked(cfg *config.Config, a *after) {
	for p.nwait > 0 {
		w := p.oldestLocked()
		if w == nil {
			return
		}
		switch pl := w.pool; {
		case pl.full():
			v := pl.idle[0] // its least recently used
			p.removeIdleLocked(v, a)
			a.close = append(a.close, v)
		case p.open < cfg.MaxBackendConnections:
			p.open++
		case p.head != nil:
			v := p.head
			p.removeIdleLocked(v, a)
			a.close = append(a.close, v)
		default:
			return
		}
		p.grantLocked(w, nil, a)
	}
}

// checkout gives w, without waiting, one of: an idle backend of w.key fit
// for prim (unfit ones are closed); nil with a reservation to open a new
// one (call opened or cancelReservation), under the cap or in the place of
// the least recently used idle backend of any key, evicted; or queued: w
// waits in its pool until release or a freed place grants it one of the
// first two (see cancelWait).
func (p *pools) checkout(w *waiter, prim *NodeState) (be *backend, queued bool) {
	cfg := p.cfg()
	var a after
	p.mu.Lock()
	defer p.unlock(&a)
	// Waiters go first should room have appeared without a release (the
	// cap raised by a reload).
	p.grantWaitersLocked(cfg, &a)
	pl := p.poolLocked(w.key)
	pl.size = w.size
	a.touched = append(a.touched, pl)
	if w.allowIdle {
		now := time.Now()
		for i := len(pl.idle) - 1; i >= 0; i-- {
			b := pl.idle[i]
			if b.key != w.key {
				continue
			}
			p.removeIdleLocked(b, &a)
			if !b.fitFor(prim, cfg, now) || peekDead(b.conn) {
				p.open--
				a.close = append(a.close, b)
				continue
			}
			pl.active++
			return b, false
		}
	}
	switch {
	case p.nwait > 0:
		// Older waiters got what room there was.
	case pl.full():
		if len(pl.idle) > 0 { // the pool's own LRU idle backend (another key) makes room
			v := pl.idle[0]
			p.removeIdleLocked(v, &a)
			a.close = append(a.close, v)
			pl.dialing++
			return nil, false
		}
	case p.open < cfg.MaxBackendConnections:
		p.open++
		pl.dialing++
		return nil, false
	case p.head != nil: // evict the LRU idle connection of another key
		v := p.head
		p.removeIdleLocked(v, &a)
		a.close = append(a.close, v)
		pl.dialing++
		return nil, false // its place is ours
	}
	p.enqueueLocked(pl, w)
	// Stale backends closed above free places.
	p.grantWaitersLocked(cfg, &a)
	return nil, true
}

// cancelWait ends w's wait (timeout, shutdown). If it was granted first,
// the grant is returned: the caller must release the backend or, granted
// with be nil, cancel the reservation.
func (p *pools) cancelWait(w *waiter) (be *backend, granted bool) {
	var a after
	p.mu.Lock()
	if w.queued {
		p.dequeueLocked(w, &a)
	}
	be, granted = w.be, w.granted
	p.unlock(&a)
	return be, granted
}

// opened books a backend dialled on a reservation as active in key's pool.
func (p *pools) opened(b *backend, key poolKey) {
	p.mu.Lock()
	b.key = key
	b.pool = p.poolLocked(key)
	b.pool.active++
	if b.pool.dialing > 0 {
		b.pool.dialing--
	}
	p.mu.Unlock()
}

// cancelReservation gives back a reservation for key made by checkout when
// the dial failed.
func (p *pools) cancelReservation(key poolKey) {
	cfg := p.cfg()
	var a after
	p.mu.Lock()
	p.open--
	if pl := p.byID[key.pool()]; pl != nil && pl.dialing > 0 {
		pl.dialing--
		a.touched = append(a.touched, pl)
	}
	p.grantWaitersLocked(cfg, &a)
	p.unlock(&a)
}

// release takes back a backend from its session. reusable says it is at a
// clean ReadyForQuery boundary, reset, fit for the primary and that
// max_pool allows caching: it then goes to the oldest client of its pool
// waiting for its key, else idle (max_pool per key), else it is closed. A
// place freed goes to the oldest waiter of any pool.
func (p *pools) release(b *backend, reusable bool) { p.releaseBy(b, reusable, nil) }

// releaseBy is release by owner (a transaction loop, or nil): a waiter of
// its own that the release grants is told by its onLoop, at once.
func (p *pools) releaseBy(b *backend, reusable bool, owner any) {
	cfg := p.cfg()
	a := after{owner: owner}
	p.mu.Lock()
	defer p.unlock(&a)
	pl := b.pool
	if pl == nil { // not booked by opened
		pl = p.poolLocked(b.key)
		b.pool = pl
	} else {
		pl.active--
	}
	a.touched = append(a.touched, pl)
	if reusable {
		for w := pl.first; w != nil; w = w.next {
			if w.allowIdle && w.key == b.key {
				b.lastUsed = time.Now()
				p.grantLocked(w, b, &a)
				return
			}
		}
		// Session mode caches max_pool idle backends per poolKey; a
		// transaction-mode pool keeps all of its pool_size, since its
		// clients come back for one at their next transaction.
		n, limit := 0, cfg.MaxPool
		if pl.size > 0 {
			limit = pl.size
		}
		for _, x := range pl.idle {
			if x.key == b.key {
				n++
			}
		}
		if n < limit {
			p.pushIdleLocked(b)
			p.grantWaitersLocked(cfg, &a)
			return
		}
	}
	p.open--
	a.close = append(a.close, b)
	p.grantWaitersLocked(cfg, &a)
}

// closeIdle closes idle backends matching drop (nil: all).
func (p *pools) closeIdle(drop func(*backend) bool) int {
	cfg := p.cfg()
	var a after
	p.mu.Lock()
	for b := p.head; b != nil; {
		next := b.next
		if drop == nil || drop(b) {
			p.removeIdleLocked(b, &a)
			p.open--
			a.close = append(a.close, b)
		}
		b = next
	}
	n := len(a.close)
	p.grantWaitersLocked(cfg, &a)
	p.unlock(&a)
	return n
}

// checkout returns an idle backend for key on t's primary, or nil with a
// reservation to open a new one (call pools.opened or cancelReservation).
// While every backend connection is busy it waits in key's pool, until
// the context deadline returns ends (it is made only for a wait) or the
// router stops.
func (r *Router) checkout(deadline func() context.Context, key poolKey, t *Topology, allowIdle bool, size int) (*backend, error) {
	granted := make(chan struct{}, 1)
	w := &waiter{key: key, allowIdle: allowIdle, size: size, notify: func() { granted <- struct{}{} }}
	be, queued := r.pools.checkout(w, t.PrimaryNode())
	if queued {
		busy := errorf(codeTooManyBackends, "pgwrt: all %d backend connections are busy", r.config().MaxBackendConnections)
		ctx := deadline()
		if size > 0 {
			// Transaction mode: a client waits for its pool up to
			// client_wait_timeout, as for a slot.
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, r.config().ClientWaitTimeout.D())
			defer cancel()
			busy = errorf(codeTooManyBackends, "pgwrt: all backend connections of pool %s/%s are busy (pool_size %d)", key.database, key.user, size)
		}
		var err error
		select {
		case <-granted:
		case <-ctx.Done():
			err = busy
		case <-r.stopping:
			err = errorf(codeShutdown, "pgwrt is shutting down")
		}
		b, ok := r.pools.cancelWait(w)
		if err != nil {
			if ok { // granted as we gave up: pass it on
				if b != nil {
					r.release(b, true)
				} else {
					r.pools.cancelReservation(key)
				}
			}
			return nil, err
		}
		be = b
	}
	if be != nil {
		r.metrics.reused.Inc()
	}
	return be, nil
}

// release takes back a backend a session is done with. reusable says it is
// at a clean ReadyForQuery boundary, reset, and on the current primary.
func (r *Router) release(b *backend, reusable bool) { r.releaseBy(b, reusable, nil) }

// releaseBy is release by owner (pools.releaseBy).
func (r *Router) releaseBy(b *backend, reusable bool, owner any) {
	cfg := r.config()
	if reusable && !b.fitFor(r.Topology().PrimaryNode(), cfg, time.Now()) {
		reusable = false
	}
	r.pools.releaseBy(b, reusable, owner)
}

// closeIdle closes idle backends matching drop (nil: all).
func (r *Router) closeIdle(drop func(*backend) bool) int {
	return r.pools.closeIdle(drop)
}

// poolStats is a point-in-time count for status pages.
type poolStats struct {
	Open, Idle int
}

func (p *pools) stats() poolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return poolStats{Open: p.open, Idle: p.idle}
}

// PoolStats is one pool as SHOW POOLS shows it. A session holds one
// backend, so ClActive and SvActive are the same count.
type PoolStats struct {
	Database, User string
	ClActive       int           // sessions holding a backend of this pool
	ClWaiting      int           // clients waiting for a backend
	SvActive       int           // backends checked out to sessions
	SvIdle         int           // backends cached for the next client
	MaxWait        time.Duration // how long the oldest waiter has waited
}

// list is a snapshot of every pool, by database then user.
func (p *pools) list() []PoolStats {
	now := time.Now()
	p.mu.Lock()
	out := make([]PoolStats, 0, len(p.byID))
	for _, pl := range p.byID {
		s := PoolStats{Database: pl.id.database, User: pl.id.user, ClActive: pl.active, ClWaiting: pl.nwait,
			SvActive: pl.active, SvIdle: len(pl.idle)}
		if pl.first != nil {
			s.MaxWait = now.Sub(pl.first.since)
		}
		out = append(out, s)
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b PoolStats) int {
		return cmp.Or(strings.Compare(a.Database, b.Database), strings.Compare(a.User, b.User))
	})
	return out
}
