package ledger

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// LogWatch is a slog.Handler to put in front of a pgwrt router's handler. It
// passes every record on and picks out the events a failover report needs:
// "primary changed" (with no_primary_for when the cluster had no primary
// for a while), "held client released" (with held, how long a new client
// waited for a primary) and "primary alarm".
type LogWatch struct {
	next slog.Handler
	st   *logState
}

type logState struct {
	mu     sync.Mutex
	events []LogEvent
}

// LogEvent is one picked-out record.
type LogEvent struct {
	At    time.Time
	Msg   string
	Attrs map[string]string
	// Held is the duration in the record's held or no_primary_for
	// attribute, if any.
	Held time.Duration
}

// NewLogWatch wraps next (nil: records are only watched).
func NewLogWatch(next slog.Handler) *LogWatch {
	return &LogWatch{next: next, st: &logState{}}
}

var watched = map[string]bool{
	"primary changed":                       true,
	"held client released":                  true,
	"primary alarm":                         true,
	"node down":                             true,
	"closed connections to the old primary": true,
}

// Enabled implements slog.Handler: watched records are always taken.
func (h *LogWatch) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next != nil && h.next.Enabled(ctx, l)
}

// Handle implements slog.Handler.
func (h *LogWatch) Handle(ctx context.Context, r slog.Record) error {
	if watched[r.Message] {
		ev := LogEvent{At: r.Time, Msg: r.Message, Attrs: map[string]string{}}
		r.Attrs(func(a slog.Attr) bool {
			v := a.Value.String()
			ev.Attrs[a.Key] = v
			if a.Key == "held" || a.Key == "no_primary_for" {
				if d, err := time.ParseDuration(v); err == nil {
					ev.Held = d
				}
			}
			return true
		})
		h.st.mu.Lock()
		h.st.events = append(h.st.events, ev)
		h.st.mu.Unlock()
	}
	if h.next != nil && h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (h *LogWatch) WithAttrs(as []slog.Attr) slog.Handler {
	n := &LogWatch{st: h.st}
	if h.next != nil {
		n.next = h.next.WithAttrs(as)
	}
	return n
}

// WithGroup implements slog.Handler.
func (h *LogWatch) WithGroup(name string) slog.Handler {
	n := &LogWatch{st: h.st}
	if h.next != nil {
		n.next = h.next.WithGroup(name)
	}
	return n
}

// Events returns the picked-out records since from.
func (h *LogWatch) Events(from time.Time) []LogEvent {
	h.st.mu.Lock()
	defer h.st.mu.Unlock()
	var out []LogEvent
	for _, e := range h.st.events {
		if !e.At.Before(from) {
			out = append(out, e)
		}
	}
	return out
}

// Held sums up the hold events since from: the longest time pgwrt knew no
// primary (noPrimary), the longest time one client was held (client), and
// the number of clients held.
func (h *LogWatch) Held(from time.Time) (noPrimary, client time.Duration, clients int) {
	for _, e := range h.Events(from) {
		switch e.Msg {
		case "primary changed":
			if e.Held > noPrimary {
				noPrimary = e.Held
			}
		case "held client released":
			clients++
			if e.Held > client {
				client = e.Held
			}
		}
	}
	return noPrimary, client, clients
}
