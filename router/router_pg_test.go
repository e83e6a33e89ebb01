package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgwrt/config"
	"pgwrt/internal/pglab"
)

var (
	sharedOnce    sync.Once
	sharedCluster *pglab.Cluster
	sharedErr     error
)

// shared returns one cluster (primary + 2 standbys) for the tests that do
// not change its roles. TestMain stops it.
func shared(t testing.TB) *pglab.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	if _, err := pglab.PGBin(); err != nil {
		t.Skipf("PostgreSQL not installed: %v", err)
	}
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		sharedCluster, sharedErr = pglab.Start(ctx, pglab.Options{})
	})
	if sharedErr != nil {
		t.Fatalf("pglab: %v", sharedErr)
	}
	return sharedCluster
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedCluster != nil {
		sharedCluster.Stop()
	}
	os.Exit(code)
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func TestRoutesToPrimary(t *testing.T) {
	c := shared(t)
	tr := startRouter(t, labConfig(c))
	conn := tr.connect(t)
	if got := serverPort(t, conn); got != c.Nodes[0].Port {
		t.Fatalf("routed to port %d, primary is %d", got, c.Nodes[0].Port)
	}
	var rec bool
	if err := conn.QueryRow(context.Background(), "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
		t.Fatalf("in recovery=%v err=%v", rec, err)
	}
	// Writes work, extended protocol with parameters.
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS t_route (id int primary key, v text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO t_route VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET v = excluded.v", 1, "one"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM t_route WHERE id = $1", 1).Scan(&v); err != nil || v != "one" {
		t.Fatalf("v=%q err=%v", v, err)
	}
	// Errors pass through and the session goes on.
	_, err := conn.Exec(ctx, "SELECT * FROM no_such_table")
	if pgCode(err) != "42P01" {
		t.Fatalf("want 42P01, got %v", err)
	}
	if err := conn.QueryRow(ctx, "SELECT 41+1").Scan(new(int)); err != nil {
		t.Fatal(err)
	}
	// Startup parameters reach the server.
	cfg, _ := pgx.ParseConfig(tr.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase))
	cfg.RuntimeParams["application_name"] = "pgwrt-test-app"
	cfg.RuntimeParams["search_path"] = "pg_catalog"
	c2, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close(ctx)
	var app, sp string
	if err := c2.QueryRow(ctx, "SELECT current_setting('application_name'), current_setting('search_path')").Scan(&app, &sp); err != nil {
		t.Fatal(err)
	}
	if app != "pgwrt-test-app" || sp != "pg_catalog" {
		t.Fatalf("application_name=%q search_path=%q", app, sp)
	}
}

func TestWrongPassword(t *testing.T) {
	c := shared(t)
	tr := startRouter(t, labConfig(c))
	ctx := context.Background()
	_, err := pgx.Connect(ctx, tr.dsn(pglab.AppUser, "wrong", pglab.AppDatabase))
	if pgCode(err) != "28P01" {
		t.Fatalf("want 28P01 from the server, got %v", err)
	}
	if strings.Contains(err.Error(), "app-secret") {
		t.Fatal("error leaks a password")
	}
	// A good login then a wrong one: the cached backend must not be handed
	// to the wrong password.
	good := tr.connect(t)
	good.Close(ctx)
	time.Sleep(100 * time.Millisecond)
	if _, err := pgx.Connect(ctx, tr.dsn(pglab.AppUser, "wrong-again", pglab.AppDatabase)); pgCode(err) != "28P01" {
		t.Fatalf("wrong password after a pooled login: want 28P01, got %v", err)
	}
	// hba reject.
	cfg := labConfig(c)
	cfg.HBA = []config.HBARule{{Database: "all", User: "app", Address: "all", Method: "reject"}, {Database: "all", User: "all", Address: "all", Method: "password"}}
	tr2 := startRouter(t, cfg)
	if _, err := pgx.Connect(ctx, tr2.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase)); pgCode(err) != "28000" {
		t.Fatalf("want 28000, got %v", err)
	}
}

func TestTrustRelaysBackendAuth(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.HBA = nil // default: trust on loopback → the server's SCRAM goes to the client
	tr := startRouter(t, cfg)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, tr.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	// With a stored password the client is not asked.
	cfg2 := labConfig(c)
	cfg2.HBA = nil
	cfg2.Users = []config.User{{Name: pglab.AppUser, Password: pglab.AppPassword}}
	tr2 := startRouter(t, cfg2)
	conn, err = pgx.Connect(ctx, tr2.dsn(pglab.AppUser, "", pglab.AppDatabase))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
}

func TestSessionPoolReuse(t *testing.T) {
	c := shared(t)
	tr := startRouter(t, labConfig(c))
	ctx := context.Background()
	pid := func() int {
		conn := tr.connect(t)
		var p int
		if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&p); err != nil {
			t.Fatal(err)
		}
		// leave state behind: a temp table, a setting, an open transaction
		conn.Exec(ctx, "CREATE TEMP TABLE leftover(x int)")
		conn.Exec(ctx, "SET statement_timeout = 12345")
		conn.Exec(ctx, "BEGIN")
		conn.Close(ctx)
		return p
	}
	p1 := pid()
	time.Sleep(100 * time.Millisecond) // release runs after the client left
	conn := tr.connect(t)
	var p2 int
	var st string
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid(), current_setting('statement_timeout')").Scan(&p2, &st); err != nil {
		t.Fatal(err)
	}
	if p1 != p2 {
		t.Fatalf("backend not reused: %d then %d", p1, p2)
	}
	if st != "0" {
		t.Fatalf("statement_timeout survived the reset: %s", st)
	}
	if _, err := conn.Exec(ctx, "SELECT * FROM leftover"); pgCode(err) != "42P01" {
		t.Fatalf("temp table survived the reset: %v", err)
	}
	if s := tr.pools.stats(); s.Open != 1 {
		t.Fatalf("open backends %d, want 1", s.Open)
	}
}

func TestCancel(t *testing.T) {
	c := shared(t)
	tr := startRouter(t, labConfig(c))
	conn := tr.connect(t)
	ctx := context.Background()
	go func() {
		time.Sleep(300 * time.Millisecond)
		if err := conn.PgConn().CancelRequest(ctx); err != nil {
			t.Errorf("cancel request: %v", err)
		}
	}()
	start := time.Now()
	_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
	took := time.Since(start)
	if pgCode(err) != "57014" {
		t.Fatalf("want 57014, got %v", err)
	}
	if took > 1300*time.Millisecond {
		t.Fatalf("cancel took %s", took)
	}
	// the session is still usable (pgx keeps it after a server-side cancel)
	if !conn.IsClosed() {
		if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(new(int)); err != nil {
			t.Fatalf("after cancel: %v", err)
		}
	}
}

func TestTooManyClients(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.MaxClients = 2
	cfg.ClientWaitTimeout = config.Duration(300 * time.Millisecond)
	tr := startRouter(t, cfg)
	a := tr.connect(t)
	b := tr.connect(t)
	start := time.Now()
	_, err := pgx.Connect(context.Background(), tr.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase))
	if pgCode(err) != "53300" {
		t.Fatalf("want 53300, got %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("refused after %s, before client_wait_timeout", d)
	}
	// A waiting client gets in when a slot frees up.
	done := make(chan error, 1)
	go func() {
		conn, err := pgx.Connect(context.Background(), tr.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase))
		if err == nil {
			conn.Close(context.Background())
		}
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	a.Close(context.Background())
	if err := <-done; err != nil {
		t.Fatalf("waiting client: %v", err)
	}
	_ = b
}

func TestMalformedStartup(t *testing.T) {
	c := shared(t)
	tr := startRouter(t, labConfig(c))
	cases := map[string][]byte{
		"short length": {0, 0, 0, 4},
		"huge length":  {0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0},
		"garbage":      []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"bad version":  {0, 0, 0, 8, 0, 9, 0, 0},
		"no user":      {0, 0, 0, 9, 0, 3, 0, 0, 0},
	}
	for name, p := range cases {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", tr.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			nc.Write(p)
			nc.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, _ := io.ReadAll(nc)
			if len(resp) == 0 || resp[0] != 'E' || !bytes.Contains(resp, []byte("08P01")) {
				t.Fatalf("want ErrorResponse 08P01, got %q", resp)
			}
		})
	}
	// a client that sends half a packet and stalls does not block others
	nc, _ := net.Dial("tcp", tr.addr)
	nc.Write([]byte{0, 0, 1})
	defer nc.Close()
	conn := tr.connect(t)
	if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(new(int)); err != nil {
		t.Fatal(err)
	}
}

func TestSSLRequestRefused(t *testing.T) {
	c := shared(t)
	tr := startRouter(t, labConfig(c))
	nc, err := net.Dial("tcp", tr.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
	var b [1]byte
	nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(nc, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("got %q %v", b, err)
	}
	// pgx with sslmode=prefer falls back to plain text.
	conn, err := pgx.Connect(context.Background(), strings.Replace(tr.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase), "sslmode=disable", "sslmode=prefer", 1))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
}

func TestShowPoolNodes(t *testing.T) {
	c := shared(t)
	tr := startRouter(t, labConfig(c))
	conn := tr.connect(t)
	// wait for the standbys' first checks
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok := 0
		for _, n := range tr.Topology().Nodes {
			if n.Up {
				ok++
			}
		}
		if ok == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rows, err := conn.Query(context.Background(), "SHOW POOL_NODES", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]string
	for rows.Next() {
		var id, host, port, status, role, lag, change string
		if err := rows.Scan(&id, &host, &port, &status, &role, &lag, &change); err != nil {
			t.Fatal(err)
		}
		got = append(got, []string{id, host, port, status, role, lag, change})
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("rows: %v", got)
	}
	if got[0][4] != "primary" || got[1][4] != "standby" || got[2][4] != "standby" || got[0][3] != "up" {
		t.Fatalf("rows: %v", got)
	}
	// and inside a transaction, with the server's status kept
	tx, err := conn.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(context.Background(), "show pool_nodes;", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	if conn.PgConn().TxStatus() != 'T' {
		t.Fatalf("tx status %c", conn.PgConn().TxStatus())
	}
	tx.Rollback(context.Background())
}

func TestCopyListenNotify(t *testing.T) {
	c := shared(t)
	tr := startRouter(t, labConfig(c))
	ctx := context.Background()
	conn := tr.connect(t)
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS t_copy; CREATE TABLE t_copy (id int, v text)"); err != nil {
		t.Fatal(err)
	}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"t_copy"}, []string{"id", "v"}, pgx.CopyFromSlice(10000, func(i int) ([]any, error) {
		return []any{i, "row"}, nil
	}))
	if err != nil || n != 10000 {
		t.Fatalf("copy in: %d %v", n, err)
	}
	var buf bytes.Buffer
	tag, err := conn.PgConn().CopyTo(ctx, &buf, "COPY t_copy TO STDOUT")
	if err != nil || tag.RowsAffected() != 10000 {
		t.Fatalf("copy out: %v %v", tag, err)
	}
	// LISTEN/NOTIFY across two sessions
	l := tr.connect(t)
	if _, err := l.Exec(ctx, "LISTEN pgwrt_chan"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "NOTIFY pgwrt_chan, 'hello'"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nt, err := l.WaitForNotification(wctx)
	if err != nil || nt.Payload != "hello" {
		t.Fatalf("notify: %v %v", nt, err)
	}
}

// TestPromotion stops the primary and promotes a standby: new sessions reach
// the new primary within health_check_period + 1 s of the promotion, and
// cached backends to the old primary are not reused.
func TestPromotion(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	c := pglab.StartT(t, pglab.Options{})
	cfg := labConfig(c)
	cfg.HealthCheckPeriod = config.Duration(time.Second)
	tr := startRouter(t, cfg)
	ctx := context.Background()
	// fill the cache with connections to the old primary
	var conns []*pgx.Conn
	for i := 0; i < 3; i++ {
		conns = append(conns, tr.connect(t))
	}
	for _, cn := range conns {
		cn.Close(ctx)
	}
	time.Sleep(200 * time.Millisecond)
	if s := tr.pools.stats(); s.Idle == 0 {
		t.Fatalf("nothing cached: %+v", s)
	}
	// A second router that will not wait long for a primary.
	impatient := labConfig(c)
	impatient.FailoverWait = config.Duration(700 * time.Millisecond)
	tri := startRouter(t, impatient)
	bound := tr.connect(t) // a session bound to the old primary

	old, next := c.Nodes[0], c.Nodes[1]
	if err := old.StopFast(); err != nil {
		t.Fatal(err)
	}
	// The bound session ends with an error, not a hang.
	if _, err := bound.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("session on a stopped primary still answers")
	} else {
		t.Logf("session bound to the stopped primary got: %v", err)
	}
	waitNoPrimary := time.Now().Add(5 * time.Second)
	for tr.Topology().Primary >= 0 || tri.Topology().Primary >= 0 {
		if time.Now().After(waitNoPrimary) {
			t.Fatal("stopped primary still chosen")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// No primary: held, then 57P03.
	start := time.Now()
	_, err := pgx.Connect(ctx, tri.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase))
	if pgCode(err) != "57P03" {
		t.Fatalf("want 57P03 without a primary, got %v", err)
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("57P03 after %s, before failover_wait", d)
	}
	// A client held during the failover gets the new primary.
	held := make(chan error, 1)
	go func() {
		cn, err := pgx.Connect(ctx, tr.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase))
		if err == nil {
			var port int
			err = cn.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port)
			if err == nil && port != next.Port {
				err = fmt.Errorf("held client landed on port %d", port)
			}
			cn.Close(ctx)
		}
		held <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := next.Promote(); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	if err := <-held; err != nil {
		t.Fatalf("held client: %v", err)
	}
	t.Logf("held client released %s after promotion", time.Since(promoted).Round(time.Millisecond))
	p := waitPrimary(t, tr.Router, next.Name, cfg.HealthCheckPeriod.D()+time.Second)
	conn := tr.connect(t)
	if got := serverPort(t, conn); got != next.Port {
		t.Fatalf("new session on port %d, new primary %d", got, next.Port)
	}
	took := time.Since(promoted)
	t.Logf("new primary %s in use %s after promotion", p.Name, took.Round(time.Millisecond))
	if took > cfg.HealthCheckPeriod.D()+time.Second {
		t.Fatalf("took %s", took)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE after_promotion (x int)"); err != nil {
		t.Fatalf("write on new primary: %v", err)
	}
	// The old primary comes back (as a stale primary): it must not be
	// chosen, because the remaining standby follows the new one.
	if err := c.Follow(c.Nodes[2], next); err != nil {
		t.Fatal(err)
	}
	if err := old.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * cfg.HealthCheckPeriod.D())
	if p := tr.Topology().PrimaryNode(); p == nil || p.Name != next.Name {
		t.Fatalf("primary after the old one came back: %+v (alarm %q)", p, tr.Topology().Alarm)
	}
	for i := 0; i < 5; i++ {
		cn := tr.connect(t)
		if got := serverPort(t, cn); got != next.Port {
			t.Fatalf("session %d on port %d", i, got)
		}
		cn.Close(ctx)
	}
}

// TestReload adds and removes backends and changes pool sizes with live
// sessions: nothing is dropped, the new node is monitored, the removed one
// leaves SHOW POOL_NODES, and its sessions drain.
func TestReload(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.Backends = cfg.Backends[:2] // pg0, pg1
	tr := startRouter(t, cfg)
	ctx := context.Background()
	live := tr.connect(t)
	if _, err := live.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	ncfg := labConfig(c)
	ncfg.Backends = []config.Backend{cfg.Backends[0], {Name: c.Nodes[2].Name, Host: c.Nodes[2].Host, Port: c.Nodes[2].Port}}
	ncfg.MaxClients = 40
	ncfg.MaxPool = 1
	if err := tr.Reload(ncfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		tp := tr.Topology()
		if len(tp.Nodes) == 2 && tp.Nodes[1].Name == c.Nodes[2].Name && tp.Nodes[1].Up {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after reload: %+v", tp.Nodes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := live.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("live session after reload: %v", err)
	}
	if _, err := live.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	if got := tr.Status().MaxClients; got != 40 {
		t.Fatalf("max_clients after reload %d", got)
	}
	// shrink below the number in use: nobody is cut off
	ncfg2 := *ncfg
	ncfg2.MaxClients = 1
	ncfg2.ClientWaitTimeout = config.Duration(200 * time.Millisecond)
	if err := tr.Reload(&ncfg2); err != nil {
		t.Fatal(err)
	}
	// the one slot is the live session's: a second client is refused
	if _, err := pgx.Connect(ctx, tr.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase)); pgCode(err) != "53300" {
		t.Fatalf("second client after shrink to 1: %v", err)
	}
	if _, err := live.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("live session after shrink: %v", err)
	}
	live.Close(ctx)
	time.Sleep(100 * time.Millisecond)
	if st := tr.Status(); st.MaxClients != 1 || st.SlotsInUse != 0 {
		t.Fatalf("slots after drain: %+v", st)
	}
	c2 := tr.connect(t)
	c2.Close(ctx)
}

// TestCloseWithSilentClient: a client that connected and said nothing does
// not hold up a stop.
func TestCloseWithSilentClient(t *testing.T) {
	c := shared(t)
	tr := startRouter(t, labConfig(c))
	nc, err := net.Dial("tcp", tr.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	tr.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Close took %s with a silent client", d)
	}
}

// TestPoolCapEvictionAndIdleTimeout: at max_backend_connections a new key
// evicts the least recently used idle backend of another key, and the
// janitor closes backends idle past server_idle_timeout.
func TestPoolCapEvictionAndIdleTimeout(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.MaxBackendConnections = 2
	cfg.MaxPool = 2
	cfg.ServerIdleTimeout = config.Duration(1500 * time.Millisecond)
	tr := startRouter(t, cfg)
	ctx := context.Background()
	a, b := tr.connect(t), tr.connect(t)
	a.Close(ctx)
	b.Close(ctx)
	waitStats := func(want poolStats) {
		t.Helper()
		end := time.Now().Add(5 * time.Second)
		for tr.pools.stats() != want {
			if time.Now().After(end) {
				t.Fatalf("pool stats %+v, want %+v", tr.pools.stats(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStats(poolStats{Open: 2, Idle: 2})
	// Another key (database postgres): the cap is reached, an idle one goes.
	other, err := pgx.Connect(ctx, tr.dsn(pglab.AppUser, pglab.AppPassword, "postgres"))
	if err != nil {
		t.Fatalf("connect with the cap reached: %v", err)
	}
	var db string
	if err := other.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil || db != "postgres" {
		t.Fatalf("db %q err %v", db, err)
	}
	waitStats(poolStats{Open: 2, Idle: 1})
	other.Close(ctx)
	waitStats(poolStats{Open: 2, Idle: 2})
	// Idle past server_idle_timeout: closed by the janitor.
	waitStats(poolStats{Open: 0, Idle: 0})
}

// TestSessionFatalKeepsCache: a FATAL about the session itself
// (idle_session_timeout, 57P05) neither flushes the idle cache nor makes
// the node suspect; the client hears the server's own error.
func TestSessionFatalKeepsCache(t *testing.T) {
	c := shared(t)
	tr := startRouter(t, labConfig(c))
	ctx := context.Background()
	a, b := tr.connect(t), tr.connect(t)
	a.Close(ctx)
	time.Sleep(100 * time.Millisecond)
	if s := tr.pools.stats(); s.Idle != 1 {
		t.Fatalf("idle %d, want 1", s.Idle)
	}
	if _, err := b.Exec(ctx, "SET idle_session_timeout = '200ms'"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(800 * time.Millisecond)
	_, err := b.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("session outlived idle_session_timeout")
	}
	if s := tr.pools.stats(); s.Idle != 1 {
		t.Fatalf("idle cache flushed by a session FATAL: %+v", s)
	}
	if p := tr.Topology().PrimaryNode(); p == nil || p.Suspect {
		t.Fatalf("primary suspect after a session FATAL: %+v", p)
	}
}

// TestIdleTimeoutZeroKeeps: server_idle_timeout = 0 means never, as the
// config reference says.
func TestIdleTimeoutZeroKeeps(t *testing.T) {
	c := shared(t)
	cfg := labConfig(c)
	cfg.ServerIdleTimeout = 0
	tr := startRouter(t, cfg)
	tr.connect(t).Close(context.Background())
	time.Sleep(2500 * time.Millisecond) // two janitor rounds
	if s := tr.pools.stats(); s.Idle != 1 {
		t.Fatalf("idle backend closed with server_idle_timeout = 0: %+v", s)
	}
}
