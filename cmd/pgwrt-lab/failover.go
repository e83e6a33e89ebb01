package main

// pgwrt-lab failover-report: the failover scenarios of issue 3 against a
// fresh Patroni + etcd cluster, with pgwrt's router running in this process
// in front of it and ledger clients writing through it; one table of what
// the clients saw.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"pgwrt/config"
	"pgwrt/internal/ledger"
	"pgwrt/internal/patronilab"
	"pgwrt/router"
)

const failoverUsage = `usage: pgwrt-lab failover-report [-clients 10] [-etcd-outage 60s] [-freeze 20s]
                                 [-pool-mode session|transaction] [-only NAME,...] [-out FILE.md] [-keep] [-v]`

type failoverOptions struct {
	clients    int
	etcdOutage time.Duration
	freeze     time.Duration
	poolMode   string
	only       map[string]bool
	out        string
	keep       bool
	verbose    bool
}

func parseFailoverFlags(args []string, stderr io.Writer) (failoverOptions, error) {
	fs := flag.NewFlagSet("pgwrt-lab failover-report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, failoverUsage); fs.PrintDefaults() }
	var o failoverOptions
	outage := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("PGWRT_ETCD_OUTAGE")); err == nil && d > 0 {
		outage = d
	}
	fs.IntVar(&o.clients, "clients", 10, "ledger clients per mode (session and reconnect)")
	fs.DurationVar(&o.etcdOutage, "etcd-outage", outage, "how long one etcd member stays down ($PGWRT_ETCD_OUTAGE)")
	fs.DurationVar(&o.freeze, "freeze", 20*time.Second, "how long the primary stays SIGSTOPped")
	fs.StringVar(&o.poolMode, "pool-mode", "session", `pgwrt's pool_mode: "session" or "transaction" (where clients idle at a switchover must see no error)`)
	only := fs.String("only", "", "run only these scenarios (comma-separated names; see -v output)")
	fs.StringVar(&o.out, "out", "", "also write the report as markdown to this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the lab directory (logs, pgwrt.log)")
	fs.BoolVar(&o.verbose, "v", false, "print each scenario's details and the harness's steps")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() != 0 {
		return o, errors.New(failoverUsage)
	}
	if *only != "" {
		o.only = map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			o.only[strings.TrimSpace(n)] = true
		}
	}
	return o, nil
}

// failoverConfig is pgwrt's configuration for the report: the defaults,
// with room in the pool for every client.
func failoverConfig(c *patronilab.Cluster) *config.Config {
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.MaxClients = 96
	cfg.MaxPool = 48
	cfg.MaxBackendConnections = 96
	cfg.HealthCheckUser = patronilab.SuperUser
	cfg.HealthCheckPassword = patronilab.SuperPassword
	for _, n := range c.Nodes {
		cfg.Backends = append(cfg.Backends, config.Backend{Name: n.Name, Host: "127.0.0.1", Port: n.PGPort})
	}
	cfg.HBA = []config.HBARule{{Database: "all", User: "all", Address: "all", Method: "password"}}
	return cfg
}

// routerPooler is the ledger's view of an in-process router.
type routerPooler struct {
	r   *router.Router
	dsn string
}

func (p routerPooler) DSN() string { return p.dsn }
func (p routerPooler) Primary() string {
	if n := p.r.Topology().PrimaryNode(); n != nil {
		return n.Name
	}
	return ""
}
func (p routerPooler) Alarm() string { return p.r.Topology().Alarm }
func (p routerPooler) Epoch() uint64 { return p.r.Topology().Epoch }

func failoverReport(args []string, stdout, stderr io.Writer) error {
	o, err := parseFailoverFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logf := func(string, ...any) {}
	if o.verbose {
		logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	}
	base, err := os.MkdirTemp("", "pgwrt-failover-")
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "starting a Patroni cluster (3 nodes, 3 etcd members) in %s\n", base)
	c, err := patronilab.Start(ctx, patronilab.Options{BaseDir: base, Logf: logf})
	if err != nil {
		return err
	}
	defer func() {
		if err := c.Stop(); err != nil {
			fmt.Fprintln(stderr, "stop:", err)
		}
		if o.keep {
			fmt.Fprintf(stderr, "lab kept in %s\n", base)
		} else {
			os.RemoveAll(base)
		}
	}()

	cfg := failoverConfig(c)
	cfg.PoolMode = o.poolMode
	if err := cfg.Validate(); err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(base, "pgwrt.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	lw := ledger.NewLogWatch(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ln, err := router.Listen(cfg)
	if err != nil {
		return err
	}
	r := router.New(cfg, slog.New(lw))
	r.Start()
	defer r.Close()
	go r.Serve(ctx, ln)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dsn := fmt.Sprintf("postgres://%s:%s@127.0.0.1:%s/%s?sslmode=disable", patronilab.AppUser, patronilab.AppPassword, port, patronilab.AppDatabase)

	var nodes []ledger.Node
	var targets []ledger.Target
	for _, n := range c.Nodes {
		ln := ledger.Node{Name: n.Name, Port: n.PGPort, DSN: n.DSN(patronilab.SuperUser, patronilab.SuperPassword, patronilab.AppDatabase)}
		nodes = append(nodes, ln)
		targets = append(targets, ledger.Target{Key: ln.Key(), DSN: ln.DSN})
	}
	watch := ledger.Watch(targets, 50*time.Millisecond)
	defer watch.Stop()
	env := &ledger.Env{
		Pooler:             routerPooler{r: r, dsn: dsn},
		Nodes:              nodes,
		Watch:              watch,
		Log:                lw,
		Logf:               logf,
		FailoverWait:       cfg.FailoverWait.D(),
		HealthCheckTimeout: cfg.HealthCheckTimeout.D(),
		HealthCheckPeriod:  cfg.HealthCheckPeriod.D(),
		Clients:            o.clients,
	}
	p := &ledger.Patroni{Env: env, C: c, EtcdOutage: o.etcdOutage, FreezeFor: o.freeze, Transaction: cfg.PoolMode == "transaction"}

	began := time.Now()
	var outs []*ledger.Outcome
	for _, sc := range p.Scenarios() {
		if o.only != nil && !o.only[sc.Name] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(stderr, "scenario %s ...\n", sc.Name)
		t0 := time.Now()
		out := sc.Run(ctx)
		outs = append(outs, out)
		fmt.Fprintf(stderr, "  %s (%s)\n", out.Verdict(), time.Since(t0).Round(time.Second))
		if o.verbose {
			fmt.Fprint(stderr, out.Text())
		}
	}
	header := fmt.Sprintf("pgwrt failover report: Patroni %s nodes, etcd %d members; pgwrt pool_mode %s, health_check_period %s, health_check_timeout %s, failover_wait %s; %d session + %d reconnect clients writing every 50 ms; %s",
		fmt.Sprint(len(c.Nodes)), len(c.Etcd), cfg.PoolMode, cfg.HealthCheckPeriod.D(), cfg.HealthCheckTimeout.D(), cfg.FailoverWait.D(),
		o.clients, o.clients, time.Since(began).Round(time.Second))
	table := ledger.Table(outs)
	fmt.Fprintf(stdout, "%s\n\n%s", header, table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(failoverMarkdown(header, outs)), 0o644); err != nil {
			return err
		}
	}
	for _, out := range outs {
		if len(out.Failures) > 0 {
			return fmt.Errorf("%d of %d scenarios broke the contract", countFailed(outs), len(outs))
		}
	}
	return ctx.Err()
}

func countFailed(outs []*ledger.Outcome) int {
	n := 0
	for _, o := range outs {
		if len(o.Failures) > 0 {
			n++
		}
	}
	return n
}

// failoverMarkdown is the report as a markdown document: the table, then
// each scenario's details.
func failoverMarkdown(header string, outs []*ledger.Outcome) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# pgwrt failover report\n\n%s\n\n", header)
	b.WriteString("| scenario | errors | longest write gap | resumed | no primary | held (pgwrt log) | longest connect | longest write | lost rows | stalls > 1 s | verdict |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, o := range outs {
		lost := "-"
		if o.Check != nil {
			lost = fmt.Sprint(len(o.Check.Lost))
		}
		resumed := "-"
		if o.Resumed {
			resumed = o.ResumeAll.Round(time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %d | %s |\n", o.Name, o.Summary.Errors,
			o.Summary.MaxGap.Round(time.Millisecond), resumed, o.NoPrimary.Round(time.Millisecond), o.Held.Round(time.Millisecond),
			o.LongestConnect.Round(time.Millisecond), o.LongestWrite.Round(time.Millisecond), lost, o.Summary.Stalls,
			strings.ReplaceAll(o.Verdict(), "|", "/"))
	}
	b.WriteString("\n## Details\n\n```\n")
	for _, o := range outs {
		b.WriteString(o.Text())
		b.WriteString("\n")
	}
	b.WriteString("```\n")
	return b.String()
}
