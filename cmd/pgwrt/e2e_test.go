package main

// End-to-end tests: the pgwrt binary, built once, runs as a subprocess in
// front of a real PostgreSQL 15 primary + standby (internal/pglab), and
// real clients (psql, pgbench, pgx) talk to it.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"pgwrt/internal/pglab"
)

var (
	e2eDir string // temporary directory for the binary

	binOnce sync.Once
	binPath string
	binErr  error

	clusterOnce sync.Once
	cluster     *pglab.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	if e2eDir != "" {
		os.RemoveAll(e2eDir)
	}
	os.Exit(code)
}

// pgwrtBinary builds the pgwrt binary once, as it is shipped (static,
// stripped), and returns its path.
func pgwrtBinary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("go tool not found: %w", err)
			return
		}
		e2eDir, binErr = os.MkdirTemp("", "pgwrt-e2e-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(e2eDir, "pgwrt")
		cmd := exec.Command(goTool, "build", "-trimpath", "-ldflags", "-s -w", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// labCluster returns the shared primary + 1 standby; TestMain stops it.
func labCluster(t testing.TB) *pglab.Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("needs PostgreSQL (not in -short)")
	}
	if _, err := pglab.PGBin(); err != nil {
		t.Skipf("PostgreSQL not installed: %v", err)
	}
	clusterOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cluster, clusterErr = pglab.Start(ctx, pglab.Options{Standbys: 1, Logf: func(string, ...any) {}})
	})
	if clusterErr != nil {
		t.Fatalf("pglab: %v", clusterErr)
	}
	return cluster
}

// pgProgram is the path of a PostgreSQL client program (psql, pgbench).
func pgProgram(t testing.TB, name string) string {
	t.Helper()
	dir, err := pglab.PGBin()
	if err != nil {
		t.Skipf("PostgreSQL not installed: %v", err)
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not installed", name)
	}
	return p
}

// labConfig is a pgwrt TOML config in front of c, listening on a port the
// kernel picks (the log says which). extra goes among the top-level
// options.
func labConfig(c *pglab.Cluster, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "listen = \"127.0.0.1:0\"\n")
	fmt.Fprintf(&b, "health_check_user = %q\nhealth_check_password = %q\n", pglab.SuperUser, pglab.SuperPassword)
	b.WriteString("health_check_period = \"500ms\"\nhealth_check_timeout = \"2s\"\nfailover_wait = \"10s\"\n")
	b.WriteString(extra)
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "\n[[backend]]\nname = %q\nhost = %q\nport = %d\n", n.Name, n.Host, n.Port)
	}
	b.WriteString("\n[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"all\"\nmethod = \"password\"\n")
	return b.String()
}

// pgwrtProc is a running `pgwrt run`.
type pgwrtProc struct {
	cmd  *exec.Cmd
	Addr string // host:port it listens on
	Host string
	Port string

	done    chan struct{} // closed when the process has exited
	waitErr error

	mu  sync.Mutex
	log bytes.Buffer
}

var listenRE = regexp.MustCompile(`msg="pgwrt started".* listen=(\S+)`)

// startPgwrt writes config to a file and runs `pgwrt run -c FILE` until the
// test ends (SIGTERM, then SIGKILL), and waits until it accepts logins.
func startPgwrt(t testing.TB, config string) *pgwrtProc {
	t.Helper()
	bin := pgwrtBinary(t)
	path := filepath.Join(t.TempDir(), "pgwrt.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return startPgwrtArgs(t, bin, "run", "-c", path)
}

// startPgwrtArgs runs the pgwrt binary with args until the test ends and
// waits until it accepts logins.
func startPgwrtArgs(t testing.TB, bin string, args ...string) *pgwrtProc {
	t.Helper()
	p := &pgwrtProc{done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.log.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listenRE.FindStringSubmatch(line); m != nil {
				select {
				case started <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("pgwrt log:\n%s", p.Log())
		}
	})
	select {
	case p.Addr = <-started:
	case <-p.done:
		t.Fatalf("pgwrt exited at start: %v\n%s", p.waitErr, p.Log())
	case <-time.After(15 * time.Second):
		t.Fatalf("pgwrt did not start\n%s", p.Log())
	}
	p.Host, p.Port, _ = strings.Cut(p.Addr, ":")
	p.waitLogin(t, 20*time.Second)
	return p
}

func (p *pgwrtProc) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

func (p *pgwrtProc) PID() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits; SIGKILL after 10 s.
func (p *pgwrtProc) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("pgwrt did not stop on SIGTERM within 10s; killing it")
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *pgwrtProc) DSN() string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=20",
		pglab.AppUser, pglab.AppPassword, p.Addr, pglab.AppDatabase)
}

// waitLogin retries a login and a query until they work: pgwrt has found
// the primary.
func (p *pgwrtProc) waitLogin(t testing.TB, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := pgx.Connect(ctx, p.DSN())
		if err == nil {
			_, err = c.Exec(ctx, "SELECT 1")
			c.Close(ctx)
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("no login through pgwrt after %s: %v\n%s", d, err, p.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *pgwrtProc) connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.DSN())
	if err != nil {
		t.Fatalf("connect through pgwrt: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// memKB reads VmHWM (peak RSS) and VmRSS of pid from /proc, in KiB.
func memKB(t testing.TB, pid int) (hwm, rss int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read /proc status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.Atoi(f[0])
		switch k {
		case "VmHWM":
			hwm = n
		case "VmRSS":
			rss = n
		}
	}
	return hwm, rss
}

func mb(kb int) string { return fmt.Sprintf("%.1f MB", float64(kb)/1024) }

// runClient runs a PostgreSQL client program with PGPASSWORD set and
// returns its stdout; it fails the test on a non-zero exit.
func runClient(t testing.TB, timeout time.Duration, prog string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append(os.Environ(), "PGPASSWORD="+pglab.AppPassword, "PGCONNECT_TIMEOUT=20", "PGSSLMODE=disable")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(prog), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func (p *pgwrtProc) psql(t testing.TB, args ...string) string {
	t.Helper()
	base := []string{"-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", p.Host, "-p", p.Port, "-U", pglab.AppUser, "-d", pglab.AppDatabase}
	return runClient(t, time.Minute, pgProgram(t, "psql"), append(base, args...)...)
}

// ---- pgwrt check ----

func runPgwrt(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(pgwrtBinary(t), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatal(err)
	}
	return code, o.String(), e.String()
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	const backends = `
[[backend]]
name = "a"
host = "127.0.0.1"
port = 5432

[[backend]]
name = "b"
host = "127.0.0.2"
`
	cases := []struct {
		name string
		text string
		code int
		out  string // regexp on stdout (code 0) or stderr
	}{
		{"good", "listen = \"127.0.0.1:6432\"\n" + backends, 0, `good\.toml: ok \(2 backends\)`},
		{"bad-duration", "listen = \"127.0.0.1:6432\"\nhealth_check_period = \"5 parsecs\"\n" + backends, 1,
			`^\S*bad-duration\.toml:2: health_check_period: bad duration "5 parsecs"`},
		{"unknown-key", "listen = \"127.0.0.1:6432\"\n\nmax_clientz = 3\n" + backends, 1,
			`^\S*unknown-key\.toml:3: max_clientz: unknown option`},
		{"duplicate-backend", backends + "\n[[backend]]\nhost = \"127.0.0.1\"\nport = 5432\n", 1,
			`^\S*duplicate-backend\.toml:11: backend: 127\.0\.0\.1:5432 is defined twice \(lines 2 and 11\)`},
		{"no-backends", "listen = \"127.0.0.1:6432\"\n", 1, `^\S*no-backends\.toml(:\d+)?: backend: no backends configured`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name+".toml")
			if err := os.WriteFile(path, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			code, stdout, stderr := runPgwrt(t, "check", "-c", path)
			out := stdout
			if tc.code != 0 {
				out = stderr
			}
			if code != tc.code || !regexp.MustCompile(tc.out).MatchString(out) {
				t.Errorf("pgwrt check %s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant match: %s", tc.name, code, tc.code, stdout, stderr, tc.out)
			}
			if tc.code != 0 && strings.Contains(stderr, "level=") {
				t.Errorf("check wrote log lines: %s", stderr)
			}
		})
	}
	// No file at all, and no -c.
	if code, _, stderr := runPgwrt(t, "check", "-c", filepath.Join(dir, "missing.toml")); code != 1 || !strings.Contains(stderr, "missing.toml") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr)
	}
	if code, _, stderr := runPgwrt(t, "check"); code != 1 || !strings.Contains(stderr, "no config file") {
		t.Errorf("no -c: exit %d, stderr %q", code, stderr)
	}
}

// ---- psql ----

func TestPsql(t *testing.T) {
	c := labCluster(t)
	p := startPgwrt(t, labConfig(c, ""))

	if got := strings.TrimSpace(p.psql(t, "-c", "SELECT inet_server_port(), pg_is_in_recovery(), current_user")); got != fmt.Sprintf("%d|f|%s", c.Nodes[0].Port, pglab.AppUser) {
		t.Fatalf("query through pgwrt = %q, want the primary (port %d)", got, c.Nodes[0].Port)
	}

	// SHOW POOL_NODES is answered by pgwrt itself (psql sends it as a simple
	// query): one row per backend, the primary marked.
	rows := strings.Split(strings.TrimSpace(p.psql(t, "-c", "SHOW POOL_NODES")), "\n")
	if len(rows) != len(c.Nodes) {
		t.Fatalf("SHOW POOL_NODES: %d rows, want %d:\n%s", len(rows), len(c.Nodes), strings.Join(rows, "\n"))
	}
	wantPrimary := fmt.Sprintf("0|%s|%d|up|primary|", c.Nodes[0].Host, c.Nodes[0].Port)
	wantStandby := fmt.Sprintf("1|%s|%d|up|standby|", c.Nodes[1].Host, c.Nodes[1].Port)
	if !strings.HasPrefix(rows[0], wantPrimary) || !strings.HasPrefix(rows[1], wantStandby) {
		t.Fatalf("SHOW POOL_NODES:\n%s\nwant rows starting %q and %q", strings.Join(rows, "\n"), wantPrimary, wantStandby)
	}

	// \copy in from a local file and back out.
	dir := t.TempDir()
	in := filepath.Join(dir, "in.csv")
	var data strings.Builder
	for i := 1; i <= 5000; i++ {
		fmt.Fprintf(&data, "%d,\"row \"\"%d\"\" with, comma\"\n", i, i) // CSV quoting both ways
	}
	csv := data.String()
	if err := os.WriteFile(in, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	p.psql(t, "-c", "DROP TABLE IF EXISTS e2e_copy", "-c", "CREATE TABLE e2e_copy (id int PRIMARY KEY, v text)")
	p.psql(t, "-c", `\copy e2e_copy FROM '`+in+`' WITH (FORMAT csv)`)
	if got := strings.TrimSpace(p.psql(t, "-c", "SELECT count(*), min(v) FROM e2e_copy WHERE id = 7 OR id > 4000")); got != `1001|row "4001" with, comma` {
		t.Fatalf("after \\copy in: %q", got)
	}
	out := filepath.Join(dir, "out.csv")
	p.psql(t, "-c", `\copy (SELECT * FROM e2e_copy ORDER BY id) TO '`+out+`' WITH (FORMAT csv)`)
	back, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if string(back) != csv {
		t.Fatalf("\\copy out differs from what went in (%d vs %d bytes)", len(back), len(csv))
	}
}

// ---- pgbench ----

var failedRE = regexp.MustCompile(`number of failed transactions: (\d+)`)
var tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

func TestPgbench(t *testing.T) {
	c := labCluster(t)
	p := startPgwrt(t, labConfig(c, "max_clients = 16\n"))
	pgbench := pgProgram(t, "pgbench")
	conn := []string{"-h", p.Host, "-p", p.Port, "-U", pglab.AppUser}

	runClient(t, 2*time.Minute, pgbench, append(append([]string{"-i", "-s", "1", "-q"}, conn...), pglab.AppDatabase)...)
	for _, mode := range []struct{ name, flag string }{{"select-only", "-S"}, {"tpcb-like", ""}} {
		args := append([]string{"-n", "-c", "8", "-j", "2", "-T", "5"}, conn...)
		if mode.flag != "" {
			args = append(args, mode.flag)
		}
		out := runClient(t, time.Minute, pgbench, append(args, pglab.AppDatabase)...)
		f := failedRE.FindStringSubmatch(out)
		tps := tpsRE.FindStringSubmatch(out)
		if f == nil || tps == nil {
			t.Fatalf("pgbench %s: cannot read the result:\n%s", mode.name, out)
		}
		if f[1] != "0" {
			t.Fatalf("pgbench %s: %s failed transactions:\n%s", mode.name, f[1], out)
		}
		if v, _ := strconv.ParseFloat(tps[1], 64); v <= 0 {
			t.Fatalf("pgbench %s: tps %s:\n%s", mode.name, tps[1], out)
		}
		t.Logf("pgbench %s, 8 clients through pgwrt: %s tps, 0 failed", mode.name, tps[1])
	}
}

// ---- large messages and memory ----

// maxPeakRSS bounds pgwrt's peak RSS (VmHWM) over the whole of TestLargeData:
// memory must not depend on message size (each client slot has two
// buffer_size buffers, 8 KiB by default), so 100 MB values and million-row
// COPYs must fit in what an idle pgwrt plus a few slots use.
const maxPeakRSS = 40 * 1024 // KiB

const bigSize = 100 << 20 // bytes

func TestLargeData(t *testing.T) {
	c := labCluster(t)
	p := startPgwrt(t, labConfig(c, ""))
	hwm, rss := memKB(t, p.PID())
	t.Logf("pgwrt idle: VmRSS %s, VmHWM %s", mb(rss), mb(hwm))

	conn := p.connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	mustExec := func(sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	checkMem := func(what string) {
		t.Helper()
		hwm, rss := memKB(t, p.PID())
		t.Logf("pgwrt after %s: VmHWM %s (bound %s), VmRSS %s", what, mb(hwm), mb(maxPeakRSS), mb(rss))
		if hwm > maxPeakRSS {
			t.Errorf("pgwrt peak RSS %s after %s: over the bound of %s", mb(hwm), what, mb(maxPeakRSS))
		}
	}

	mustExec("DROP TABLE IF EXISTS e2e_big")
	mustExec("CREATE TABLE e2e_big (id int PRIMARY KEY, v bytea)")
	mustExec("ALTER TABLE e2e_big ALTER v SET STORAGE EXTERNAL") // no pointless compression attempts

	// 1. A 100 MiB value made on the server (distinct 32-byte blocks, so a
	// lost, doubled or reordered chunk changes the checksum), read back.
	mustExec(fmt.Sprintf(`INSERT INTO e2e_big
		SELECT 1, string_agg(sha256(int4send(i)), ''::bytea ORDER BY i) FROM generate_series(1, %d) i`, bigSize/32))
	var serverMD5 string
	var serverLen int
	if err := conn.QueryRow(ctx, "SELECT length(v), md5(v) FROM e2e_big WHERE id = 1").Scan(&serverLen, &serverMD5); err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := conn.QueryRow(ctx, "SELECT v FROM e2e_big WHERE id = 1").Scan(&got); err != nil {
		t.Fatalf("read 100 MB value: %v", err)
	}
	if len(got) != bigSize || serverLen != bigSize || md5hex(got) != serverMD5 {
		t.Fatalf("100 MB value read back: %d bytes md5 %s; server has %d bytes md5 %s", len(got), md5hex(got), serverLen, serverMD5)
	}
	checkMem("reading a 100 MB bytea")

	// 2. A 100 MiB parameter sent by the client (one 100 MB Bind message).
	for i := range got {
		got[i] ^= byte(i*7 + i>>13)
	}
	clientMD5 := md5hex(got)
	mustExec("INSERT INTO e2e_big VALUES (2, $1)", got)
	got = nil
	if err := conn.QueryRow(ctx, "SELECT length(v), md5(v) FROM e2e_big WHERE id = 2").Scan(&serverLen, &serverMD5); err != nil {
		t.Fatal(err)
	}
	if serverLen != bigSize || serverMD5 != clientMD5 {
		t.Fatalf("100 MB parameter: server has %d bytes md5 %s; sent %d bytes md5 %s", serverLen, serverMD5, bigSize, clientMD5)
	}
	checkMem("sending a 100 MB parameter")
	mustExec("DROP TABLE e2e_big")

	// 3. COPY FROM STDIN of a million rows.
	const rows = 1_000_000
	mustExec("DROP TABLE IF EXISTS e2e_rows")
	mustExec("CREATE TABLE e2e_rows (id int, v text)")
	i := 0
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"e2e_rows"}, []string{"id", "v"}, pgx.CopyFromFunc(func() ([]any, error) {
		if i == rows {
			return nil, nil
		}
		i++
		return []any{i, "value number " + strconv.Itoa(i)}, nil
	}))
	if err != nil || n != rows {
		t.Fatalf("COPY FROM STDIN: %d rows, %v", n, err)
	}
	checkMem("COPY FROM STDIN of 1M rows")

	// 4. COPY TO STDOUT of a million rows, checked against the server's md5
	// of the same text.
	const sel = "SELECT id, v FROM e2e_rows ORDER BY id"
	if err := conn.QueryRow(ctx, "SELECT md5(string_agg(id || E'\\t' || v || E'\\n', '' ORDER BY id)) FROM e2e_rows").Scan(&serverMD5); err != nil {
		t.Fatal(err)
	}
	h := md5.New()
	cw := &countWriter{w: h}
	tag, err := conn.PgConn().CopyTo(ctx, cw, "COPY ("+sel+") TO STDOUT")
	if err != nil || tag.RowsAffected() != rows {
		t.Fatalf("COPY TO STDOUT: %v rows, %v", tag.RowsAffected(), err)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != serverMD5 || cw.lines != rows {
		t.Fatalf("COPY TO STDOUT: %d lines md5 %s, server md5 %s", cw.lines, sum, serverMD5)
	}
	checkMem("COPY TO STDOUT of 1M rows")
	mustExec("DROP TABLE e2e_rows")

	// The connection is still fine.
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the large transfers: %d, %v", one, err)
	}
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

type countWriter struct {
	w     io.Writer
	lines int
}

func (c *countWriter) Write(b []byte) (int, error) {
	c.lines += bytes.Count(b, []byte{'\n'})
	return c.w.Write(b)
}

// ---- concurrency ----

func TestConcurrentClients(t *testing.T) {
	c := labCluster(t)
	p := startPgwrt(t, labConfig(c, "max_clients = 32\n"))
	const clients, queries = 20, 50
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, p.DSN())
			if err != nil {
				errs <- fmt.Errorf("client %d: connect: %w", i, err)
				return
			}
			defer conn.Close(ctx)
			for q := range queries {
				var got int
				var rec bool
				if err := conn.QueryRow(ctx, "SELECT $1::int + 1, pg_is_in_recovery()", i*1000+q).Scan(&got, &rec); err != nil {
					errs <- fmt.Errorf("client %d query %d: %w", i, q, err)
					return
				}
				if got != i*1000+q+1 || rec {
					errs <- fmt.Errorf("client %d query %d: got %d, in recovery %v", i, q, got, rec)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d clients x %d queries in %s", clients, queries, time.Since(start).Round(time.Millisecond))
}

// ---- shutdown ----

func TestSIGTERM(t *testing.T) {
	c := labCluster(t)
	p := startPgwrt(t, labConfig(c, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	busy := p.connect(t)
	idle := p.connect(t)
	if _, err := idle.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	busyErr := make(chan error, 1)
	go func() {
		_, err := busy.Exec(ctx, "SELECT pg_sleep(60)")
		busyErr <- err
	}()
	time.Sleep(300 * time.Millisecond) // let the query reach the server

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Fatalf("pgwrt still running 5s after SIGTERM\n%s", p.Log())
	}
	if p.waitErr != nil {
		t.Fatalf("pgwrt exit after SIGTERM: %v\n%s", p.waitErr, p.Log())
	}
	t.Logf("pgwrt exited 0 %s after SIGTERM", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(p.Log(), "pgwrt stopped") {
		t.Errorf("no \"pgwrt stopped\" in the log:\n%s", p.Log())
	}

	select {
	case err := <-busyErr:
		if code := pgCode(err); code != "57P01" {
			t.Errorf("client in a query: error %v (code %q), want 57P01", err, code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client in a query still hangs 5s after SIGTERM")
	}
	_, err := idle.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("idle client: query worked after pgwrt stopped")
	}
	t.Logf("idle client's next query: %v", err)

	// The listener is gone.
	cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
	defer ccancel()
	if c2, err := pgx.Connect(cctx, p.DSN()); err == nil {
		c2.Close(ctx)
		t.Fatal("connect worked after pgwrt stopped")
	}
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
