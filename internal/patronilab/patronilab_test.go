package patronilab

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLab drives a real cluster through a switchover, a postmaster crash
// and the loss of one etcd member, checking what a SQL client sees.
func TestLab(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Patroni cluster")
	}
	etcdOutage := 5 * time.Second
	if d, err := time.ParseDuration(os.Getenv("PATRONILAB_ETCD_OUTAGE")); err == nil {
		etcdOutage = d
	}
	c := StartT(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	app := func(n *PatroniNode, sql string) (string, error) {
		return n.QueryDSN(ctx, n.DSN(AppUser, AppPassword, AppDatabase), sql)
	}
	mustApp := func(n *PatroniNode, sql string) string {
		t.Helper()
		out, err := app(n, sql)
		if err != nil {
			t.Fatalf("%s: %s: %v", n.Name, sql, err)
		}
		return out
	}

	// 1. The leader takes writes from the app role.
	first, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustApp(first, "CREATE TABLE lab (id int PRIMARY KEY, at text)")
	mustApp(first, "INSERT INTO lab VALUES (1, 'before switchover')")
	if got := mustApp(first, "SELECT current_user || ' ' || current_database()"); got != "app app" {
		t.Fatalf("whoami = %q", got)
	}
	// The app role's password is stored as SCRAM.
	if got, err := first.Query(ctx, "SELECT left(rolpassword, 13) FROM pg_authid WHERE rolname = 'app'"); err != nil || got != "SCRAM-SHA-256" {
		t.Fatalf("app password = %q, %v", got, err)
	}

	// 2. Switchover to another node: it leads, takes writes, has the row.
	var cand *PatroniNode
	for _, n := range c.Nodes {
		if n != first {
			cand = n
			break
		}
	}
	began := time.Now()
	if err := c.Switchover(ctx, cand.Name); err != nil {
		t.Fatal(err)
	}
	switchover := time.Since(began)
	if l, err := c.Leader(ctx); err != nil || l != cand {
		t.Fatalf("leader after switchover = %v, %v; want %s", l, err, cand.Name)
	}
	mustApp(cand, "INSERT INTO lab VALUES (2, 'after switchover')")
	if got := mustApp(cand, "SELECT string_agg(id::text, ',' ORDER BY id) FROM lab"); got != "1,2" {
		t.Fatalf("rows on %s = %q", cand.Name, got)
	}
	if out, err := app(first, "INSERT INTO lab VALUES (99, 'old leader')"); err == nil {
		t.Fatalf("old leader %s took a write: %q", first.Name, out)
	}
	if _, err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	rejoin := time.Since(began)

	// 3. kill -9 the leader's postmaster; Patroni restarts it or fails
	// over. Measure until a leader takes a write again.
	oldPM, err := cand.PostmasterPID()
	if err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	if err := cand.KillPostmaster(); err != nil {
		t.Fatal(err)
	}
	var after *PatroniNode
	for {
		l, err := c.WaitLeader(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if pm, err := l.PostmasterPID(); err == nil && pm != oldPM {
			if _, err := app(l, "INSERT INTO lab VALUES (3, 'after kill')"); err == nil {
				after = l
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
		time.Sleep(100 * time.Millisecond)
	}
	recovery := time.Since(began)
	if got := mustApp(after, "SELECT count(*) FROM lab"); got != "3" {
		t.Fatalf("rows on %s after kill = %q", after.Name, got)
	}
	if _, err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	healed := time.Since(began)

	// 4. One etcd member down: quorum holds, the leader stays.
	before, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StopEtcd(0); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(etcdOutage)
	for i := 4; time.Now().Before(deadline); i++ {
		l, err := c.WaitLeader(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if l != before {
			t.Fatalf("leader changed from %s to %s with one etcd member down", before.Name, l.Name)
		}
		mustApp(l, "INSERT INTO lab VALUES ("+strconv.Itoa(i)+", 'etcd1 down')")
		time.Sleep(500 * time.Millisecond)
	}
	if err := c.StartEtcd(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if l, err := c.WaitHealthy(ctx); err != nil || l != before {
		t.Fatalf("after etcd restart: leader %v, %v; want %s", l, err, before.Name)
	}

	// 5. Pause and resume; the state file drives a second handle.
	if err := c.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	loaded, err := Load(c.BaseDir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := loaded.Leader(ctx); err != nil || l.Name != before.Name {
		t.Fatalf("loaded leader = %v, %v", l, err)
	}
	if !loaded.Etcd[0].Running() || !loaded.Nodes[0].Running() {
		t.Fatal("loaded cluster sees its processes dead")
	}
	if err := loaded.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Patronictl(ctx, "list"); err != nil || !strings.Contains(out, before.Name) || !strings.Contains(out, "Leader") {
		t.Fatalf("patronictl list: %v\n%s", err, out)
	}

	// 6. Freeze a replica: its server hangs; Thaw brings it back.
	var replica *PatroniNode
	for _, n := range c.Nodes {
		if n != before {
			replica = n
			break
		}
	}
	if err := replica.Freeze(); err != nil {
		t.Fatal(err)
	}
	pm, err := replica.PostmasterPID()
	if err != nil {
		t.Fatal(err)
	}
	if st, err := readStat(pm); err != nil || st.state != 'T' {
		t.Fatalf("frozen postmaster state = %+v, %v", st, err)
	}
	qctx, qcancel := context.WithTimeout(ctx, time.Second)
	out, err := replica.Query(qctx, "SELECT 1")
	qcancel()
	if err == nil {
		t.Fatalf("frozen %s answered %q", replica.Name, out)
	}
	if err := replica.Thaw(); err != nil {
		t.Fatal(err)
	}
	if got, err := replica.Query(ctx, "SELECT count(*) > 3 FROM lab"); err != nil || got != "t" {
		t.Fatalf("thawed %s: %q, %v", replica.Name, got, err)
	}

	// 7. Crash the leader's machine: Patroni and postmaster die at once, the
	// leader key expires after the TTL and a replica takes over. The old
	// leader comes back as a replica.
	began = time.Now()
	if err := c.KillNode(before.Name); err != nil {
		t.Fatal(err)
	}
	succ, err := c.WaitLeader(ctx, before.Name)
	if err != nil {
		t.Fatal(err)
	}
	mustApp(succ, "INSERT INTO lab VALUES (1000, 'after node crash')")
	crash := time.Since(began)
	if err := c.StartNode(before.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	crashHealed := time.Since(began)
	if got, err := before.Query(ctx, "SELECT count(*) FROM lab WHERE id = 1000"); err != nil || got != "1" {
		t.Fatalf("rejoined %s: %q, %v", before.Name, got, err)
	}

	// Leave a node frozen: Stop must cope.
	if err := replica.Freeze(); err != nil {
		t.Fatal(err)
	}

	t.Logf("timings: switchover %s (old leader streaming again after %s); "+
		"kill -9 of %s's postmaster: writes on %s after %s, healthy after %s; "+
		"crash of leader %s: writes on %s after %s, healthy after %s",
		switchover.Round(time.Millisecond), rejoin.Round(time.Millisecond),
		cand.Name, after.Name, recovery.Round(time.Millisecond), healed.Round(time.Millisecond),
		before.Name, succ.Name, crash.Round(time.Millisecond), crashHealed.Round(time.Millisecond))
}

func TestPatroniConfig(t *testing.T) {
	o := Options{Parameters: map[string]string{"fsync": "on", "work_mem": "8MB"}}.withDefaults()
	etcd := etcdMembers("/lab", []int{2379, 2380, 2381, 2382})
	n := patroniNodes("/lab", []int{5432, 8008}, o.PGBinDir)[0]
	cfg := n.patroniConfig(&o, etcd, "/lab/post_bootstrap.sh")
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Scope   string `json:"scope"`
		Name    string `json:"name"`
		Restapi struct {
			Listen string `json:"listen"`
		} `json:"restapi"`
		Etcd3 struct {
			Hosts []string `json:"hosts"`
		} `json:"etcd3"`
		Bootstrap struct {
			DCS struct {
				TTL          int `json:"ttl"`
				LoopWait     int `json:"loop_wait"`
				RetryTimeout int `json:"retry_timeout"`
				PostgreSQL   struct {
					UsePgRewind bool              `json:"use_pg_rewind"`
					Parameters  map[string]string `json:"parameters"`
				} `json:"postgresql"`
			} `json:"dcs"`
			PostBootstrap string `json:"post_bootstrap"`
		} `json:"bootstrap"`
		PostgreSQL struct {
			Listen  string   `json:"listen"`
			DataDir string   `json:"data_dir"`
			PgHBA   []string `json:"pg_hba"`
		} `json:"postgresql"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	dcs := got.Bootstrap.DCS
	p := dcs.PostgreSQL.Parameters
	switch {
	case got.Scope != Scope || got.Name != "node1":
		t.Errorf("scope/name = %q/%q", got.Scope, got.Name)
	case got.Restapi.Listen != "127.0.0.1:8008" || got.PostgreSQL.Listen != "127.0.0.1:5432":
		t.Errorf("listen = %q, %q", got.Restapi.Listen, got.PostgreSQL.Listen)
	case strings.Join(got.Etcd3.Hosts, ",") != "127.0.0.1:2379,127.0.0.1:2381":
		t.Errorf("etcd3 hosts = %v", got.Etcd3.Hosts)
	case dcs.TTL != 10 || dcs.LoopWait != 1 || dcs.RetryTimeout != 4 || !dcs.PostgreSQL.UsePgRewind:
		t.Errorf("dcs = %+v", dcs)
	case p["fsync"] != "on" || p["work_mem"] != "8MB" || p["password_encryption"] != "scram-sha-256" || p["wal_keep_size"] != "64MB":
		t.Errorf("parameters = %v", p)
	case got.PostgreSQL.DataDir != filepath.Join("/lab", "node1", "data"):
		t.Errorf("data_dir = %q", got.PostgreSQL.DataDir)
	case got.PostgreSQL.PgHBA[0] != "local all all trust":
		t.Errorf("pg_hba = %v", got.PostgreSQL.PgHBA)
	case got.Bootstrap.PostBootstrap != "/lab/post_bootstrap.sh":
		t.Errorf("post_bootstrap = %q", got.Bootstrap.PostBootstrap)
	}
}

func TestDSN(t *testing.T) {
	n := &PatroniNode{PGPort: 6000}
	for _, tc := range []struct{ user, pw, want string }{
		{"app", "app-secret", "host=127.0.0.1 port=6000 user=app password=app-secret dbname=app sslmode=disable connect_timeout=5"},
		{"a b", `it's\`, `host=127.0.0.1 port=6000 user='a b' password='it\'s\\' dbname=app sslmode=disable connect_timeout=5`},
		{"app", "", "host=127.0.0.1 port=6000 user=app password='' dbname=app sslmode=disable connect_timeout=5"},
	} {
		if got := n.DSN(tc.user, tc.pw, "app"); got != tc.want {
			t.Errorf("DSN(%q, %q) =\n %s\nwant\n %s", tc.user, tc.pw, got, tc.want)
		}
	}
}

func TestTail(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, []byte("a\nb\nc\nd\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := tail(p, 2); got != "c\nd" {
		t.Errorf("tail = %q", got)
	}
	if got := tail(p, 10); got != "a\nb\nc\nd" {
		t.Errorf("tail = %q", got)
	}
}

func TestReadStat(t *testing.T) {
	st, err := readStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.ppid != os.Getppid() || st.state == 'Z' {
		t.Errorf("stat = %+v, ppid %d", st, os.Getppid())
	}
	if !pidAlive(os.Getpid()) || pidAlive(-1) {
		t.Error("pidAlive")
	}
}
