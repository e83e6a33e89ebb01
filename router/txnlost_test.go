package router

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgwrt/internal/pglab"
)

// TestTransactionLost: in transaction mode, the backend under a client's
// transaction ends (pg_terminate_backend: FATAL 57P01, as in a
// switchover). A client inside a transaction block gets one 40001 and
// keeps its connection: its ROLLBACK is answered and its next
// transaction runs; one whose COMMIT, or statement outside a block, was
// unanswered gets FATAL 08007 (outcome unknown) and its connection ends.
func TestTransactionLost(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.PoolSize = 4
	tr := startRouter(t, cfg)
	ctx := context.Background()
	prim, err := c.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}
	su, err := pgx.Connect(ctx, prim.DSN(pglab.SuperUser, pglab.SuperPassword, pglab.AppDatabase))
	if err != nil {
		t.Fatal(err)
	}
	defer su.Close(ctx)
	if _, err := su.Exec(ctx, `DROP TABLE IF EXISTS lost_txn;
		CREATE TABLE lost_txn(v text);
		GRANT ALL ON lost_txn TO `+pglab.AppUser+`;
		CREATE OR REPLACE FUNCTION lost_txn_slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(30); RETURN NULL; END $$;
		CREATE CONSTRAINT TRIGGER lost_txn_slow_commit AFTER INSERT ON lost_txn DEFERRABLE INITIALLY DEFERRED
			FOR EACH ROW WHEN (NEW.v = 'slow commit') EXECUTE FUNCTION lost_txn_slow()`); err != nil {
		t.Fatal(err)
	}
	terminate := func(pid uint32) {
		t.Helper()
		if _, err := su.Exec(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
			t.Fatal(err)
		}
	}
	// terminateSoon ends the app's backend that sleeps, once one does.
	terminateSoon := func() {
		go func() {
			for i := 0; i < 200; i++ {
				var n int
				su2, err := pgx.Connect(ctx, prim.DSN(pglab.SuperUser, pglab.SuperPassword, pglab.AppDatabase))
				if err != nil {
					return
				}
				su2.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1 AND wait_event = 'PgSleep'", pglab.AppUser).Scan(&n)
				su2.Close(ctx)
				if n > 0 {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	code := func(err error) string {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Severity + " " + pe.Code
		}
		return ""
	}
	backendPid := func(tx pgx.Tx) uint32 {
		t.Helper()
		var pid uint32
		if err := tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		return pid
	}
	stillWorks := func(cn *pgx.Conn, what string) {
		t.Helper()
		var one int
		if err := cn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("%s: the connection does not go on: %v", what, err)
		}
	}

	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement} {
		// Idle inside a block: the next statement hears of it.
		cn := txnConnect(t, tr, mode)
		tx, err := cn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO lost_txn VALUES ('idle in block')"); err != nil {
			t.Fatal(err)
		}
		terminate(backendPid(tx))
		time.Sleep(100 * time.Millisecond)
		_, err = tx.Exec(ctx, "INSERT INTO lost_txn VALUES ($1)", "after")
		if code(err) != "ERROR 40001" {
			t.Fatalf("%v: idle in block, next statement: %v; want ERROR 40001", mode, err)
		}
		_, err = tx.Exec(ctx, "SELECT 1")
		if code(err) != "ERROR 25P02" {
			t.Fatalf("%v: a second statement in the failed block: %v; want 25P02", mode, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatalf("%v: rollback: %v", mode, err)
		}
		stillWorks(cn, "idle in block")

		// Taken from under it by pgwrt (the primary moved; loseBackend).
		tx, err = cn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		backendPid(tx)
		taken := 0
		for _, s := range tr.sessions.all() {
			s.mu.Lock()
			be := s.be
			s.mu.Unlock()
			if be != nil {
				s.loseBackend(be, "primary moved from a to b")
				taken++
			}
		}
		if taken != 1 {
			t.Fatalf("%d sessions hold a backend, want 1", taken)
		}
		_, err = tx.Exec(ctx, "SELECT 1")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "40001" || !strings.Contains(pe.Message, "primary moved from a to b") {
			t.Fatalf("%v: backend taken: %v; want 40001 naming the move", mode, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatalf("%v: rollback: %v", mode, err)
		}
		stillWorks(cn, "backend taken")

		// Waiting for an answer inside a block.
		tx, err = cn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		terminateSoon()
		_, err = tx.Exec(ctx, "SELECT pg_sleep(30)")
		if code(err) != "ERROR 40001" {
			t.Fatalf("%v: waiting in block: %v; want ERROR 40001", mode, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatalf("%v: rollback: %v", mode, err)
		}
		stillWorks(cn, "waiting in block")

		// COMMIT unanswered: the outcome is unknown.
		tx, err = cn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO lost_txn VALUES ('slow commit')"); err != nil {
			t.Fatal(err)
		}
		terminateSoon()
		err = tx.Commit(ctx)
		if code(err) != "FATAL 08007" {
			t.Fatalf("%v: commit in flight: %v; want FATAL 08007", mode, err)
		}
		if !cn.IsClosed() {
			var one int
			if err := cn.QueryRow(ctx, "SELECT 1").Scan(&one); err == nil {
				t.Fatalf("%v: the connection goes on after an unknown outcome", mode)
			}
		}

		// A statement outside a block (it commits by itself).
		cn = txnConnect(t, tr, mode)
		stillWorks(cn, "new connection")
		terminateSoon()
		_, err = cn.Exec(ctx, "SELECT pg_sleep(30)")
		if code(err) != "FATAL 08007" {
			t.Fatalf("%v: statement outside a block: %v; want FATAL 08007", mode, err)
		}
	}
	var n int
	if err := su.QueryRow(ctx, "SELECT count(*) FROM lost_txn WHERE v <> 'slow commit'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows of rolled back transactions: %d, %v", n, err)
	}
}

func TestTxnExit(t *testing.T) {
	for q, want := range map[string]byte{
		"ROLLBACK":                          'R',
		"rollback;":                         'R',
		" abort work \x00":                  'R',
		"ROLLBACK TRANSACTION AND NO CHAIN": 'R',
		"COMMIT":                            'C',
		"end transaction;":                  'C',
		"ROLLBACK TO SAVEPOINT a":           0,
		"ROLLBACK PREPARED 'x'":             0,
		"COMMIT PREPARED 'x'":               0,
		"COMMIT AND CHAIN":                  0,
		"ROLLBACK; SELECT 1":                0,
		"SELECT 1":                          0,
		"":                                  0,
	} {
		if got := txnExit([]byte(q)); got != want {
			t.Errorf("txnExit(%q) = %q, want %q", q, got, want)
		}
	}
	for q, want := range map[string]bool{
		"COMMIT":                        true,
		"insert into t values (1); end": true,
		"PREPARE TRANSACTION 'x'":       true,
		"COMMIT PREPARED 'x'":           true,
		"PREPARE p AS SELECT 1":         false,
		"SELECT 'commit'":               false,
		"ROLLBACK":                      false,
	} {
		if got := classifySQL([]byte(q)).commits; got != want {
			t.Errorf("classifySQL(%q).commits = %v, want %v", q, got, want)
		}
	}
}
