package ledger

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Window is the time span in which one node accepted ledger writes, by the
// rows' at column.
type Window struct {
	Node        string
	First, Last time.Time
	Rows        int // rows in the final table written by the node
	Acked       int // acknowledgements that named the node
}

// Check is what Verify found.
type Check struct {
	Acked   int            // acknowledged writes
	Rows    int            // rows in the table on the final primary
	Lost    []string       // "client/seq@node" acknowledged but missing
	LostBy  map[string]int // lost rows by the node that acknowledged them
	Windows []Window       // one per node, by First
	// Runs are the stretches of writes by one node, in time order: a
	// handover from one primary to the next starts a new run.
	Runs []Window
	// Overlaps names nodes whose acknowledged writes interleave: two
	// writers at once behind the pooler.
	Overlaps []string
	// RowOverlaps is the same for every row in the table, acknowledged or
	// not. A statement sent to a primary that then hung (SIGSTOP) runs when
	// the node wakes up, even if the pooler closed the connection meanwhile;
	// if the node is still a primary then, its row lands among the new
	// primary's. Only fencing prevents that, which is Patroni's job.
	RowOverlaps []string
	// Returns names nodes that wrote again after another node had taken
	// over, with a pause in between: a handover back, which is not two
	// writers at once but loses whatever the other node took.
	Returns []string
}

// OK reports no lost row and a single writer at a time.
func (c *Check) OK() bool { return len(c.Lost) == 0 && len(c.Overlaps) == 0 }

func (c *Check) String() string {
	var ws []string
	for _, w := range c.Windows {
		ws = append(ws, fmt.Sprintf("%s %s..%s (%d rows, %d acked)", w.Node,
			w.First.Format("15:04:05.000"), w.Last.Format("15:04:05.000"), w.Rows, w.Acked))
	}
	lost := ""
	if len(c.Lost) > 0 {
		l := c.Lost
		if len(l) > 10 {
			l = l[:10]
		}
		lost = " [" + strings.Join(l, " ") + "]"
	}
	out := fmt.Sprintf("%d acked, %d rows, %d lost%s; writers: %s", c.Acked, c.Rows, len(c.Lost), lost, strings.Join(ws, ", "))
	if len(c.Overlaps) > 0 {
		out += "; TWO WRITERS: " + strings.Join(c.Overlaps, "; ")
	}
	if len(c.Returns) > 0 {
		out += "; returns: " + strings.Join(c.Returns, "; ")
	}
	if len(c.RowOverlaps) > 0 && len(c.Overlaps) == 0 {
		out += fmt.Sprintf("; unacknowledged rows interleave %d times", len(c.RowOverlaps))
	}
	return out
}

// Verify reads the table on the final primary (dsn should point straight at
// it) and checks res against it: every acknowledged (client, seq) present,
// and the writes, from the rows and from the acknowledgements, by one node
// at a time.
func Verify(ctx context.Context, dsn, table string, res *Result) (*Check, error) {
	return VerifyNamed(ctx, dsn, table, res, nil)
}

// VerifyNamed is Verify with name turning the node column (a port) into a
// node's name in the Check; nil keeps it.
func VerifyNamed(ctx context.Context, dsn, table string, res *Result, name func(string) string) (*Check, error) {
	if table == "" {
		table = "ledger"
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT client_id, seq, node, at FROM "+pgx.Identifier{table}.Sanitize())
	if err != nil {
		return nil, err
	}
	type key struct{ client, seq int }
	have := make(map[key]bool)
	var events, acks []event
	win := make(map[string]*Window)
	widen := func(node string, at time.Time) *Window {
		w := win[node]
		if w == nil {
			w = &Window{Node: node, First: at, Last: at}
			win[node] = w
		}
		if at.Before(w.First) {
			w.First = at
		}
		if at.After(w.Last) {
			w.Last = at
		}
		return w
	}
	for rows.Next() {
		var k key
		var node string
		var at time.Time
		if err := rows.Scan(&k.client, &k.seq, &node, &at); err != nil {
			rows.Close()
			return nil, err
		}
		have[k] = true
		widen(node, at).Rows++
		events = append(events, event{node, at})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	ck := &Check{Rows: len(have), LostBy: map[string]int{}}
	for _, c := range res.Clients {
		for _, a := range c.Acks {
			ck.Acked++
			acks = append(acks, event{a.Node, a.ServerAt})
			if !have[key{c.ID, a.Seq}] {
				ck.Lost = append(ck.Lost, fmt.Sprintf("%d/%d@%s", c.ID, a.Seq, a.Node))
				ck.LostBy[a.Node]++
				events = append(events, event{a.Node, a.ServerAt})
			}
			widen(a.Node, a.ServerAt).Acked++
		}
	}
	if name != nil {
		named := make(map[string]*Window, len(win))
		for k, w := range win {
			w.Node = name(k)
			named[w.Node] = w
		}
		win = named
		lostBy := map[string]int{}
		for k, n := range ck.LostBy {
			lostBy[name(k)] += n
		}
		ck.LostBy = lostBy
		for i := range events {
			events[i].node = name(events[i].node)
		}
		for i := range acks {
			acks[i].node = name(acks[i].node)
		}
	}
	ck.Windows, _ = windows(win)
	ck.Runs, ck.RowOverlaps, _ = runs(events)
	_, ck.Overlaps, ck.Returns = runs(acks)
	return ck, nil
}

type event struct {
	node string
	at   time.Time
}

// HandoverGap is the least pause in the writes that tells a handover from
// one primary to another from two primaries writing at once. At 20 writes a
// client a second, writes by one primary come milliseconds apart; a
// handover costs at least the time the pooler needs to see it.
const HandoverGap = 200 * time.Millisecond

// runs cuts the writes, in time order, into stretches by one node. A node
// that writes again after another node has written (A, B, A) either
// interleaves with it, when no pause of HandoverGap separates the stretches
// (two writers), or came back after a real handover (a return).
func runs(evs []event) (rs []Window, overlaps, returns []string) {
	sort.Slice(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	for _, e := range evs {
		if n := len(rs); n > 0 && rs[n-1].Node == e.node {
			rs[n-1].Last = e.at
			rs[n-1].Rows++
			continue
		}
		rs = append(rs, Window{Node: e.node, First: e.at, Last: e.at, Rows: 1})
	}
	seen := map[string]int{} // node -> index of its last run
	for i, r := range rs {
		j, ok := seen[r.Node]
		seen[r.Node] = i
		if !ok {
			continue
		}
		paused := false
		for k := j; k < i; k++ {
			if rs[k+1].First.Sub(rs[k].Last) >= HandoverGap {
				paused = true
			}
		}
		desc := fmt.Sprintf("%s wrote until %s, %s from %s, then %s again from %s", r.Node,
			rs[j].Last.Format("15:04:05.000"), rs[j+1].Node, rs[j+1].First.Format("15:04:05.000"), r.Node, r.First.Format("15:04:05.000"))
		if paused {
			returns = append(returns, desc)
		} else {
			overlaps = append(overlaps, desc)
		}
	}
	return rs, overlaps, returns
}

// windows sorts the windows by start and names every overlapping pair.
func windows(win map[string]*Window) ([]Window, []string) {
	var ws []Window
	for _, w := range win {
		ws = append(ws, *w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].First.Before(ws[j].First) })
	var over []string
	for i := range ws {
		for j := i + 1; j < len(ws); j++ {
			if ws[j].First.Before(ws[i].Last) {
				over = append(over, fmt.Sprintf("%s (%s..%s) and %s (%s..%s)",
					ws[i].Node, ws[i].First.Format("15:04:05.000"), ws[i].Last.Format("15:04:05.000"),
					ws[j].Node, ws[j].First.Format("15:04:05.000"), ws[j].Last.Format("15:04:05.000")))
			}
		}
	}
	return ws, over
}
