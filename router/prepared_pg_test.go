package router

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgwrt/config"
	"pgwrt/router/wire"
)

// Protocol-level prepared statements in transaction mode, against
// PostgreSQL.

// TestTransactionPreparedPgx: pgx with its default statement cache
// (named statements, QueryExecModeCacheStatement), 16 clients over a pool
// of 3: every result is right, clients move between backends, and their
// statements follow them.
func TestTransactionPreparedPgx(t *testing.T) {
	c := shared(t)
	cfg := txnConfig(c, 3, 10)
	tr := startRouter(t, cfg)
	ctx := context.Background()
	admin := txnConnect(t, tr, pgx.QueryExecModeSimpleProtocol)
	if _, err := admin.Exec(ctx, "DROP TABLE IF EXISTS prep_ledger; CREATE TABLE prep_ledger(client int, n int, pid int)"); err != nil {
		t.Fatal(err)
	}
	const clients, rounds = 16, 40
	var wg sync.WaitGroup
	pids := make([]map[int]bool, clients)
	for i := 0; i < clients; i++ {
		conn := txnConnect(t, tr, pgx.QueryExecModeCacheStatement)
		pids[i] = map[int]bool{}
		wg.Add(1)
		go func(i int, conn *pgx.Conn) {
			defer wg.Done()
			for n := 0; n < rounds; n++ {
				tx, err := conn.Begin(ctx)
				if err != nil {
					t.Errorf("client %d: begin: %v", i, err)
					return
				}
				var pid1, pid2 int
				if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				if _, err := tx.Exec(ctx, "INSERT INTO prep_ledger VALUES ($1, $2, pg_backend_pid())", i, n); err != nil {
					t.Errorf("client %d: insert: %v", i, err)
					return
				}
				var sum int
				if err := tx.QueryRow(ctx, "SELECT $1::int + $2::int, pg_backend_pid()", i, n).Scan(&sum, &pid2); err != nil || sum != i+n {
					t.Errorf("client %d: sum %d, %v", i, sum, err)
					return
				}
				if pid1 != pid2 {
					t.Errorf("client %d: one transaction on backends %d and %d", i, pid1, pid2)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Errorf("client %d: commit: %v", i, err)
					return
				}
				pids[i][pid1] = true
				// Outside a transaction block, one statement per client
				// of its own and one every client shares.
				var s string
				if err := conn.QueryRow(ctx, fmt.Sprintf("SELECT 'client %d ' || $1::text", i), fmt.Sprint(n)).Scan(&s); err != nil || s != fmt.Sprintf("client %d %d", i, n) {
					t.Errorf("client %d: %q, %v", i, s, err)
					return
				}
				var cnt int
				if err := conn.QueryRow(ctx, "SELECT count(*) FROM prep_ledger WHERE client = $1", i).Scan(&cnt); err != nil || cnt != n+1 {
					t.Errorf("client %d: count %d (want %d), %v", i, cnt, n+1, err)
					return
				}
			}
		}(i, conn)
	}
	wg.Wait()
	var rows int
	if err := admin.QueryRow(ctx, "SELECT count(DISTINCT (client, n)) FROM prep_ledger").Scan(&rows); err != nil || rows != clients*rounds {
		t.Fatalf("ledger: %d rows, %v", rows, err)
	}
	moved := 0
	for _, p := range pids {
		if len(p) > 1 {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no client ran on more than one backend")
	}
	// 4 shared texts + one per client.
	if n := tr.stmts.size(); n != 4+clients {
		t.Errorf("%d statements in the registry, want %d", n, 4+clients)
	}
	t.Logf("%d pgx clients (statement cache) over %d backends, %d transactions: %d clients ran on more than one backend; %d distinct statements", clients, cfg.PoolSize, clients*rounds, moved, tr.stmts.size())
}

// TestTransactionPreparedSameName: two clients use one statement name for
// different SQL on one backend; each gets its own results.
func TestTransactionPreparedSameName(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.PoolSize = 1
	cfg.MaxPool = 1
	tr := startRouter(t, cfg)
	ctx := context.Background()
	a := txnConnect(t, tr, pgx.QueryExecModeExec)
	b := txnConnect(t, tr, pgx.QueryExecModeExec)
	if _, err := a.PgConn().Prepare(ctx, "q", "SELECT 'a' || $1::text, pg_backend_pid()", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.PgConn().Prepare(ctx, "q", "SELECT 'b' || $1::text, pg_backend_pid()", nil); err != nil {
		t.Fatal(err)
	}
	pid := map[string]bool{}
	for i := 0; i < 20; i++ {
		for _, cl := range []struct {
			who  string
			conn *pgx.Conn
		}{{"a", a}, {"b", b}} {
			res := cl.conn.PgConn().ExecPrepared(ctx, "q", [][]byte{[]byte(fmt.Sprint(i))}, nil, nil).Read()
			if err := res.Err; err != nil {
				t.Fatal(err)
			}
			if got := string(res.Rows[0][0]); got != fmt.Sprint(cl.who, i) {
				t.Fatalf("client %s got %q", cl.who, got)
			}
			pid[string(res.Rows[0][1])] = true
		}
	}
	if len(pid) != 1 {
		t.Fatalf("backends %v, want one", pid)
	}
}

// rawTxnClient logs in through pgx and takes the socket over.
func rawTxnClient(t *testing.T, tr *testRouter) (net.Conn, *wire.Reader) {
	t.Helper()
	cn := txnConnect(t, tr, pgx.QueryExecModeExec)
	h, err := cn.PgConn().Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Conn.Close() })
	return h.Conn, &wire.Reader{R: h.Conn}
}

// exchange sends msgs and reads answers up to the ReadyForQuery; it
// returns their types and, for errors, codes and messages.
func exchange(t *testing.T, c net.Conn, rd *wire.Reader, msgs ...[]byte) (types string, errs []string, rows []string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(bytes.Join(msgs, nil)); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := rd.Read()
		if err != nil {
			t.Fatalf("after %q: %v", types, err)
		}
		types += string(m.Type)
		switch m.Type {
		case 'E':
			e := wire.ParseError(m.Body)
			errs = append(errs, e.Code+" "+e.Message)
		case 'D':
			// one text column
			if len(m.Body) > 6 {
				rows = append(rows, string(m.Body[6:]))
			}
		case 'Z':
			return types, errs, rows
		}
	}
}

// TestTransactionPreparedProtocol: Close, re-Parse after Close, 42P05 on a
// re-Parse without Close, a syntax error in a pipeline, eviction with
// max_prepared_statements = 2, all on the wire.
func TestTransactionPreparedProtocol(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.PoolSize = 1
	cfg.MaxPool = 1
	cfg.MaxPreparedStatements = 2
	tr := startRouter(t, cfg)
	cn, rd := rawTxnClient(t, tr)
	check := func(what, gotTypes, wantTypes string, errs []string, wantErr string) {
		t.Helper()
		if gotTypes != wantTypes {
			t.Fatalf("%s: answers %q, want %q (errors %q)", what, gotTypes, wantTypes, errs)
		}
		if wantErr != "" && (len(errs) != 1 || !strings.HasPrefix(errs[0], wantErr)) {
			t.Fatalf("%s: errors %q, want %q", what, errs, wantErr)
		}
	}
	ty, errs, rows := exchange(t, cn, rd, parse("s1", "SELECT 'one'"), describeS("s1"), bind("s1"), execute(), syncMsg())
	check("parse", ty, "1tT2DCZ", errs, "")
	if len(rows) != 1 || rows[0] != "one" {
		t.Fatalf("rows %q", rows)
	}
	ty, errs, _ = exchange(t, cn, rd, parse("s1", "SELECT 'two'"), bind("s1"), execute(), syncMsg())
	check("re-parse without close", ty, "EZ", errs, `42P05 prepared statement "s1" already exists`)
	ty, errs, rows = exchange(t, cn, rd, bind("s1"), execute(), closeS("s1"), parse("s1", "SELECT 'two'"), bind("s1"), execute(), syncMsg())
	check("close and parse again", ty, "2DC312DCZ", errs, "")
	if len(rows) != 2 || rows[0] != "one" || rows[1] != "two" {
		t.Fatalf("rows %q", rows)
	}
	ty, errs, _ = exchange(t, cn, rd, bind("s1"), execute(), parse("bad", "SELEC 1"), bind("bad"), execute(), parse("s9", "SELECT 9"), syncMsg())
	check("syntax error in a pipeline", ty, "2DCEZ", errs, "42601")
	ty, errs, _ = exchange(t, cn, rd, bind("s9"), execute(), syncMsg())
	check("a statement after the error was never prepared", ty, "EZ", errs, `26000 prepared statement "s9" does not exist`)
	ty, errs, _ = exchange(t, cn, rd, parse("bad", "SELECT 'fixed'"), bind("bad"), execute(), syncMsg())
	check("the failed name is free", ty, "12DCZ", errs, "")

	// Eviction: three statements, at most two on the backend.
	for round := 0; round < 3; round++ {
		for i := 1; i <= 3; i++ {
			name := fmt.Sprint("e", i)
			msgs := [][]byte{bind(name), execute(), syncMsg()}
			want := "2DCZ"
			if round == 0 {
				msgs = append([][]byte{parse(name, fmt.Sprintf("SELECT 'e%d'", i))}, msgs...)
				want = "12DCZ"
			}
			ty, errs, rows = exchange(t, cn, rd, msgs...)
			check("eviction", ty, want, errs, "")
			if len(rows) != 1 || rows[0] != name {
				t.Fatalf("%s: rows %q", name, rows)
			}
		}
	}
	ty, _, rows = exchange(t, cn, rd, pmsg('Q', "SELECT count(*)::text FROM pg_prepared_statements WHERE name LIKE 'pgwrt%'\x00"))
	if ty != "TDCZ" || rows[0] != "2" {
		t.Fatalf("prepared on the backend: %q %q", ty, rows)
	}
	// A pipeline where a statement is evicted and parsed again in one batch.
	ty, errs, rows = exchange(t, cn, rd, bind("e1"), execute(), bind("e2"), execute(), bind("e3"), execute(), bind("e1"), execute(), syncMsg())
	check("eviction in a pipeline", ty, "2DC2DC2DC2DCZ", errs, "")
	if strings.Join(rows, ",") != "e1,e2,e3,e1" {
		t.Fatalf("rows %q", rows)
	}
}

// TestTransactionPreparedOff: with max_prepared_statements = 0 a named
// Parse pins the client to its backend, where its names work as in
// session mode.
func TestTransactionPreparedOff(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.PoolSize = 2
	cfg.MaxPreparedStatements = 0
	tr := startRouter(t, cfg)
	ctx := context.Background()
	conn := txnConnect(t, tr, pgx.QueryExecModeCacheStatement)
	var p0 int
	for i := 0; i < 10; i++ {
		var p int
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid() + $1::int", 0).Scan(&p); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			p0 = p
		} else if p != p0 {
			t.Fatalf("moved from backend %d to %d", p0, p)
		}
	}
	if tr.metrics.pinned.Get() != 1 {
		t.Fatalf("pinned %d", tr.metrics.pinned.Get())
	}
}

// TestTransactionPreparedLongParse: pgx's named statements whose text is
// longer than the link's buffer (20 KB against buffer_size 8 KiB) are
// gathered whole and rewritten like short ones, so their clients are not
// pinned: two clients share a pool of one backend, each running its own
// long statement and a shared one, and neither waits for the other.
func TestTransactionPreparedLongParse(t *testing.T) {
	c := shared(t)
	cfg := txnConfig(c, 1, 4)
	cfg.ClientWaitTimeout = config.Duration(3 * time.Second)
	tr := startRouter(t, cfg)
	ctx := context.Background()
	pinned0 := tr.metrics.pinned.Get()
	long := func(tag string) string {
		return "SELECT $1::int + 1, pg_backend_pid() /* " + tag + " " + strings.Repeat("x", 20000) + " */"
	}
	a := txnConnect(t, tr, pgx.QueryExecModeCacheStatement)
	b := txnConnect(t, tr, pgx.QueryExecModeCacheStatement)
	pids := map[int]bool{}
	for i := 0; i < 5; i++ {
		for j, conn := range []*pgx.Conn{a, b} {
			for _, q := range []string{long(fmt.Sprint("client ", j)), long("shared")} {
				var got, pid int
				if err := conn.QueryRow(ctx, q, i).Scan(&got, &pid); err != nil || got != i+1 {
					t.Fatalf("client %d, round %d: %d, %v", j, i, got, err)
				}
				pids[pid] = true
			}
		}
	}
	if len(pids) != 1 {
		t.Errorf("a pool of one backend served from %d backends", len(pids))
	}
	if n := tr.metrics.pinned.Get() - pinned0; n != 0 {
		t.Errorf("%d clients pinned by long named statements", n)
	}
}
