package router

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"pgwrt/config"
)

// The pool's bookkeeping, without PostgreSQL: backends are fakes whose
// connection is one end of a net.Pipe (or none), on a made-up primary.

var (
	testPrim = &NodeState{Name: "n1", Host: "127.0.0.1", Port: 5432}
	keyA     = poolKey{user: "u", database: "a"}
	keyA2    = poolKey{user: "u", database: "a", params: "search_path=x"} // pool a, other startup options
	keyB     = poolKey{user: "u", database: "b"}
	keyC     = poolKey{user: "v", database: "b"}
)

func testPools(maxBackends, maxPool int) *pools {
	cfg := config.Default()
	cfg.MaxBackendConnections = maxBackends
	cfg.MaxPool = maxPool
	return newPools(func() *config.Config { return cfg })
}

// fakeBackend is a backend on testPrim; closed is closed once its
// connection has been closed (the far end read EOF).
func fakeBackend() (b *backend, closed <-chan struct{}) {
	c, far := net.Pipe()
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, far) // the Terminate, then EOF
		far.Close()
		close(done)
	}()
	return &backend{conn: c, node: testPrim.Name, addr: testPrim.Addr(), created: time.Now()}, done
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(2 * time.Second):
		return false
	}
}

func isOpen(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return false
	case <-time.After(20 * time.Millisecond):
		return true
	}
}

// testWaiter counts its notifications.
type testWaiter struct {
	*waiter
	notified atomic.Int32
}

func newWaiter(key poolKey, allowIdle bool) *testWaiter {
	tw := &testWaiter{}
	tw.waiter = &waiter{key: key, allowIdle: allowIdle, notify: func() { tw.notified.Add(1) }}
	return tw
}

// grant reports what w was granted: a backend, or nil for a reservation.
func (p *pools) grant(t *testing.T, w *testWaiter) *backend {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !w.granted || w.queued {
		t.Fatalf("waiter for %v not granted (queued %v)", w.key, w.queued)
	}
	if n := w.notified.Load(); n != 1 {
		t.Fatalf("waiter for %v notified %d times", w.key, n)
	}
	return w.be
}

func (p *pools) mustWait(t *testing.T, w *testWaiter) {
	t.Helper()
	if be, queued := p.checkout(w.waiter, testPrim); !queued {
		t.Fatalf("checkout for %v: got %v, want to wait", w.key, be)
	}
}

func (p *pools) mustStillWait(t *testing.T, ws ...*testWaiter) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range ws {
		if !w.queued || w.granted || w.notified.Load() != 0 {
			t.Fatalf("waiter for %v: queued %v granted %v notified %d", w.key, w.queued, w.granted, w.notified.Load())
		}
	}
}

// mustOpen takes a reservation for key and books a fresh fake backend on
// it, active.
func (p *pools) mustOpen(t *testing.T, key poolKey) (*backend, <-chan struct{}) {
	t.Helper()
	be, queued := p.checkout(&waiter{key: key, allowIdle: true}, testPrim)
	if be != nil || queued {
		t.Fatalf("checkout for %v: backend %v queued %v, want a reservation", key, be, queued)
	}
	b, closed := fakeBackend()
	p.opened(b, key)
	return b, closed
}

func (p *pools) wantStats(t *testing.T, want poolStats) {
	t.Helper()
	if s := p.stats(); s != want {
		t.Fatalf("stats %+v, want %+v", s, want)
	}
}

// TestPoolGrantOrder: places freed go to waiters in the order they came,
// across pools; a released backend goes to the oldest waiter of its key.
func TestPoolGrantOrder(t *testing.T) {
	p := testPools(1, 4)
	b, _ := p.mustOpen(t, keyA)
	w1, w2, w3 := newWaiter(keyB, true), newWaiter(keyC, true), newWaiter(keyB, true)
	for _, w := range []*testWaiter{w1, w2, w3} {
		p.mustWait(t, w)
	}
	for i, w := range []*testWaiter{w1, w2, w3} {
		p.release(b, false)
		if be := p.grant(t, w); be != nil {
			t.Fatalf("waiter %d granted a backend, want a reservation", i+1)
		}
		p.mustStillWait(t, []*testWaiter{w1, w2, w3}[i+1:]...)
		b, _ = fakeBackend()
		p.opened(b, w.key)
		p.wantStats(t, poolStats{Open: 1})
	}

	// Same key: the handoff goes to the oldest.
	p.release(b, false) // the last waiter's backend is done with
	b, _ = p.mustOpen(t, keyA)
	v1, v2 := newWaiter(keyA, true), newWaiter(keyA, true)
	p.mustWait(t, v1)
	p.mustWait(t, v2)
	p.release(b, true)
	if p.grant(t, v1) != b {
		t.Fatal("the released backend did not go to the oldest waiter")
	}
	p.mustStillWait(t, v2)
	p.release(b, true)
	if p.grant(t, v2) != b {
		t.Fatal("the released backend did not go to the next waiter")
	}
	p.wantStats(t, poolStats{Open: 1})
}

// TestPoolHandoffSameKey: a reusable backend goes straight to the oldest
// waiter of its pool with its exact key that may take an idle backend,
// ahead of older waiters elsewhere; nobody else gets it.
func TestPoolHandoffSameKey(t *testing.T) {
	p := testPools(1, 4)
	b, closed := p.mustOpen(t, keyA)
	other := newWaiter(keyB, true)    // oldest, another pool
	options := newWaiter(keyA2, true) // same pool, other startup options
	noIdle := newWaiter(keyA, false)  // same key, may not take an idle one
	want := newWaiter(keyA, true)
	for _, w := range []*testWaiter{other, options, noIdle, want} {
		p.mustWait(t, w)
	}
	p.release(b, true)
	if p.grant(t, want) != b {
		t.Fatal("released backend not handed to the waiter of its key")
	}
	p.mustStillWait(t, other, options, noIdle)
	if !isOpen(closed) {
		t.Fatal("handed-off backend closed")
	}
	p.wantStats(t, poolStats{Open: 1})
	if l := p.list(); len(l) != 2 || l[0].ClWaiting != 2 || l[0].SvActive != 1 || l[1].ClWaiting != 1 {
		t.Fatalf("list %+v", l)
	}

	// No waiter of its key: it would go idle, but the oldest waiter evicts
	// it for a reservation.
	p.release(b, true)
	if p.grant(t, other) != nil {
		t.Fatal("waiter of another key was handed the backend")
	}
	if !isClosed(closed) {
		t.Fatal("backend not evicted for the waiter")
	}
	p.mustStillWait(t, options, noIdle)
	p.wantStats(t, poolStats{Open: 1})
}

// TestPoolReservationToOtherPool: a backend closed at the cap makes room
// for the oldest waiter, whatever its pool; the pool left empty goes.
func TestPoolReservationToOtherPool(t *testing.T) {
	p := testPools(2, 4)
	a, aClosed := p.mustOpen(t, keyA)
	b, _ := p.mustOpen(t, keyB)
	w := newWaiter(keyC, true)
	p.mustWait(t, w)
	p.release(a, false)
	if p.grant(t, w) != nil {
		t.Fatal("granted a backend, want a reservation")
	}
	if !isClosed(aClosed) {
		t.Fatal("released backend not closed")
	}
	p.wantStats(t, poolStats{Open: 2})
	if _, ok := p.byID[keyA.pool()]; ok {
		t.Fatal("empty pool kept")
	}
	// The dial failed: the room goes to the next waiter.
	w2 := newWaiter(keyA, true)
	p.mustWait(t, w2)
	p.cancelReservation(w.key)
	if p.grant(t, w2) != nil {
		t.Fatal("granted a backend, want a reservation")
	}
	p.cancelReservation(w2.key)
	p.release(b, false)
	p.wantStats(t, poolStats{})
	if len(p.byID) != 0 {
		t.Fatalf("pools left: %+v", p.list())
	}
}

// TestPoolEvictsLRU: at the cap, a newcomer of another key takes the place
// of the least recently used idle backend; one of its own key is reused.
func TestPoolEvictsLRU(t *testing.T) {
	p := testPools(2, 4)
	a1, a1Closed := p.mustOpen(t, keyA)
	a2, a2Closed := p.mustOpen(t, keyA)
	p.release(a1, true) // a1 is the least recently used
	p.release(a2, true)
	p.wantStats(t, poolStats{Open: 2, Idle: 2})
	b, _ := p.mustOpen(t, keyB)
	if !isClosed(a1Closed) || !isOpen(a2Closed) {
		t.Fatal("the wrong idle backend was evicted")
	}
	p.wantStats(t, poolStats{Open: 2, Idle: 1})
	if be, queued := p.checkout(&waiter{key: keyA, allowIdle: true}, testPrim); be != a2 || queued {
		t.Fatalf("checkout: %v queued %v, want the idle backend", be, queued)
	}
	p.wantStats(t, poolStats{Open: 2})
	p.release(a2, true)
	p.release(b, true)
	// A client that may not take an idle backend evicts one of its own key.
	if be, queued := p.checkout(&waiter{key: keyA}, testPrim); be != nil || queued {
		t.Fatalf("checkout: %v queued %v, want a reservation", be, queued)
	}
	if !isClosed(a2Closed) {
		t.Fatal("LRU idle backend not evicted")
	}
	p.wantStats(t, poolStats{Open: 2, Idle: 1})
}

// TestPoolStaleIdle: idle backends no longer fit for the primary are closed
// on the way out, and their place is taken.
func TestPoolStaleIdle(t *testing.T) {
	p := testPools(1, 4)
	a, aClosed := p.mustOpen(t, keyA)
	p.release(a, true)
	moved := &NodeState{Name: "n2", Host: "127.0.0.2", Port: 5432}
	if be, queued := p.checkout(&waiter{key: keyA, allowIdle: true}, moved); be != nil || queued {
		t.Fatalf("checkout: %v queued %v, want a reservation", be, queued)
	}
	if !isClosed(aClosed) {
		t.Fatal("stale backend not closed")
	}
	p.wantStats(t, poolStats{Open: 1})
}

// TestPoolDroppedWhenEmpty: a pool lives while it holds an idle or active
// backend or a waiter.
func TestPoolDroppedWhenEmpty(t *testing.T) {
	p := testPools(1, 4)
	pools := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		return len(p.byID)
	}
	a, _ := p.mustOpen(t, keyA)
	if pools() != 1 {
		t.Fatal("no pool for an active backend")
	}
	p.release(a, true)
	if pools() != 1 {
		t.Fatal("no pool for an idle backend")
	}
	p.closeIdle(nil)
	if pools() != 0 {
		t.Fatal("pool kept after its idle backend closed")
	}
	a, _ = p.mustOpen(t, keyA)
	w := newWaiter(keyB, true)
	p.mustWait(t, w)
	if pools() != 2 {
		t.Fatal("no pool for a waiter")
	}
	if be, granted := p.cancelWait(w.waiter); be != nil || granted {
		t.Fatal("cancelled waiter was granted")
	}
	if pools() != 1 {
		t.Fatal("pool kept after its waiter left")
	}
	p.release(a, false)
	if pools() != 0 {
		t.Fatal("pool kept after its active backend closed")
	}
	p.wantStats(t, poolStats{})
}

// TestPoolList: per pool counts and the oldest wait.
func TestPoolList(t *testing.T) {
	p := testPools(3, 4)
	a1, _ := p.mustOpen(t, keyA)
	a2, _ := p.mustOpen(t, keyA2)
	p.mustOpen(t, keyC)
	p.release(a2, true)
	want := []PoolStats{
		{Database: "a", User: "u", ClActive: 1, SvActive: 1, SvIdle: 1},
		{Database: "b", User: "v", ClActive: 1, SvActive: 1},
	}
	if l := p.list(); len(l) != 2 || l[0] != want[0] || l[1] != want[1] {
		t.Fatalf("list %+v, want %+v", l, want)
	}
	p.mustOpen(t, keyB) // evicts a2
	ws := []*testWaiter{newWaiter(keyA, true), newWaiter(keyB, true), newWaiter(keyA, true)}
	for _, w := range ws {
		p.mustWait(t, w)
	}
	time.Sleep(20 * time.Millisecond)
	l := p.list()
	if len(l) != 3 {
		t.Fatalf("list %+v", l)
	}
	for i, w := range []struct {
		db, user        string
		active, waiting int
	}{{"a", "u", 1, 2}, {"b", "u", 1, 1}, {"b", "v", 1, 0}} {
		s := l[i]
		if s.Database != w.db || s.User != w.user || s.ClActive != w.active || s.SvActive != w.active || s.ClWaiting != w.waiting || s.SvIdle != 0 {
			t.Fatalf("list[%d] %+v, want %+v", i, s, w)
		}
		if (w.waiting > 0) != (s.MaxWait >= 20*time.Millisecond) {
			t.Fatalf("list[%d] max wait %s", i, s.MaxWait)
		}
	}
	p.release(a1, true)
	if p.grant(t, ws[0]) != a1 {
		t.Fatal("released backend not handed over")
	}
}

// TestPoolCancelRacesGrant: a wait cancelled while a release grants it
// either leaves nothing behind or hands the grant back to the caller; no
// backend or place is lost either way. Rounds 0 and 1 put the grant first,
// the others race. Run with -race.
func TestPoolCancelRacesGrant(t *testing.T) {
	grants := 0
	for i := 0; i < 1000; i++ {
		reusable := i%2 == 0
		p := testPools(1, 4)
		b, closed := p.mustOpen(t, keyA)
		w := newWaiter(keyA, true)
		p.mustWait(t, w)
		// Both sides wait on start, so that neither has a head start.
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p.release(b, reusable)
		}()
		if i < 2 {
			close(start)
			wg.Wait()
		}
		var be *backend
		var granted bool
		cancelled := make(chan struct{})
		go func() {
			defer close(cancelled)
			<-start
			be, granted = p.cancelWait(w.waiter)
		}()
		if i >= 2 {
			close(start)
		}
		<-cancelled
		if granted {
			grants++
			if reusable && be != b || !reusable && be != nil {
				t.Fatalf("reusable %v: granted %v", reusable, be)
			}
			if be != nil {
				p.release(be, true)
			} else {
				p.cancelReservation(w.key)
			}
		} else if i < 2 {
			t.Fatal("the grant came first but cancelWait did not return it")
		}
		wg.Wait()
		if n := w.notified.Load(); granted != (n == 1) || n > 1 {
			t.Fatalf("granted %v, notified %d times", granted, n)
		}
		if reusable {
			p.wantStats(t, poolStats{Open: 1, Idle: 1})
			if l := p.list(); len(l) != 1 || l[0].SvIdle != 1 || l[0].ClWaiting != 0 || l[0].SvActive != 0 {
				t.Fatalf("list %+v", l)
			}
			p.closeIdle(nil)
		} else {
			p.wantStats(t, poolStats{})
		}
		if !isClosed(closed) {
			t.Fatal("backend not closed")
		}
		if len(p.byID) != 0 {
			t.Fatalf("pools left: %+v", p.list())
		}
	}
	t.Logf("granted before the cancel in %d of 1000 rounds", grants)
}

// TestCheckoutWaitEnds: Router.checkout waits for a grant, and gives up
// with 53300 when its context ends (failover_wait), leaving no waiter.
func TestCheckoutWaitEnds(t *testing.T) {
	cfg := config.Default()
	cfg.MaxBackendConnections = 1
	r := New(cfg, slog.New(slog.DiscardHandler))
	topo := &Topology{Primary: 0, Nodes: []NodeState{*testPrim}, changed: make(chan struct{})}
	r.topo.Store(topo) // release checks backends against it
	ctx := context.Background()
	be, err := r.checkout(func() context.Context { return ctx }, keyA, topo, true, 0)
	if be != nil || err != nil {
		t.Fatalf("checkout: %v, %v; want a reservation", be, err)
	}
	b, _ := fakeBackend()
	r.pools.opened(b, keyA)

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	be, err = r.checkout(func() context.Context { return short }, keyB, topo, true, 0)
	var pe *pgwrtError
	if be != nil || !errors.As(err, &pe) || pe.code != codeTooManyBackends {
		t.Fatalf("checkout at the cap: %v, %v; want 53300", be, err)
	}
	if l := r.pools.list(); len(l) != 1 || l[0].ClWaiting != 0 {
		t.Fatalf("list %+v", l)
	}

	got := make(chan *backend)
	go func() {
		be, err := r.checkout(func() context.Context { return ctx }, keyA, topo, true, 0)
		if err != nil {
			t.Error(err)
		}
		got <- be
	}()
	for {
		if l := r.pools.list(); len(l) == 1 && l[0].ClWaiting == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	r.release(b, true)
	if be := <-got; be != b {
		t.Fatalf("waiter got %v, want the released backend", be)
	}
	r.release(b, false)
	r.pools.wantStats(t, poolStats{})
}

// TestPoolSize: a pool with a size (pool_size, transaction mode) opens no
// more backends than that, reservations and dials in progress included,
// while the global cap still has room; its waiters are served by its own
// releases, and other pools are not held up by them.
func TestPoolSize(t *testing.T) {
	p := testPools(10, 10)
	sized := func(key poolKey) *testWaiter {
		w := newWaiter(key, true)
		w.size = 2
		return w
	}
	b1, _ := fakeBackend()
	if be, queued := p.checkout(sized(keyA).waiter, testPrim); be != nil || queued {
		t.Fatal("first checkout: want a reservation")
	}
	p.opened(b1, keyA)
	// A reservation in progress counts against the size.
	if be, queued := p.checkout(sized(keyA).waiter, testPrim); be != nil || queued {
		t.Fatal("second checkout: want a reservation")
	}
	w3 := sized(keyA)
	p.mustWait(t, w3)
	// Another pool is not held up by a's waiter... while the global cap
	// has room, it still queues behind older waiters: a waiter in a full
	// pool is skipped when places are handed out.
	p.cancelReservation(keyA) // the second dial failed: w3 gets the place
	if p.grant(t, w3) != nil {
		t.Fatal("granted a backend, want a reservation")
	}
	b3, _ := fakeBackend()
	p.opened(b3, keyA)
	w4 := sized(keyA)
	p.mustWait(t, w4)
	wb := newWaiter(keyB, true)
	if be, queued := p.checkout(wb.waiter, testPrim); queued {
		// Queued behind w4, whose pool is full; the place is b's.
		p.mu.Lock()
		p.grantWaitersLocked(p.cfg(), &after{})
		p.mu.Unlock()
		if p.grant(t, wb) != nil {
			t.Fatal("pool b: granted a backend, want a reservation")
		}
	} else if be != nil {
		t.Fatal("pool b: got an idle backend from nowhere")
	}
	// A release in a goes to a's waiter, as the backend itself.
	p.release(b1, true)
	if p.grant(t, w4) != b1 {
		t.Fatal("a's released backend did not go to a's waiter")
	}
	p.mu.Lock()
	if pl := p.byID[keyA.pool()]; pl.active+pl.dialing+len(pl.idle) > 2 {
		t.Errorf("pool a holds %d active, %d dialing, %d idle; size 2", pl.active, pl.dialing, len(pl.idle))
	}
	p.mu.Unlock()
}

// TestPoolSizeKeepsIdle: a transaction-mode pool keeps all its pool_size
// backends idle between transactions, not max_pool of them (max_pool is
// session mode's cache): closing the rest made every transaction beyond
// the fourth dial a new backend.
func TestPoolSizeKeepsIdle(t *testing.T) {
	p := testPools(10, 1)
	var bs []*backend
	var closed []<-chan struct{}
	for i := 0; i < 3; i++ {
		w := newWaiter(keyA, true)
		w.size = 3
		if be, queued := p.checkout(w.waiter, testPrim); be != nil || queued {
			t.Fatalf("checkout %d: want a reservation", i)
		}
		b, c := fakeBackend()
		p.opened(b, keyA)
		bs, closed = append(bs, b), append(closed, c)
	}
	for _, b := range bs {
		p.release(b, true)
	}
	if st := p.stats(); st.Idle != 3 || !isOpen(closed[2]) {
		t.Fatalf("%d idle, the last released closed: %v; a pool of size 3 keeps 3 idle", st.Idle, !isOpen(closed[2]))
	}
	// In session mode (no size) max_pool caps the idle ones.
	s := testPools(10, 1)
	var sc []<-chan struct{}
	var sb []*backend
	for i := 0; i < 2; i++ {
		if be, queued := s.checkout(newWaiter(keyB, true).waiter, testPrim); be != nil || queued {
			t.Fatalf("session checkout %d: want a reservation", i)
		}
		b, c := fakeBackend()
		s.opened(b, keyB)
		sb, sc = append(sb, b), append(sc, c)
	}
	s.release(sb[0], true)
	s.release(sb[1], true)
	if !isOpen(sc[0]) || !isClosed(sc[1]) {
		t.Fatal("session mode: want the first backend kept, the second closed (max_pool 1)")
	}
}
