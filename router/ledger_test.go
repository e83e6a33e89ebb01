package router

// Shared code of the failover tests (failover_test.go on plain streaming
// replication, failover_patroni_test.go on Patroni): a Router whose log
// goes through a ledger.LogWatch, the ledger.Pooler view of it, and a
// ledger.Env with a Watcher on every node.

import (
	"log/slog"
	"os"
	"strconv"
	"testing"
	"time"

	"pgwrt/config"
	"pgwrt/internal/ledger"
	"pgwrt/internal/pglab"
)

// failoverConfig tunes a lab config for ledger loads: room for every
// client's backend in the cache, so that the reconnect clients measure the
// routing and not SCRAM logins.
func failoverConfig(cfg *config.Config) *config.Config {
	cfg.MaxClients = 96
	cfg.MaxPool = 48
	cfg.MaxBackendConnections = 96
	return cfg
}

// startLoggedRouter is startRouter with the router's log going through a
// LogWatch (at info level, so that hold times are seen).
func startLoggedRouter(t testing.TB, cfg *config.Config) (*testRouter, *ledger.LogWatch) {
	t.Helper()
	var lw *ledger.LogWatch
	tr := startRouterLog(t, cfg, func(h slog.Handler) slog.Handler {
		lw = ledger.NewLogWatch(h)
		return lw
	}, slog.LevelInfo)
	return tr, lw
}

// pooler is the ledger's view of a test router.
type pooler struct {
	tr           *testRouter
	user, pw, db string
}

func (p pooler) DSN() string { return p.tr.dsn(p.user, p.pw, p.db) }

func (p pooler) Primary() string {
	if n := p.tr.Topology().PrimaryNode(); n != nil {
		return n.Name
	}
	return ""
}

func (p pooler) Alarm() string   { return p.tr.Topology().Alarm }
func (p pooler) Epoch() uint64   { return p.tr.Topology().Epoch }
func (p pooler) idle() poolStats { return p.tr.pools.stats() }

// newEnv builds a ledger.Env over a started router and the nodes, with a
// Watcher that the test stops.
func newEnv(t testing.TB, tr *testRouter, lw *ledger.LogWatch, cfg *config.Config, nodes []ledger.Node, user, pw, db string) *ledger.Env {
	var targets []ledger.Target
	for _, n := range nodes {
		targets = append(targets, ledger.Target{Key: n.Key(), DSN: n.DSN})
	}
	w := ledger.Watch(targets, 50*time.Millisecond)
	t.Cleanup(w.Stop)
	return &ledger.Env{
		Pooler:             pooler{tr: tr, user: user, pw: pw, db: db},
		Nodes:              nodes,
		Watch:              w,
		Log:                lw,
		Logf:               t.Logf,
		FailoverWait:       cfg.FailoverWait.D(),
		HealthCheckTimeout: cfg.HealthCheckTimeout.D(),
		HealthCheckPeriod:  cfg.HealthCheckPeriod.D(),
	}
}

// pglabNodes describes a pglab cluster's nodes for the ledger.
func pglabNodes(c *pglab.Cluster) []ledger.Node {
	var ns []ledger.Node
	for _, n := range c.Nodes {
		ns = append(ns, ledger.Node{Name: n.Name, Port: n.Port, DSN: n.DSN(pglab.SuperUser, pglab.SuperPassword, pglab.AppDatabase)})
	}
	return ns
}

// report logs an outcome and turns its failures into test errors; missed
// latency goals are only logged (a loaded CI box is not a benchmark).
func report(t testing.TB, o *ledger.Outcome) {
	t.Helper()
	t.Log("\n" + o.Text())
	for _, m := range o.Missed {
		t.Logf("latency goal missed (not asserted): %s", m)
	}
	for _, f := range o.Failures {
		t.Errorf("%s: %s", o.Name, f)
	}
}

// envDuration reads a duration from the environment.
func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return def
}
