package router

import (
	"bytes"
	"testing"
)

// TestTrackerSafePoint: the one rule for where a backend may leave its
// client, over the conversations PostgreSQL has. Each step sends client
// bytes (c) or server bytes (s); safe is what safePoint says after it.
func TestTrackerSafePoint(t *testing.T) {
	type step struct {
		c, s []byte
		safe bool
	}
	Q := msg('Q', "SELECT 1\x00")
	Z := func(st string) []byte { return msg('Z', st) }
	rows := bytes.Join([][]byte{msg('T', "\x00\x00"), msg('C', "SELECT 1\x00")}, nil)
	P, B, E, S, H := msg('P', "\x00SELECT 1\x00\x00\x00"), msg('B', "\x00\x00\x00\x00\x00\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', ""), msg('H', "")
	cat := func(b ...[]byte) []byte { return bytes.Join(b, nil) }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"simple query", []step{{c: Q}, {s: rows}, {s: Z("I"), safe: true}}},
		{"pipelined queries, first answered", []step{{c: cat(Q, Q)}, {s: cat(rows, Z("I"))}, {s: cat(rows, Z("I")), safe: true}}},
		{"extended batch", []step{{c: cat(P, B, E)}, {c: S}, {s: msg('1', "")}, {s: Z("I"), safe: true}}},
		{"batch without Sync after an answered Query", []step{{c: Q}, {s: Z("I"), safe: true}, {c: cat(P, B, E, H)}, {s: msg('1', "")}}},
		{"two Syncs", []step{{c: cat(P, S, B, E, S)}, {s: Z("I")}, {s: Z("I"), safe: true}}},
		{"bare Sync", []step{{c: S}, {s: Z("I"), safe: true}}},
		{"error in a batch: the server skips to Sync", []step{{c: cat(P, B, E, S)}, {s: cat(msg('E', "SERROR\x00C42601\x00\x00"), Z("I")), safe: true}}},
		{"copy in", []step{{c: msg('Q', "COPY t FROM STDIN\x00")}, {s: msg('G', "\x00\x00\x00")}, {c: cat(msg('d', "1\n"), msg('c', ""))}, {s: msg('C', "COPY 1\x00")}, {s: Z("I"), safe: true}}},
		{"transaction block", []step{{c: msg('Q', "BEGIN\x00")}, {s: Z("T"), safe: true}}},
		{"server bytes mid-message", []step{{c: Q}, {s: cat(rows, Z("I"))[:7]}}},
		{"client bytes mid-body", []step{{c: P[:7]}}},
	} {
		var tr tracker
		tr.reset('I')
		for i, st := range tc.steps {
			if st.c != nil {
				n, act, _ := tr.scanClient(st.c)
				if act != cliMore || n != len(st.c) {
					t.Fatalf("%s step %d: scanned %d of %d, action %d", tc.name, i, n, len(st.c), act)
				}
			}
			if st.s != nil {
				if _, err := tr.feedServer(st.s); err != nil {
					t.Fatalf("%s step %d: %v", tc.name, i, err)
				}
			}
			if got := tr.safePoint(); got != st.safe {
				t.Errorf("%s step %d: safePoint %v, want %v (owed %d, answered %d)", tc.name, i, got, st.safe, tr.owed.Load(), tr.answered.Load())
			}
		}
	}
}

// TestTrackerScanClient: where a scan stops, and what it passes.
func TestTrackerScanClient(t *testing.T) {
	Q := msg('Q', "SELECT 1\x00")
	show := msg('Q', "show pool_nodes;\x00")
	X := msg('X', "")
	for _, tc := range []struct {
		name   string
		idle   bool // the server has answered everything before
		in     []byte
		n, m   int
		action clientAction
	}{
		{"whole query", true, Q, len(Q), 0, cliMore},
		{"part header", true, Q[:3], 0, 0, cliMore},
		{"terminate after a query", true, append(append([]byte{}, Q...), X...), len(Q), 5, cliTerminate},
		{"show pool_nodes while idle", true, show, 0, len(show), cliIntercept},
		{"show pool_nodes, part", true, show[:10], 0, 0, cliMore},
		{"show pool_nodes while busy passes", false, show, len(show), 0, cliMore},
		{"show pool_nodes after a query passes", true, append(append([]byte{}, Q...), show...), len(Q) + len(show), 0, cliMore},
		{"bad length", true, []byte{'Q', 0, 0, 0, 3}, 0, 0, cliMalformed},
	} {
		var tr tracker
		tr.reset('I')
		if !tc.idle {
			tr.owed.Store(1)
		}
		n, act, m := tr.scanClient(tc.in)
		if n != tc.n || act != tc.action || m != tc.m {
			t.Errorf("%s: got n=%d action=%d m=%d, want n=%d action=%d m=%d", tc.name, n, act, m, tc.n, tc.action, tc.m)
		}
	}
}

// TestTrackerServerEvents: FATALs are reported, a node's going away
// apart; ReadyForQuery's status is kept; a bad length is an error.
func TestTrackerServerEvents(t *testing.T) {
	var tr tracker
	tr.reset('I')
	tr.scanClient(msg('Q', "BEGIN\x00"))
	if ev, _ := tr.feedServer(msg('Z', "T")); ev != 0 || tr.status() != 'T' {
		t.Errorf("ev %d status %q", ev, tr.status())
	}
	if ev, _ := tr.feedServer(msg('E', "SFATAL\x00C57P01\x00Mterminating\x00\x00")); ev != srvFatal|srvGoingAway {
		t.Errorf("57P01: ev %d", ev)
	}
	if !tr.server.lastWasError() {
		t.Error("the stream does not end on the ErrorResponse")
	}
	tr.reset('I')
	if ev, _ := tr.feedServer(msg('E', "SFATAL\x00C25P03\x00Midle timeout\x00\x00")); ev != srvFatal {
		t.Errorf("25P03: ev %d", ev)
	}
	if _, err := tr.feedServer([]byte{'D', 0, 0, 0, 2}); err == nil {
		t.Error("a length below 4 passed")
	}
}

// TestTrackerNoAllocs: the tracker allocates nothing per message.
func TestTrackerNoAllocs(t *testing.T) {
	var tr tracker
	tr.reset('I')
	q := msg('Q', "SELECT 1\x00")
	resp := bytes.Join([][]byte{msg('T', "\x00\x00"), msg('D', "\x00\x00"), msg('C', "SELECT 1\x00"), msg('Z', "I")}, nil)
	if a := testing.AllocsPerRun(1000, func() {
		tr.scanClient(q)
		tr.feedServer(resp)
	}); a != 0 {
		t.Errorf("%v allocations per query", a)
	}
}

// TestTrackerTurn: which side a link that takes turns reads next.
func TestTrackerTurn(t *testing.T) {
	rfq := func(st byte) []byte { return []byte{'Z', 0, 0, 0, 5, st} }
	var tr tracker
	tr.reset('I')
	step := func(what string, client, server []byte, want turn) {
		t.Helper()
		if client != nil {
			tr.scanClient(client)
		}
		if server != nil {
			if _, err := tr.feedServer(server); err != nil {
				t.Fatal(err)
			}
		}
		if got := tr.turn(); got != want {
			t.Fatalf("%s: turn %d, want %d", what, got, want)
		}
	}
	step("nothing yet", nil, nil, turnClient)
	step("a Parse without its Sync", parse("", "SELECT 1"), nil, turnClient)
	step("its Sync", syncMsg(), nil, turnServer)
	step("answered", nil, rfq('I'), turnClient)
	step("a Query", pmsg('Q', "BEGIN\x00"), nil, turnServer)
	step("in a block", nil, rfq('T'), turnBoth)
	tr.reset('I')
	step("a Flush", append(parse("", "SELECT 1"), pmsg('H')...), nil, turnBoth)
	tr.reset('I')
	step("COPY FROM STDIN", pmsg('Q', "COPY t FROM STDIN\x00"), []byte{'G', 0, 0, 0, 7, 0, 0, 0}, turnBoth)
}
