// Package patronilab runs a real Patroni cluster on loopback for pgwrt's
// failover tests.
//
// A lab is three etcd members and three Patroni nodes, each Patroni node
// managing its own PostgreSQL 15. Everything listens on 127.0.0.1 on ports
// the kernel hands out at start time, so several labs can run side by side.
// All files live under one base directory:
//
//	<base>/state.json            the Cluster, for a CLI that acts on it later
//	<base>/etcdN.log, etcdN/     one etcd member: its log and data directory
//	<base>/nodeN.log             Patroni's log; PostgreSQL logs there too
//	<base>/nodeN/patroni.yml     Patroni's configuration (JSON, which is YAML)
//	<base>/nodeN/data            the PostgreSQL data directory
//	<base>/post_bootstrap.sh     creates the role and database "app"
//
// The lifecycle of a lab:
//
//  1. Start picks free ports, starts the etcd members and waits until each
//     one reports healthy.
//  2. It writes one Patroni configuration per node and starts the Patroni
//     daemons as the postgres OS user (PostgreSQL refuses to run as root).
//     One of them wins the initialize race, runs initdb and post_bootstrap;
//     the others clone it with pg_basebackup.
//  3. Start returns when the DCS names a leader, that leader's PostgreSQL
//     is a primary, and every other node streams from it.
//  4. Tests disturb the cluster: Switchover, KillPostmaster, Freeze/Thaw,
//     StopEtcd/StartEtcd, Pause/Resume, then wait with WaitLeader or
//     WaitHealthy.
//  5. Stop ends the Patroni daemons (which stop PostgreSQL), kills any
//     postmaster left behind, then stops etcd.
//
// Environment: PATRONILAB_PG_BIN overrides the PostgreSQL bin directory;
// PATRONILAB_KEEP keeps StartT's base directory after the test;
// PATRONILAB_ETCD_OUTAGE sets how long TestLab keeps an etcd member down.
//
// The harness reads the cluster's state through Patroni's REST API. That is a
// convenience of the lab only: pgwrt itself never talks to Patroni, it finds
// the primary with SQL.
package patronilab
