package router

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"pgwrt/config"
	"pgwrt/internal/pglab"
)

// labConfig is a config for a router in front of c.
// txnConfig is labConfig in transaction mode with pools of size
// backends (max_pool too) and at most maxBackends open.
func txnConfig(c *pglab.Cluster, size, maxBackends int) *config.Config {
	cfg := labConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.PoolSize, cfg.MaxPool, cfg.MaxBackendConnections = size, size, maxBackends
	return cfg
}

func labConfig(c *pglab.Cluster) *config.Config {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.HealthCheckPassword = pglab.SuperPassword
	cfg.HealthCheckPeriod = config.Duration(500 * time.Millisecond)
	cfg.HealthCheckTimeout = config.Duration(2 * time.Second)
	cfg.FailoverWait = config.Duration(10 * time.Second)
	for _, n := range c.Nodes {
		cfg.Backends = append(cfg.Backends, config.Backend{Name: n.Name, Host: n.Host, Port: n.Port})
	}
	cfg.HBA = []config.HBARule{{Database: "all", User: "all", Address: "all", Method: "password"}}
	return cfg
}

type testRouter struct {
	*Router
	addr string
	host string
	port string
}

// startRouter runs a Router for the test and waits until it knows a primary.
func startRouter(t testing.TB, cfg *config.Config) *testRouter {
	t.Helper()
	return startRouterLog(t, cfg, func(h slog.Handler) slog.Handler { return h }, slog.LevelWarn)
}

// startRouterLog is startRouter with the log handler wrapped by wrap, at
// level (PGWRT_TEST_LOG=1: debug).
func startRouterLog(t testing.TB, cfg *config.Config, wrap func(slog.Handler) slog.Handler, level slog.Level) *testRouter {
	t.Helper()
	if e := os.Getenv("PGWRT_TEST_ENGINE"); e != "" {
		// make test runs the transaction-mode tests again on the
		// goroutine engines (the turn engine and the copiers).
		cfg.IOEngine = e
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	ln, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv("PGWRT_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(wrap(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})))
	r := New(cfg, log)
	r.Start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() {
		cancel()
		r.Close()
		<-done
	})
	waitPrimary(t, r, "", 15*time.Second)
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	return &testRouter{Router: r, addr: ln.Addr().String(), host: host, port: port}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// waitPrimary waits until the router's chosen primary is name ("" = any).
func waitPrimary(t testing.TB, r *Router, name string, d time.Duration) *NodeState {
	t.Helper()
	end := time.Now().Add(d)
	for {
		tp := r.Topology()
		if p := tp.PrimaryNode(); p != nil && (name == "" || p.Name == name) {
			return p
		}
		if time.Now().After(end) {
			t.Fatalf("no primary %q after %s: %+v", name, d, tp.Nodes)
		}
		select {
		case <-tp.Changed():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (tr *testRouter) dsn(user, pw, db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&connect_timeout=20", user, pw, tr.addr, db)
}

func (tr *testRouter) connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, tr.dsn(pglab.AppUser, pglab.AppPassword, pglab.AppDatabase))
	if err != nil {
		t.Fatalf("connect through pgwrt: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func serverPort(t testing.TB, c *pgx.Conn) int {
	t.Helper()
	var port int
	if err := c.QueryRow(context.Background(), "SELECT inet_server_port()").Scan(&port); err != nil {
		t.Fatal(err)
	}
	return port
}
