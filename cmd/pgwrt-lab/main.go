// Command pgwrt-lab runs a local PostgreSQL 15 streaming-replication cluster
// (one primary, N standbys, all on 127.0.0.1) to try pgwrt against, and
// plays failures on it: stop, kill, freeze, promote, follow.
//
//	pgwrt-lab up [-standbys 2] [-dir DIR] [-fsync]   start, print pgwrt backends, exit (servers stay)
//	pgwrt-lab status [-dir DIR]                      role and LSN of each node
//	pgwrt-lab promote|stop|start|kill|freeze|thaw [-dir DIR] NODE
//	pgwrt-lab follow [-dir DIR] NODE PRIMARY          repoint a standby
//	pgwrt-lab down [-dir DIR]                        stop everything, remove the files
//	pgwrt-lab bench [-pgwrt PATH] [-T 30s] [-rounds 3] [-out FILE.md]  pgbench direct vs through pgwrt (and PgBouncer if installed), steady state
//	pgwrt-lab demo [-pgwrt PATH] [-plain]              cluster, pgwrt, client load, a switchover, what the clients saw (own cluster)
//	pgwrt-lab failover-report [-out FILE.md]           issue 3's failover scenarios on Patroni, one table (own cluster)
//
// DIR defaults to $PGWRT_LAB_DIR, else pgwrt-lab under the temporary
// directory. NODE is a node name (pg0, pg1, ...) or its index. It is not
// shipped to routers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"pgwrt/internal/pglab"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "pgwrt-lab:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  pgwrt-lab up [-standbys 2] [-dir DIR] [-fsync]
  pgwrt-lab status [-dir DIR]
  pgwrt-lab promote|stop|start|kill|freeze|thaw [-dir DIR] NODE
  pgwrt-lab follow [-dir DIR] NODE PRIMARY
  pgwrt-lab down [-dir DIR]
  pgwrt-lab bench [-pgwrt PATH] [-T 30s] [-standbys 0] [-scale 10] [-clients 8,32] [-workloads select-only,tpcb-like] [-rounds 3] [-pgbouncer PATH|none] [-haproxy PATH|none] [-out FILE.md]
  pgwrt-lab demo [-pgwrt PATH] [-plain] [-before 5s] [-after 8s] [-session 10] [-reconnect 5] [-v]
  pgwrt-lab failover-report [-clients 10] [-etcd-outage 60s] [-freeze 20s] [-only NAME,...] [-out FILE.md] [-keep] [-v]`

func defaultDir() string {
	if d := os.Getenv("PGWRT_LAB_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "pgwrt-lab")
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "bench":
		return bench(args, stdout, stderr)
	case "demo":
		return demo(args, stdout, stderr)
	case "failover-report":
		return failoverReport(args, stdout, stderr)
	}
	fs := flag.NewFlagSet("pgwrt-lab "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", defaultDir(), "lab directory (state file, data, logs)")
	standbys := fs.Int("standbys", pglab.DefaultStandbys, "number of standbys (up)")
	fsync := fs.Bool("fsync", false, "run with fsync on (up)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }

	if cmd == "up" {
		if fs.NArg() != 0 {
			return errors.New(usage)
		}
		return up(*dir, *standbys, *fsync, stdout, logf)
	}

	c, err := pglab.Load(*dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no lab in %s (pgwrt-lab up first)", *dir)
	}
	if err != nil {
		return err
	}
	c.SetLogf(logf)

	nodes, err := nodeArgs(c, cmd, fs.Args())
	if err != nil {
		return err
	}
	switch cmd {
	case "down":
		return c.Stop()
	case "status":
		return status(c, stdout)
	case "promote":
		return nodes[0].Promote()
	case "stop":
		return nodes[0].StopFast()
	case "start":
		return nodes[0].Start()
	case "kill":
		return nodes[0].Kill()
	case "freeze":
		return nodes[0].Freeze()
	case "thaw":
		return nodes[0].Thaw()
	case "follow":
		return c.Follow(nodes[0], nodes[1])
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

// nodeArgs checks the number of NODE arguments of cmd and resolves them.
func nodeArgs(c *pglab.Cluster, cmd string, args []string) ([]*pglab.Node, error) {
	want := map[string]int{
		"down": 0, "status": 0, "follow": 2,
		"promote": 1, "stop": 1, "start": 1, "kill": 1, "freeze": 1, "thaw": 1,
	}
	n, ok := want[cmd]
	if !ok {
		return nil, fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}
	if len(args) != n {
		return nil, errors.New(usage)
	}
	var nodes []*pglab.Node
	for _, a := range args {
		node, err := c.Node(a)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, node)
	}
	return nodes, nil
}

func up(dir string, standbys int, fsync bool, stdout io.Writer, logf func(string, ...any)) error {
	if _, err := os.Stat(filepath.Join(dir, pglab.StateFile)); err == nil {
		return fmt.Errorf("a lab is already in %s (pgwrt-lab down first)", dir)
	}
	if standbys == 0 {
		standbys = -1 // Options: 0 is the default, negative is none
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := pglab.Start(ctx, pglab.Options{
		Standbys: standbys, BaseDir: dir, Fsync: fsync, Detach: true, Logf: logf,
	})
	if err != nil {
		return err
	}
	fmt.Fprint(stdout, configSnippet(c))
	return nil
}

// configSnippet is the part of pgwrt's TOML config that points at the lab.
func configSnippet(c *pglab.Cluster) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# pgwrt-lab in %s: primary %s; users %s/%s (database %s), %s/%s\n",
		c.BaseDir, c.Nodes[0].Name, pglab.AppUser, pglab.AppPassword, pglab.AppDatabase, pglab.SuperUser, pglab.SuperPassword)
	fmt.Fprintf(&b, "health_check_user = %q\nhealth_check_password = %q\nhealth_check_database = %q\n",
		pglab.SuperUser, pglab.SuperPassword, "postgres")
	for _, n := range c.Nodes {
		fmt.Fprintf(&b, "\n[[backend]]\nname = %q\nhost = %q\nport = %d\n", n.Name, n.Host, n.Port)
	}
	return b.String()
}

// status prints one line per node: address, process state, role, WAL
// position and the node a standby streams from.
func status(c *pglab.Cluster, stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tPID\tSTATE\tROLE\tLSN\tUPSTREAM")
	for _, n := range c.Nodes {
		state, role, lsn, upstream := "stopped", "-", "-", "-"
		pid := n.PID()
		switch {
		case pid == 0:
		case n.Frozen():
			state = "frozen"
		default:
			state = "running"
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			row, err := n.QueryRow(ctx, `SELECT
				CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END,
				CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
				(SELECT sender_host || ':' || sender_port || ' ' || status FROM pg_stat_wal_receiver)`)
			cancel()
			if err != nil || len(row) != 3 {
				role = "?"
				break
			}
			role, lsn, upstream = row[0], row[1], upstreamName(c, row[2])
		}
		pidText := "-"
		if pid != 0 {
			pidText = fmt.Sprint(pid)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Addr(), pidText, state, role, lsn, upstream)
	}
	return tw.Flush()
}

// upstreamName turns "127.0.0.1:PORT status" into "NODE (status)".
func upstreamName(c *pglab.Cluster, s string) string {
	if s == "" {
		return "-"
	}
	addr, st, _ := strings.Cut(s, " ")
	for _, n := range c.Nodes {
		if n.Addr() == addr {
			return n.Name + " (" + st + ")"
		}
	}
	return s
}
