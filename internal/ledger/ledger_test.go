package ledger

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

func TestNewWritable(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tr := []Transition{
		{at(0), "a", Writable}, {at(0), "b", Standby}, {at(0), "c", Standby},
		{at(100), "a", Down}, // the event
		{at(300), "b", Writable},
		{at(400), "a", Standby},
	}
	// Switchover: b was a standby at t and became writable.
	if k, when, ok := newWritable(tr, at(50)); !ok || k != "b" || !when.Equal(at(300)) {
		t.Fatalf("switchover: %q %v %v", k, when, ok)
	}
	// A writable node that stays writable is not new.
	if k, _, ok := newWritable(tr, at(350)); ok {
		t.Fatalf("nothing new after 350ms, got %q", k)
	}
	// Restart of the same node: writable, down, writable.
	tr2 := []Transition{{at(0), "a", Writable}, {at(100), "a", Down}, {at(900), "a", Writable}}
	if k, when, ok := newWritable(tr2, at(50)); !ok || k != "a" || !when.Equal(at(900)) {
		t.Fatalf("restart: %q %v %v", k, when, ok)
	}
	// Down at t already.
	if k, when, ok := newWritable(tr2, at(500)); !ok || k != "a" || !when.Equal(at(900)) {
		t.Fatalf("down at t: %q %v %v", k, when, ok)
	}
}

func TestWindows(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	ws, over := windows(map[string]*Window{
		"5433": {Node: "5433", First: at(0), Last: at(10)},
		"5434": {Node: "5434", First: at(11), Last: at(20)},
	})
	if len(ws) != 2 || ws[0].Node != "5433" || len(over) != 0 {
		t.Fatalf("disjoint: %v %v", ws, over)
	}
	_, over = windows(map[string]*Window{
		"5433": {Node: "5433", First: at(0), Last: at(10)},
		"5434": {Node: "5434", First: at(5), Last: at(20)},
		"5435": {Node: "5435", First: at(30), Last: at(40)},
	})
	if len(over) != 1 {
		t.Fatalf("overlap: %v", over)
	}
}

func TestSummaryAndResume(t *testing.T) {
	t0 := time.Now()
	c1 := &Client{ID: 1, Mode: Session,
		Acks:   []Ack{{Seq: 1, At: t0, Node: "a"}, {Seq: 3, At: t0.Add(2 * time.Second), Node: "b"}, {Seq: 4, At: t0.Add(3 * time.Second), Node: "b"}},
		Errors: []Error{{Op: "write", Code: "57P01"}}, MaxGap: 2 * time.Second, MaxCall: time.Second}
	c2 := &Client{ID: 2, Mode: Reconnect,
		Acks: []Ack{{Seq: 1, At: t0.Add(1500 * time.Millisecond), Node: "b"}}, ReadOnly: true,
		Errors: []Error{{Op: "connect", Code: "25006"}, {Op: "write", Code: ""}}}
	r := Merge(&Result{Clients: []*Client{c1}}, &Result{Clients: []*Client{c2}})
	s := r.Summary()
	if s.Acks != 4 || s.Errors != 3 || s.ConnectErr != 1 || s.WriteErr != 2 || s.ReadOnly != 1 ||
		s.MaxErrors != 2 || s.MaxGap != 2*time.Second || s.Codes["net"] != 1 {
		t.Fatalf("summary %+v", s)
	}
	first, all, ok := r.ResumeAfter("b", t0.Add(time.Second))
	if !ok || first != 500*time.Millisecond || all != time.Second {
		t.Fatalf("resume %v %v %v", first, all, ok)
	}
	if _, _, ok := r.ResumeAfter("c", t0); ok {
		t.Fatal("resume on a node nobody wrote to")
	}
}

func TestLogWatch(t *testing.T) {
	lw := NewLogWatch(nil)
	log := slog.New(lw).With("component", "router")
	from := time.Now()
	log.Info("primary changed", "epoch", 3, "old", "", "new", "n2", "no_primary_for", "1.5s")
	log.Info("held client released", "held", "700ms")
	log.Info("held client released", "held", "1.2s")
	log.Debug("something else")
	np, cl, n := lw.Held(from)
	if np != 1500*time.Millisecond || cl != 1200*time.Millisecond || n != 2 {
		t.Fatalf("held %v %v %d", np, cl, n)
	}
	if !lw.Enabled(context.Background(), slog.LevelInfo) {
		t.Fatal("info not enabled")
	}
}

func TestRuns(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ev := func(spec ...any) []event {
		var out []event
		for i := 0; i < len(spec); i += 2 {
			out = append(out, event{spec[i].(string), at(spec[i+1].(int))})
		}
		return out
	}
	// A clean handover: one run each, nothing flagged.
	rs, over, ret := runs(ev("a", 0, "a", 10, "b", 500, "b", 510))
	if len(rs) != 2 || len(over) != 0 || len(ret) != 0 {
		t.Fatalf("handover: %v %v %v", rs, over, ret)
	}
	// Two writers: a and b interleave without a pause.
	_, over, ret = runs(ev("a", 0, "b", 5, "a", 10, "b", 15))
	if len(over) == 0 || len(ret) != 0 {
		t.Fatalf("interleaved: %v %v", over, ret)
	}
	// A handover back after pauses: a return, not two writers.
	_, over, ret = runs(ev("a", 0, "b", 1000, "b", 1100, "a", 3000))
	if len(over) != 0 || len(ret) != 1 {
		t.Fatalf("return: %v %v", over, ret)
	}
}
