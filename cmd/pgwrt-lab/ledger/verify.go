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
	Acked   int      // acknowledged writes
	Rows    int      // rows in the table on the final primary
	Lost    []string // "client/seq" acknowledged but missing
	Windows []Window // one per node, by First
	// Overlaps names pairs of nodes whose windows overlap: two writers.
	Overlaps []string
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
	return fmt.Sprintf("%d acked, %d rows, %d lost%s; writers: %s; overlaps: %d %s",
		c.Acked, c.Rows, len(c.Lost), lost, strings.Join(ws, ", "), len(c.Overlaps), strings.Join(c.Overlaps, "; "))
}

// Verify reads the table on the final primary (dsn should point straight at
// it) and checks res against it: every acknowledged (client, seq) present,
// and the nodes' write windows, from the rows and from the
// acknowledgements, disjoint.
func Verify(ctx context.Context, dsn, table string, res *Result) (*Check, error) {
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
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	ck := &Check{Rows: len(have)}
	for _, c := range res.Clients {
		for _, a := range c.Acks {
			ck.Acked++
			if !have[key{c.ID, a.Seq}] {
				ck.Lost = append(ck.Lost, fmt.Sprintf("%d/%d@%s", c.ID, a.Seq, a.Node))
			}
			widen(a.Node, a.ServerAt).Acked++
		}
	}
	ck.Windows, ck.Overlaps = windows(win)
	return ck, nil
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
