package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgwrt/internal/pglab"
)

// Transaction pooling with the real binary and real clients.

const txnConfig = "pool_mode = \"transaction\"\npool_size = 8\nmax_pool = 8\nmax_clients = 200\n"

// TestTransactionPgbench: pgbench's tpcb-like workload, 64 clients over a
// pool of 8, in the simple and the extended protocol (unnamed statements)
// and with named prepared statements (-M prepared, which pgwrt carries
// between backends): no failed transaction, and the books balance
// afterwards (every account, teller and branch update matches a history
// row).
func TestTransactionPgbench(t *testing.T) {
	c := labCluster(t)
	p := startPgwrt(t, labConfig(c, txnConfig))
	pgbench := pgProgram(t, "pgbench")
	conn := []string{"-h", p.Host, "-p", p.Port, "-U", pglab.AppUser}
	runClient(t, 2*time.Minute, pgbench, append(append([]string{"-i", "-s", "2", "-q"}, conn...), pglab.AppDatabase)...)
	for _, mode := range []string{"simple", "extended", "prepared"} {
		// -M prepared prepares each statement with a blocking PQprepare
		// when a client first runs it: a thread blocked there, waiting
		// for a backend that its own clients hold in open transactions,
		// would stall all of them (with any transaction pooler), so each
		// client gets a thread of its own.
		threads := "4"
		if mode == "prepared" {
			threads = "64"
		}
		args := append([]string{"-n", "-M", mode, "-c", "64", "-j", threads, "-T", "5"}, conn...)
		out := runClient(t, 2*time.Minute, pgbench, append(args, pglab.AppDatabase)...)
		f := failedRE.FindStringSubmatch(out)
		tps := tpsRE.FindStringSubmatch(out)
		if f == nil || tps == nil {
			t.Fatalf("pgbench -M %s: cannot read the result:\n%s", mode, out)
		}
		if f[1] != "0" {
			t.Fatalf("pgbench -M %s: %s failed transactions:\n%s", mode, f[1], out)
		}
		t.Logf("pgbench tpcb-like -M %s, 64 clients over pool_size 8 through pgwrt: %s tps, 0 failed", mode, tps[1])
	}
	sums := strings.TrimSpace(p.psql(t, "-c", `SELECT (SELECT sum(delta) FROM pgbench_history), (SELECT sum(abalance) FROM pgbench_accounts),
		(SELECT sum(tbalance) FROM pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), (SELECT count(*) FROM pgbench_history)`))
	f := strings.Split(sums, "|")
	if len(f) != 5 || f[0] != f[1] || f[0] != f[2] || f[0] != f[3] {
		t.Fatalf("the books do not balance (history, accounts, tellers, branches, rows): %s", sums)
	}
	t.Logf("after the runs: %s history rows, every balance sums to %s", f[4], f[0])
	// pgwrt's backends carry the application_name of their last client
	// (pgbench); the cluster is shared with other tests, whose backends
	// may take a moment to go after their pgwrt stopped.
	var backends string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		backends = strings.TrimSpace(runClient(t, time.Minute, pgProgram(t, "psql"), "-X", "-At", "-h", c.Nodes[0].Host, "-p", strconv.Itoa(c.Nodes[0].Port),
			"-U", pglab.AppUser, "-d", pglab.AppDatabase, "-c", "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND application_name = 'pgbench' AND pid <> pg_backend_pid()"))
		n, err := strconv.Atoi(backends)
		if err == nil && n <= 8 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("%s backends for pgbench on the primary, pool_size 8", backends)
		}
	}
	t.Logf("pgbench's backends on the primary afterwards: %s (pool_size 8)", backends)
}

// TestTransactionPsql: psql's \copy in and out and a multi-statement
// transaction in transaction mode.
func TestTransactionPsql(t *testing.T) {
	c := labCluster(t)
	p := startPgwrt(t, labConfig(c, txnConfig))
	dir := t.TempDir()
	var csv strings.Builder
	for i := 0; i < 20000; i++ {
		fmt.Fprintf(&csv, "%d,row %d\n", i, i)
	}
	in := filepath.Join(dir, "in.csv")
	if err := os.WriteFile(in, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p.psql(t, "-c", "DROP TABLE IF EXISTS txn_copy", "-c", "CREATE TABLE txn_copy (id int PRIMARY KEY, v text)")
	p.psql(t, "-c", `\copy txn_copy FROM '`+in+`' WITH (FORMAT csv)`)
	out := filepath.Join(dir, "out.csv")
	p.psql(t, "-c", `\copy (SELECT * FROM txn_copy ORDER BY id) TO '`+out+`' WITH (FORMAT csv)`)
	back, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != csv.String() {
		t.Fatalf("\\copy out differs from what went in (%d vs %d bytes)", len(back), csv.Len())
	}
	got := p.psql(t, "-c", "BEGIN; UPDATE txn_copy SET v = 'x' WHERE id < 10; SELECT count(*) FROM txn_copy WHERE v = 'x'; COMMIT;")
	if strings.TrimSpace(got) != "10" {
		t.Fatalf("transaction block: %q", got)
	}
}

// TestTransactionIdleClientsMemory: 1000 clients logged in and idle in
// transaction mode, over a pool of 20: pgwrt's resident memory stays under
// 24 MB (buffers go with links, not with clients).
func TestTransactionIdleClientsMemory(t *testing.T) {
	c := labCluster(t)
	p := startPgwrt(t, labConfig(c, "pool_mode = \"transaction\"\npool_size = 20\nmax_pool = 20\nmax_clients = 1100\n"))
	_, rss0 := memKB(t, p.PID())
	const n = 1000
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, cn := range conns {
			cn.Close()
		}
	}()
	addr := net.JoinHostPort(p.Host, p.Port)
	for i := 0; i < n; i++ {
		cn, err := pglab.RawLogin(addr)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		conns = append(conns, cn)
	}
	// Every one of them can still run a query.
	for _, i := range []int{0, n / 2, n - 1} {
		if err := pglab.RawQuery(conns[i], "SELECT 1"); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	hwm, rss := memKB(t, p.PID())
	t.Logf("pgwrt with %d idle clients in transaction mode: VmRSS %s (idle before: %s), VmHWM %s", n, mb(rss), mb(rss0), mb(hwm))
	if rss > 24*1024 {
		t.Fatalf("VmRSS %s with %d idle clients: over 24 MB", mb(rss), n)
	}
}
