package ledger

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// State is what a Watcher saw of a node.
type State int

const (
	Down     State = iota // no answer, refused, or not accepting connections
	Standby               // in recovery
	Writable              // accepts writes: not in recovery
)

func (s State) String() string {
	switch s {
	case Standby:
		return "standby"
	case Writable:
		return "writable"
	}
	return "down"
}

// Target is one node a Watcher samples. Key is how results name it: use the
// node's port as text to match the ledger's node column.
type Target struct {
	Key string
	DSN string
}

// Transition is a change of a node's state.
type Transition struct {
	At    time.Time
	Key   string
	State State
}

// Watcher samples every node directly (not through the pooler) with
// pg_is_in_recovery(), keeping one connection per node, and records each
// node's state changes. It is how a scenario learns when a new primary
// began to accept writes.
type Watcher struct {
	every   time.Duration
	timeout time.Duration
	stop    chan struct{}
	wg      sync.WaitGroup

	mu    sync.Mutex
	trans []Transition
	cur   map[string]State
	news  chan struct{} // closed and replaced on every transition
}

// Watch starts sampling targets every period (default 50 ms).
func Watch(targets []Target, every time.Duration) *Watcher {
	if every == 0 {
		every = 50 * time.Millisecond
	}
	w := &Watcher{every: every, timeout: 500 * time.Millisecond, stop: make(chan struct{}), cur: map[string]State{}, news: make(chan struct{})}
	for _, t := range targets {
		w.wg.Add(1)
		go w.run(t)
	}
	return w
}

// Stop ends the sampling.
func (w *Watcher) Stop() {
	select {
	case <-w.stop:
		return
	default:
	}
	close(w.stop)
	w.wg.Wait()
}

func (w *Watcher) run(t Target) {
	defer w.wg.Done()
	cfg, err := pgx.ParseConfig(t.DSN)
	if err != nil {
		panic(fmt.Sprintf("ledger: watch %s: %v", t.Key, err))
	}
	cfg.ConnectTimeout = w.timeout
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	tk := time.NewTicker(w.every)
	defer tk.Stop()
	for {
		st := Down
		ctx, cancel := context.WithTimeout(context.Background(), w.timeout)
		if conn == nil {
			conn, _ = pgx.ConnectConfig(ctx, cfg.Copy())
		}
		if conn != nil {
			var rec bool
			if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
				conn.Close(context.Background())
				conn = nil
			} else if rec {
				st = Standby
			} else {
				st = Writable
			}
		}
		cancel()
		w.record(t.Key, st)
		select {
		case <-w.stop:
			return
		case <-tk.C:
		}
	}
}

func (w *Watcher) record(key string, st State) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.cur[key]; ok && old == st {
		return
	}
	w.cur[key] = st
	w.trans = append(w.trans, Transition{At: time.Now(), Key: key, State: st})
	close(w.news)
	w.news = make(chan struct{})
}

// Transitions returns every state change seen so far.
func (w *Watcher) Transitions() []Transition {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Transition(nil), w.trans...)
}

// Current returns each node's last state.
func (w *Watcher) Current() map[string]State {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[string]State, len(w.cur))
	for k, v := range w.cur {
		m[k] = v
	}
	return m
}

// NewWritable returns the first moment after t at which some node became
// writable having been down or a standby after t (or at t): the moment a
// new or restarted primary began to accept writes.
func (w *Watcher) NewWritable(t time.Time) (key string, at time.Time, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return newWritable(w.trans, t)
}

func newWritable(trans []Transition, t time.Time) (string, time.Time, bool) {
	notW := map[string]bool{} // node was seen not writable at or after t
	state := map[string]State{}
	for _, tr := range trans {
		if !tr.At.After(t) {
			state[tr.Key] = tr.State
			continue
		}
		if _, seen := notW[tr.Key]; !seen {
			if st, ok := state[tr.Key]; ok && st != Writable {
				notW[tr.Key] = true
			}
		}
		if tr.State != Writable {
			notW[tr.Key] = true
			continue
		}
		if notW[tr.Key] {
			return tr.Key, tr.At, true
		}
	}
	return "", time.Time{}, false
}

// WaitNewWritable waits for NewWritable(t).
func (w *Watcher) WaitNewWritable(ctx context.Context, t time.Time) (string, time.Time, error) {
	for {
		w.mu.Lock()
		k, at, ok := newWritable(w.trans, t)
		ch := w.news
		w.mu.Unlock()
		if ok {
			return k, at, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return "", time.Time{}, fmt.Errorf("ledger: no node became writable after %s: %w", t.Format("15:04:05.000"), ctx.Err())
		}
	}
}

// WaitState waits until node key is in state st.
func (w *Watcher) WaitState(ctx context.Context, key string, st State) error {
	for {
		w.mu.Lock()
		cur, ok := w.cur[key]
		ch := w.news
		w.mu.Unlock()
		if ok && cur == st {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("ledger: %s is %s, not %s: %w", key, cur, st, ctx.Err())
		}
	}
}
