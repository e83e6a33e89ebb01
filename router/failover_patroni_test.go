package router

import (
	"context"
	"strconv"
	"testing"
	"time"

	"pgwrt/config"
	"pgwrt/internal/ledger"
	"pgwrt/internal/patronilab"
)

// patroniConfig is a router config in front of a Patroni lab. The health
// check and hold settings are the defaults but for a shorter failover_wait,
// so a test that sees a hold ends sooner.
func patroniConfig(c *patronilab.Cluster) *config.Config {
	cfg := failoverConfig(config.Default())
	cfg.Listen = "127.0.0.1:0"
	cfg.HealthCheckUser = patronilab.SuperUser
	cfg.HealthCheckPassword = patronilab.SuperPassword
	cfg.HealthCheckPeriod = config.Duration(time.Second)
	cfg.HealthCheckTimeout = config.Duration(2 * time.Second)
	cfg.FailoverWait = config.Duration(20 * time.Second)
	for _, n := range c.Nodes {
		cfg.Backends = append(cfg.Backends, config.Backend{Name: n.Name, Host: "127.0.0.1", Port: n.PGPort})
	}
	cfg.HBA = []config.HBARule{{Database: "all", User: "all", Address: "all", Method: "password"}}
	return cfg
}

func patroniNodes(c *patronilab.Cluster) []ledger.Node {
	var ns []ledger.Node
	for _, n := range c.Nodes {
		ns = append(ns, ledger.Node{Name: n.Name, Port: n.PGPort, DSN: n.DSN(patronilab.SuperUser, patronilab.SuperPassword, patronilab.AppDatabase)})
	}
	return ns
}

// TestPatroniFailover proves the failover contract (design §5, issue 3)
// with ledger clients writing through a Router in front of a real Patroni
// cluster. One cluster serves every scenario, in order; each scenario
// starts by waiting for a healthy cluster. PGWRT_ETCD_OUTAGE (default 20s)
// and PGWRT_FREEZE (default 20s) set the two long waits.
func TestPatroniFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Patroni cluster")
	}
	c := patronilab.StartT(t, patronilab.Options{})
	cfg := patroniConfig(c)
	tr, lw := startLoggedRouter(t, cfg)
	env := newEnv(t, tr, lw, cfg, patroniNodes(c), patronilab.AppUser, patronilab.AppPassword, patronilab.AppDatabase)
	p := &ledger.Patroni{
		Env:        env,
		C:          c,
		EtcdOutage: envDuration("PGWRT_ETCD_OUTAGE", 20*time.Second),
		FreezeFor:  envDuration("PGWRT_FREEZE", 20*time.Second),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var outs []*ledger.Outcome
	for _, sc := range p.Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
			began := time.Now()
			o := sc.Run(ctx)
			outs = append(outs, o)
			report(t, o)
			t.Logf("%s took %s", sc.Name, time.Since(began).Round(time.Second))
		})
	}
	t.Log("\n" + ledger.Table(outs))
}

// TestPatroniTransactionSwitchover: the switchover scenarios with the
// router in transaction mode. Clients that sit between transactions at the
// switchover see no error at all; under load, a client sees at most the one
// error of the write it had in flight; nothing acknowledged is lost.
func TestPatroniTransactionSwitchover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Patroni cluster")
	}
	c := patronilab.StartT(t, patronilab.Options{})
	cfg := patroniConfig(c)
	cfg.PoolMode = poolTransaction
	cfg.PoolSize = 16
	tr, lw := startLoggedRouter(t, cfg)
	env := newEnv(t, tr, lw, cfg, patroniNodes(c), patronilab.AppUser, patronilab.AppPassword, patronilab.AppDatabase)
	p := &ledger.Patroni{Env: env, C: c, Transaction: true}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The first scenario is a switchover: the node watch must have seen
	// the leader writable before it, or it takes the leader for the new
	// primary (TestPatroniFailover starts with the etcd outage instead).
	leader, err := c.WaitHealthy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Watch.WaitState(ctx, strconv.Itoa(leader.PGPort), ledger.Writable); err != nil {
		t.Fatal(err)
	}
	var outs []*ledger.Outcome
	for _, sc := range p.Scenarios() {
		if sc.Name != "switchover" && sc.Name != "switchover-idle" && sc.Name != "switchover-no-clients" {
			continue
		}
		t.Run(sc.Name, func(t *testing.T) {
			o := sc.Run(ctx)
			outs = append(outs, o)
			report(t, o)
		})
	}
	t.Log("\n" + ledger.Table(outs))
}
