package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgwrt/config"
	"pgwrt/internal/pglab"
)

// txnConnect opens a pgx connection through tr that speaks the simple
// protocol or the extended one with unnamed statements (protocol-level
// named statements are not shared across backends yet).
func txnConnect(t testing.TB, tr *testRouter, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cc, err := pgx.ParseConfig(tr.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase))
	if err != nil {
		t.Fatal(err)
	}
	cc.DefaultQueryExecMode = mode
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatalf("connect through pgwrt: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestTransactionPooling: 16 clients share a pool of 3 backends in
// transaction mode.
// Every transaction commits what it wrote, multi-statement transactions
// stay on one backend from BEGIN to COMMIT, a client's transactions move
// between backends, and never more than the cap are open.
func TestTransactionPooling(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.MaxBackendConnections = 10
	cfg.PoolSize = 3 // the pool's cap, under a roomier global one
	cfg.MaxPool = 3
	tr := startRouter(t, cfg)
	ctx := context.Background()
	admin := txnConnect(t, tr, pgx.QueryExecModeSimpleProtocol)
	if _, err := admin.Exec(ctx, "DROP TABLE IF EXISTS txn_ledger; CREATE TABLE txn_ledger(client int, n int, pid int)"); err != nil {
		t.Fatal(err)
	}
	admin.Close(ctx) // its pgx connection stays open in pgwrt; only its backend matters

	const clients, rounds = 16, 30
	var wg sync.WaitGroup
	pidsByClient := make([]map[int]bool, clients)
	for i := 0; i < clients; i++ {
		mode := pgx.QueryExecModeSimpleProtocol
		if i%2 == 1 {
			mode = pgx.QueryExecModeExec // extended protocol, unnamed statements
		}
		conn := txnConnect(t, tr, mode)
		pidsByClient[i] = map[int]bool{}
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
				if _, err := tx.Exec(ctx, "INSERT INTO txn_ledger VALUES ($1, $2, pg_backend_pid())", i, n); err != nil {
					t.Errorf("client %d: insert: %v", i, err)
					return
				}
				if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil {
					t.Errorf("client %d: %v", i, err)
					return
				}
				if pid1 != pid2 {
					t.Errorf("client %d: one transaction ran on backends %d and %d", i, pid1, pid2)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Errorf("client %d: commit: %v", i, err)
					return
				}
				pidsByClient[i][pid1] = true
				// And a statement outside any transaction block.
				var one int
				if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Errorf("client %d: select 1: %v", i, err)
					return
				}
				if s := tr.pools.stats(); s.Open > cfg.PoolSize {
					t.Errorf("%d backends open, pool_size %d", s.Open, cfg.PoolSize)
				}
			}
		}(i, conn)
	}
	wg.Wait()
	check := txnConnect(t, tr, pgx.QueryExecModeSimpleProtocol)
	var rows, distinct int
	if err := check.QueryRow(ctx, "SELECT count(*), count(DISTINCT (client, n)) FROM txn_ledger").Scan(&rows, &distinct); err != nil {
		t.Fatal(err)
	}
	if rows != clients*rounds || distinct != clients*rounds {
		t.Fatalf("ledger has %d rows (%d distinct), want %d", rows, distinct, clients*rounds)
	}
	moved := 0
	for _, p := range pidsByClient {
		if len(p) > 1 {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("no client's transactions ran on more than one backend: not transaction pooling")
	}
	t.Logf("%d clients over %d backends: %d clients ran on more than one backend", clients, cfg.PoolSize, moved)
}

// TestTransactionIdleCancel: a CancelRequest for a client between
// transactions does nothing; one for a client in a query cancels that
// query on the backend it runs on now.
func TestTransactionCancel(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	tr := startRouter(t, cfg)
	ctx := context.Background()
	conn := txnConnect(t, tr, pgx.QueryExecModeSimpleProtocol)
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatalf("cancel while idle: %v", err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		conn.PgConn().CancelRequest(ctx)
	}()
	_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
	if pgCode(err) != "57014" {
		t.Fatalf("want 57014, got %v", err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("after cancel: %v", err)
	}
}

// TestTransactionPipelined: a client that sends several queries before
// reading any answer (pgx's batch in simple protocol) gets every answer
// in order, and the backend is not given to anyone else in between.
func TestTransactionPipelined(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.MaxBackendConnections = 2
	cfg.PoolSize = 2
	tr := startRouter(t, cfg)
	ctx := context.Background()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		conn := txnConnect(t, tr, mode)
		b := &pgx.Batch{}
		for i := 0; i < 50; i++ {
			b.Queue(fmt.Sprintf("SELECT %d", i))
		}
		res := conn.SendBatch(ctx, b)
		for i := 0; i < 50; i++ {
			var got int
			if err := res.QueryRow().Scan(&got); err != nil || got != i {
				t.Fatalf("mode %v: answer %d: %d, %v", mode, i, got, err)
			}
		}
		if err := res.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTransactionSwitchover: the primary stops and a standby is promoted
// while clients sit between transactions. In transaction mode none of them
// notices: each one's next statement is held while there is no primary
// and runs on the new one, with no error. (In session mode each would get
// one 57P01.) A client inside a transaction block gets one 40001 and
// keeps its connection.
func TestTransactionSwitchover(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pglab.StartT(t, pglab.Options{})
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.HealthCheckPeriod = config.Duration(500 * time.Millisecond)
	tr := startRouter(t, cfg)
	ctx := context.Background()
	old, next := c.Nodes[0], c.Nodes[1]
	var conns []*pgx.Conn
	for i := 0; i < 8; i++ {
		mode := pgx.QueryExecModeSimpleProtocol
		if i%2 == 1 {
			mode = pgx.QueryExecModeExec
		}
		cn := txnConnect(t, tr, mode)
		if got := serverPort(t, cn); got != old.Port {
			t.Fatalf("client %d on port %d before the switchover, primary %d", i, got, old.Port)
		}
		conns = append(conns, cn)
	}
	// One client is inside a transaction block on the old primary.
	inTx := txnConnect(t, tr, pgx.QueryExecModeSimpleProtocol)
	tx, err := inTx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "CREATE TABLE lost_at_switchover (x int)"); err != nil {
		t.Fatal(err)
	}
	if err := old.StopFast(); err != nil {
		t.Fatal(err)
	}
	if err := next.Promote(); err != nil {
		t.Fatal(err)
	}
	// It hears of it once, with its connection kept: 40001, its ROLLBACK
	// answered, its next transaction on the new primary.
	var pe *pgconn.PgError
	if _, err := tx.Exec(ctx, "INSERT INTO lost_at_switchover VALUES (1)"); !errors.As(err, &pe) || pe.Code != "40001" {
		t.Fatalf("client in a transaction block at the switchover: %v; want 40001", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("rollback after the switchover: %v", err)
	}
	if got := serverPort(t, inTx); got != next.Port {
		t.Fatalf("client that was in a block: on port %d after the switchover, new primary %d", got, next.Port)
	}
	var wg sync.WaitGroup
	for i, cn := range conns {
		wg.Add(1)
		go func(i int, cn *pgx.Conn) {
			defer wg.Done()
			var port int
			if err := cn.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port); err != nil {
				t.Errorf("idle client %d saw the switchover: %v", i, err)
				return
			}
			if port != next.Port {
				t.Errorf("idle client %d on port %d after the switchover, new primary %d", i, port, next.Port)
			}
			if _, err := cn.Exec(ctx, fmt.Sprintf("CREATE TABLE after_switchover_%d (x int)", i)); err != nil {
				t.Errorf("idle client %d cannot write on the new primary: %v", i, err)
			}
		}(i, cn)
	}
	wg.Wait()
}

// TestTransactionSessionState: a client that leaves state on its session
// (SET outside a transaction block, LISTEN, a session advisory lock) keeps
// its backend until it leaves, so no other client ever sees that state;
// SET LOCAL inside a transaction block does not pin.
func TestTransactionSessionState(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.PoolSize = 2
	cfg.MaxBackendConnections = 4
	tr := startRouter(t, cfg)
	ctx := context.Background()
	pid := func(cn *pgx.Conn) int {
		t.Helper()
		var p int
		if err := cn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := txnConnect(t, tr, pgx.QueryExecModeSimpleProtocol)
	var base string
	if err := other.QueryRow(ctx, "SHOW search_path").Scan(&base); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, sql string
		mode      pgx.QueryExecMode
	}{
		{"SET", "SET search_path = pinned_schema, public", pgx.QueryExecModeSimpleProtocol},
		{"SET in the extended protocol", "SET search_path TO pinned_schema", pgx.QueryExecModeExec},
		{"LISTEN", "LISTEN pgwrt_channel", pgx.QueryExecModeSimpleProtocol},
		{"advisory lock", "SELECT pg_advisory_lock(4242)", pgx.QueryExecModeSimpleProtocol},
	} {
		cn := txnConnect(t, tr, tc.mode)
		if _, err := cn.Exec(ctx, tc.sql); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		p := pid(cn)
		for i := 0; i < 20; i++ {
			if got := pid(cn); got != p {
				t.Fatalf("%s: the client moved from backend %d to %d: not pinned", tc.name, p, got)
			}
			var sp string
			if err := other.QueryRow(ctx, "SHOW search_path").Scan(&sp); err != nil {
				t.Fatal(err)
			}
			if sp != base {
				t.Fatalf("%s: another client sees search_path %q", tc.name, sp)
			}
		}
		cn.Close(ctx) // the pinned backend is reset (DISCARD ALL) and goes back
	}
	// SET LOCAL ends with its transaction: the client is not pinned.
	cn := txnConnect(t, tr, pgx.QueryExecModeSimpleProtocol)
	for i := 0; i < 3; i++ {
		tx, err := cn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL search_path = local_only"); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if tr.metrics.pinned.Get() != 4 {
		t.Errorf("pgwrt_clients_pinned_total %d, want 4", tr.metrics.pinned.Get())
	}
}

// TestTransactionParams: a client keeps the parameters it was given at
// login whatever backend its transactions land on. Here the role's
// TimeZone changes after the client logged in and the pool's backends are
// replaced: new backends start with the new default, and pgwrt sets the
// client's own value on them; a client that logs in afterwards gets the new
// default.
func TestTransactionParams(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	tr := startRouter(t, cfg)
	ctx := context.Background()
	su, err := pgx.Connect(ctx, c.Nodes[0].DSN(pglab.SuperUser, pglab.SuperPassword, pglab.AppDatabase))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	defer su.Exec(ctx, "ALTER ROLE "+pglab.AppUser+" RESET TimeZone")
	tz := func(cn *pgx.Conn) string {
		t.Helper()
		var s string
		if err := cn.QueryRow(ctx, "SHOW TimeZone").Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if _, err := su.Exec(ctx, "ALTER ROLE "+pglab.AppUser+" SET TimeZone = 'UTC'"); err != nil {
		t.Fatal(err)
	}
	tr.closeIdle(nil)
	a := txnConnect(t, tr, pgx.QueryExecModeSimpleProtocol)
	if got := tz(a); got != "UTC" {
		t.Fatalf("client a starts with TimeZone %q", got)
	}
	if _, err := su.Exec(ctx, "ALTER ROLE "+pglab.AppUser+" SET TimeZone = 'Asia/Tokyo'"); err != nil {
		t.Fatal(err)
	}
	tr.closeIdle(nil) // a's next transaction needs a new backend, which starts in Tokyo
	b := txnConnect(t, tr, pgx.QueryExecModeSimpleProtocol)
	for i := 0; i < 5; i++ {
		if got := tz(b); got != "Asia/Tokyo" {
			t.Fatalf("client b, logged in after the change: TimeZone %q", got)
		}
		if got := tz(a); got != "UTC" {
			t.Fatalf("client a: TimeZone %q after landing on another backend, want its own UTC", got)
		}
	}
}

// TestTransactionTurns drives the turn engine (engine_turns.go) where
// taking turns is not enough and where the client's bytes arrive in
// pieces: an extended batch answered on Flush before its Sync, COPY FROM
// STDIN, a transaction block left open while the client thinks, and
// messages split across writes at every kind of place. Each ends on a
// reusable backend: the next exchange runs, on a pool of one.
func TestTransactionTurns(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.PoolSize = 1
	cfg.MaxPool = 1
	tr := startRouter(t, cfg)
	cn, rd := rawTxnClient(t, tr)
	q := func(sql string) []byte { return pmsg('Q', sql, "\x00") }
	read := func(until byte) string {
		t.Helper()
		var types string
		for {
			m, err := rd.Read()
			if err != nil {
				t.Fatalf("after %q: %v", types, err)
			}
			types += string(m.Type)
			if m.Type == until {
				return types
			}
		}
	}
	send := func(msgs ...[]byte) {
		t.Helper()
		cn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := cn.Write(bytes.Join(msgs, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if ty, errs, _ := exchange(t, cn, rd, q("DROP TABLE IF EXISTS turns; CREATE TABLE turns(v int)")); len(errs) > 0 {
		t.Fatalf("%q %q", ty, errs)
	}

	// Flush: the server answers without a ReadyForQuery; the client
	// reads those answers before it sends its Sync.
	send(parse("", "SELECT 1"), bind(""), execute(), pmsg('H'))
	if ty := read('C'); ty != "12DC" {
		t.Fatalf("flush: %q", ty)
	}
	if ty, errs, _ := exchange(t, cn, rd, syncMsg()); ty != "Z" || len(errs) > 0 {
		t.Fatalf("sync after flush: %q %q", ty, errs)
	}

	// COPY FROM STDIN: the server waits for the client's data.
	send(q("COPY turns FROM STDIN"))
	if ty := read('G'); ty != "G" {
		t.Fatalf("copy: %q", ty)
	}
	time.Sleep(20 * time.Millisecond)
	if ty, errs, _ := exchange(t, cn, rd, pmsg('d', "1\n2\n"), pmsg('d', "3\n"), pmsg('c')); ty != "CZ" || len(errs) > 0 {
		t.Fatalf("copy done: %q %q", ty, errs)
	}

	// A transaction block: open while the client thinks.
	if ty, _, _ := exchange(t, cn, rd, q("BEGIN")); ty != "CZ" {
		t.Fatalf("begin: %q", ty)
	}
	time.Sleep(20 * time.Millisecond)
	if ty, _, _ := exchange(t, cn, rd, q("INSERT INTO turns VALUES (4)")); ty != "CZ" {
		t.Fatalf("insert: %q", ty)
	}
	if ty, _, _ := exchange(t, cn, rd, q("COMMIT")); ty != "CZ" {
		t.Fatalf("commit: %q", ty)
	}

	// Split writes: a header cut in two, a body cut in two, a batch
	// whose Sync comes later, and two transactions in one write.
	whole := bytes.Join([][]byte{q("SELECT sum(v)::text FROM turns")}, nil)
	for _, cut := range []int{2, 9} {
		send(whole[:cut])
		time.Sleep(10 * time.Millisecond)
		ty, errs, rows := exchange(t, cn, rd, whole[cut:])
		if ty != "TDCZ" || len(errs) > 0 || len(rows) != 1 || rows[0] != "10" {
			t.Fatalf("cut at %d: %q %q %q", cut, ty, errs, rows)
		}
	}
	send(parse("", "SELECT 2"), bind(""))
	time.Sleep(10 * time.Millisecond)
	if ty, errs, _ := exchange(t, cn, rd, execute(), syncMsg()); ty != "12DCZ" || len(errs) > 0 {
		t.Fatalf("late sync: %q %q", ty, errs)
	}
	send(q("SELECT 1"), q("SELECT 2"))
	if ty := read('Z') + read('Z'); ty != "TDCZTDCZ" {
		t.Fatalf("two in one write: %q", ty)
	}
	if ty, errs, _ := exchange(t, cn, rd, q("DROP TABLE turns")); ty != "CZ" || len(errs) > 0 {
		t.Fatalf("drop: %q %q", ty, errs)
	}
}
