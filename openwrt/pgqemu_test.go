package openwrt

// The router builds of ./cmd/pgwrt, run under qemu-user, in front of a real
// PostgreSQL 15 primary + standby (internal/pglab), with pgx as the client:
// what runs on a big-endian MIPS router must pass the same traffic as the
// native build.

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgwrt/internal/pglab"
)

// routerPGArches are the builds run against PostgreSQL: both MIPS byte
// orders and arm64, one after another (qemu is slow and the machine shared).
var routerPGArches = []string{"mipsel_24kc", "mips_24kc", "aarch64_cortex-a53"}

// TestRouterBuildsAgainstPostgreSQL runs each router build as
// "pgwrt run --uci FILE" under qemu-user in front of one shared pglab
// cluster and sends real traffic through it: logins (good and bad
// password), a write read back from the primary, extended-protocol
// parameters, COPY in and out, a 1 MB bytea, a cancel, SHOW POOL_NODES, and
// a clean stop on SIGTERM.
func TestRouterBuildsAgainstPostgreSQL(t *testing.T) {
	if testing.Short() {
		t.Skip("qemu and PostgreSQL skipped with -short")
	}
	var missing []string
	for _, name := range routerPGArches {
		a, _ := Lookup(name)
		if _, err := a.QEMUPath(); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) == len(routerPGArches) {
		t.Skip(strings.Join(missing, "; "))
	}
	c := pglab.StartT(t, pglab.Options{Standbys: 1})
	for _, name := range routerPGArches {
		t.Run(name, func(t *testing.T) { testRouterBuild(t, c, name) })
		checkNoQEMUChild(t, name) // after the subtest's cleanups, failed or not
	}
}

// routerUCI is an /etc/config/pgwrt in front of c: listen on a port the
// kernel picks, no HTTP server (its default port is fixed), every client
// asked for its password.
func routerUCI(c *pglab.Cluster) string {
	var b strings.Builder
	b.WriteString("config pgwrt 'main'\n")
	for _, kv := range [][2]string{
		{"listen", "127.0.0.1:0"},
		{"http_listen", ""},
		{"health_check_user", pglab.SuperUser},
		{"health_check_password", pglab.SuperPassword},
		{"health_check_database", "postgres"},
		{"health_check_period", "1s"},
		{"health_check_timeout", "5s"}, // an emulated 24Kc is slow
		{"server_connect_timeout", "10s"},
		{"failover_wait", "20s"},
		{"log_level", "info"},
	} {
		fmt.Fprintf(&b, "\toption %s '%s'\n", kv[0], kv[1])
	}
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "\nconfig backend '%s'\n\toption host '%s'\n\toption port '%d'\n", n.Name, n.Host, n.Port)
	}
	b.WriteString("\nconfig hba\n\toption database 'all'\n\toption user 'all'\n\toption address 'all'\n\toption method 'password'\n")
	return b.String()
}

var startedRE = regexp.MustCompile(`msg="pgwrt started".* listen=(\S+)`)

// routerDaemon is a "pgwrt run" under qemu and its exit.
type routerDaemon struct {
	*qemuProcess
	done    chan struct{} // closed when the process has been reaped
	waitErr error
	addr    string // host:port from the "pgwrt started" line
}

func (d *routerDaemon) dsn(password string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=30",
		pglab.AppUser, password, d.addr, pglab.AppDatabase)
}

func testRouterBuild(t *testing.T, c *pglab.Cluster, name string) {
	a, _ := Lookup(name)
	if _, err := a.QEMUPath(); err != nil {
		t.Skip(err)
	}
	timings := []string{}
	phase := time.Now()
	lap := func(what string) {
		timings = append(timings, fmt.Sprintf("%s %v", what, time.Since(phase).Round(time.Millisecond)))
		phase = time.Now()
	}
	defer func() { t.Logf("%s timings: %s", name, strings.Join(timings, ", ")) }()

	crossBinary(t, name) // built (or found) before the clock runs for the daemon
	lap("build")

	uciFile := filepath.Join(t.TempDir(), "pgwrt")
	if err := os.WriteFile(uciFile, []byte(routerUCI(c)), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	d := &routerDaemon{qemuProcess: startUnderQEMU(t, name, "run", "--uci", uciFile), done: make(chan struct{})}
	go func() {
		d.waitErr = d.Wait()
		close(d.done)
	}()
	// Runs before startUnderQEMU's cleanup: reap here, so that one finds
	// the process gone.
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("pgwrt (%s) output:\n%s", name, d.Output)
		}
	})

	// The listen address from the log.
	for d.addr == "" {
		if m := startedRE.FindStringSubmatch(d.Output.String()); m != nil {
			d.addr = m[1]
			break
		}
		select {
		case <-d.done:
			t.Fatalf("pgwrt exited at start: %v", d.waitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(start) > time.Minute {
			t.Fatal("no \"pgwrt started\" line within a minute")
		}
	}
	lap("start")

	// A login and a query work once pgwrt has found the primary.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		conn, err := pgx.Connect(ctx, d.dsn(pglab.AppPassword))
		if err == nil {
			_, err = conn.Exec(ctx, "SELECT 1")
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			break
		}
		if time.Since(start) > 90*time.Second {
			t.Fatalf("no login through pgwrt: %v", err)
		}
		select {
		case <-d.done:
			t.Fatalf("pgwrt exited: %v", d.waitErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	lap("first login")
	t.Logf("%s: pgwrt listening on %s, first login %v after start", name, d.addr, time.Since(start).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, d.dsn(pglab.AppPassword))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(context.Background())
	lap("connect")

	primary := c.Nodes[0]
	tbl := "cross_" + strings.NewReplacer("-", "_").Replace(name)
	routerWriteRead(t, ctx, conn, tbl, primary.Port, name)
	lap("write/read")
	routerExtended(t, ctx, conn)
	lap("extended protocol")
	routerCopy(t, ctx, conn, tbl+"_copy")
	lap("COPY 10k in+out")
	routerBytea(t, ctx, conn)
	lap("1 MB bytea")
	routerCancel(t, ctx, conn, primary)
	lap("cancel")
	routerPoolNodes(t, ctx, conn, c)
	lap("SHOW POOL_NODES")

	// A wrong password.
	bad, err := pgx.Connect(ctx, d.dsn("not-"+pglab.AppPassword))
	if err == nil {
		bad.Close(ctx)
		t.Error("login with a wrong password worked")
	} else if code := sqlState(err); code != "28P01" {
		t.Errorf("wrong password: %v (SQLSTATE %q), want 28P01", err, code)
	}
	lap("wrong password")

	// The session still works after all that; then a clean stop.
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("SELECT 1 at the end: %d, %v", one, err)
	}
	conn.Close(ctx)
	if err := d.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatal("pgwrt still running 30s after SIGTERM")
	}
	if d.waitErr != nil {
		t.Errorf("pgwrt after SIGTERM: %v, want exit status 0", d.waitErr)
	}
	if !strings.Contains(d.Output.String(), "pgwrt stopped") {
		t.Errorf("no \"pgwrt stopped\" in the log")
	}
	lap("SIGTERM")
}

// routerWriteRead writes a row and reads it back, on the primary.
func routerWriteRead(t *testing.T, ctx context.Context, conn *pgx.Conn, tbl string, primaryPort int, name string) {
	t.Helper()
	id := pgx.Identifier{tbl}.Sanitize()
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + id,
		"CREATE TABLE " + id + " (id int PRIMARY KEY, v text)",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	want := "written through the " + name + " build"
	if _, err := conn.Exec(ctx, "INSERT INTO "+id+" VALUES (1, $1)", want); err != nil {
		t.Fatalf("insert: %v", err)
	}
	var got string
	var port int
	var recovery bool
	if err := conn.QueryRow(ctx, "SELECT v, inet_server_port(), pg_is_in_recovery() FROM "+id+" WHERE id = 1").Scan(&got, &port, &recovery); err != nil {
		t.Fatalf("read back: %v", err)
	}
	if got != want || port != primaryPort || recovery {
		t.Errorf("read back %q from port %d (in recovery %v); want %q from the primary's port %d", got, port, recovery, want, primaryPort)
	}
	if _, err := conn.Exec(ctx, "DROP TABLE "+id); err != nil {
		t.Error(err)
	}
}

// routerExtended sends parameters of several types, binary ones among
// them, through a cached prepared statement (Parse once, then Bind only).
func routerExtended(t *testing.T, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	const q = "SELECT $1::int8 + 1, $2::text || '!', $3::float8 * 2, NOT $4::bool, array_length($5::int4[], 1), $5::int4[]"
	for i := range 3 {
		big := int64(0x0102030405060708) + int64(i)
		text := fmt.Sprintf("häll€ %d", i)
		arr := []int32{1, -2, int32(i), 1 << 30}
		var (
			gotBig  int64
			gotText string
			gotF    float64
			gotB    bool
			gotLen  int
			gotArr  []int32
		)
		if err := conn.QueryRow(ctx, q, big, text, 1.25, i%2 == 0, arr).Scan(&gotBig, &gotText, &gotF, &gotB, &gotLen, &gotArr); err != nil {
			t.Fatalf("extended query %d: %v", i, err)
		}
		if gotBig != big+1 || gotText != text+"!" || gotF != 2.5 || gotB != (i%2 != 0) || gotLen != len(arr) || fmt.Sprint(gotArr) != fmt.Sprint(arr) {
			t.Errorf("extended query %d: got %d %q %v %v %d %v", i, gotBig, gotText, gotF, gotB, gotLen, gotArr)
		}
	}
}

// routerCopy copies 10,000 rows in and out.
func routerCopy(t *testing.T, ctx context.Context, conn *pgx.Conn, tbl string) {
	t.Helper()
	const rows = 10_000
	id := pgx.Identifier{tbl}.Sanitize()
	for _, q := range []string{
		"DROP TABLE IF EXISTS " + id,
		"CREATE TABLE " + id + " (id int, v text)",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	i := 0
	n, err := conn.CopyFrom(ctx, pgx.Identifier{tbl}, []string{"id", "v"}, pgx.CopyFromFunc(func() ([]any, error) {
		if i == rows {
			return nil, nil
		}
		i++
		return []any{i, "row " + strconv.Itoa(i) + strings.Repeat(".", i%50)}, nil
	}))
	if err != nil || n != rows {
		t.Fatalf("COPY FROM STDIN: %d rows, %v", n, err)
	}
	var serverMD5 string
	var count int
	if err := conn.QueryRow(ctx, "SELECT count(*), md5(string_agg(id || E'\\t' || v || E'\\n', '' ORDER BY id)) FROM "+id).Scan(&count, &serverMD5); err != nil {
		t.Fatal(err)
	}
	if count != rows {
		t.Errorf("after COPY FROM: %d rows, want %d", count, rows)
	}
	h := md5.New()
	var out bytes.Buffer
	tag, err := conn.PgConn().CopyTo(ctx, io.MultiWriter(h, &out), "COPY (SELECT id, v FROM "+id+" ORDER BY id) TO STDOUT")
	if err != nil || tag.RowsAffected() != rows {
		t.Fatalf("COPY TO STDOUT: %d rows, %v", tag.RowsAffected(), err)
	}
	if sum, lines := hex.EncodeToString(h.Sum(nil)), bytes.Count(out.Bytes(), []byte{'\n'}); sum != serverMD5 || lines != rows {
		t.Errorf("COPY TO STDOUT: %d lines md5 %s; server has %d rows md5 %s", lines, sum, rows, serverMD5)
	}
	if _, err := conn.Exec(ctx, "DROP TABLE "+id); err != nil {
		t.Error(err)
	}
}

// routerBytea sends 1 MB as a parameter and gets it back.
func routerBytea(t *testing.T, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	val := make([]byte, 1<<20)
	for i := range val {
		val[i] = byte(r.Uint32())
	}
	sum := md5.Sum(val)
	var back []byte
	var serverMD5 string
	if err := conn.QueryRow(ctx, "SELECT $1::bytea, md5($1::bytea)", val).Scan(&back, &serverMD5); err != nil {
		t.Fatalf("1 MB bytea: %v", err)
	}
	if !bytes.Equal(back, val) || serverMD5 != hex.EncodeToString(sum[:]) {
		t.Errorf("1 MB bytea: got %d bytes back (equal %v), server md5 %s, sent md5 %x", len(back), bytes.Equal(back, val), serverMD5, sum)
	}
}

// routerCancel cancels a pg_sleep(30) through pgwrt once the primary runs
// it, and wants 57014 within 2 s.
func routerCancel(t *testing.T, ctx context.Context, conn *pgx.Conn, primary *pglab.Node) {
	t.Helper()
	watch, err := pgx.Connect(ctx, primary.DSN(pglab.SuperUser, pglab.SuperPassword, "postgres"))
	if err != nil {
		t.Fatalf("connect to the primary: %v", err)
	}
	defer watch.Close(context.Background())

	errc := make(chan error, 1)
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(30) /* router cancel */")
		errc <- err
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		var n int
		err := watch.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(30) /* router cancel */%'").Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		select {
		case err := <-errc:
			t.Fatalf("pg_sleep(30) ended before the cancel: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("pg_sleep(30) not running on the primary after 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	sent := time.Now()
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	if err := conn.PgConn().CancelRequest(cctx); err != nil {
		t.Fatalf("cancel request: %v", err)
	}
	select {
	case err := <-errc:
		took := time.Since(sent)
		t.Logf("cancel: %v after the CancelRequest", took.Round(time.Millisecond))
		if code := sqlState(err); code != "57014" {
			t.Fatalf("cancelled pg_sleep(30): %v (SQLSTATE %q), want 57014", err, code)
		}
		if took > 2*time.Second {
			t.Errorf("cancel took %v, want at most 2s", took)
		}
	case <-time.After(2 * time.Second):
		t.Errorf("pg_sleep(30) still running 2s after the cancel request")
		if err := <-errc; sqlState(err) != "57014" {
			t.Fatalf("pg_sleep(30) ended with %v", err)
		}
	}
	// The session goes on.
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the cancel: %d, %v", one, err)
	}
}

// routerPoolNodes checks SHOW POOL_NODES (simple protocol): both nodes up,
// the primary and the standby where the cluster has them.
func routerPoolNodes(t *testing.T, ctx context.Context, conn *pgx.Conn, c *pglab.Cluster) {
	t.Helper()
	want := map[string]string{} // port -> role
	for i, n := range c.Nodes {
		role := "standby"
		if i == 0 {
			role = "primary"
		}
		want[strconv.Itoa(n.Port)] = role
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := conn.PgConn().Exec(ctx, "SHOW POOL_NODES").ReadAll()
		if err != nil {
			t.Fatalf("SHOW POOL_NODES: %v", err)
		}
		if len(res) != 1 {
			t.Fatalf("SHOW POOL_NODES: %d results, want 1", len(res))
		}
		col := map[string]int{}
		for i, f := range res[0].FieldDescriptions {
			col[f.Name] = i
		}
		for _, k := range []string{"hostname", "port", "status", "role"} {
			if _, ok := col[k]; !ok {
				t.Fatalf("SHOW POOL_NODES: no column %s", k)
			}
		}
		var problems []string
		var table []string
		if len(res[0].Rows) != len(c.Nodes) {
			problems = append(problems, fmt.Sprintf("%d rows, want %d", len(res[0].Rows), len(c.Nodes)))
		}
		seen := map[string]bool{}
		for _, row := range res[0].Rows {
			host, port, status, role := string(row[col["hostname"]]), string(row[col["port"]]), string(row[col["status"]]), string(row[col["role"]])
			table = append(table, strings.Join([]string{host, port, status, role}, " "))
			seen[port] = true
			if want[port] == "" || host != pglab.Host {
				problems = append(problems, fmt.Sprintf("unknown node %s:%s", host, port))
				continue
			}
			if status != "up" || role != want[port] {
				problems = append(problems, fmt.Sprintf("%s:%s is %s %s, want up %s", host, port, status, role, want[port]))
			}
		}
		for port := range want {
			if !seen[port] {
				problems = append(problems, "no row for port "+port)
			}
		}
		if len(problems) == 0 {
			t.Logf("SHOW POOL_NODES: %s", strings.Join(table, "; "))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("SHOW POOL_NODES: %s\n%s", strings.Join(problems, "; "), strings.Join(table, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// checkNoQEMUChild fails the test when a qemu-user process started by this
// test binary is still around after the subtest for arch.
func checkNoQEMUChild(t *testing.T, arch string) {
	t.Helper()
	me := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Logf("cannot list processes: %v", err)
		return
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if lp < 0 || rp < lp {
			continue
		}
		f := strings.Fields(s[rp+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid == me && strings.HasPrefix(s[lp+1:rp], "qemu-") {
			t.Errorf("%s: qemu process %d (%s) left behind", arch, pid, s[lp+1:rp])
		}
	}
}
