// Package pglab runs a real PostgreSQL streaming-replication cluster on
// loopback for pgwrt's integration tests and for the pgwrt-lab tool.
//
// A cluster is one primary and N streaming standbys, each a postmaster with
// its own data directory under one base directory:
//
//	BASE/lab.json          the state file (Load reads it back)
//	BASE/sock/             unix sockets of every node
//	BASE/pg0/data          the primary's data directory
//	BASE/pg0/postgres.log  its server log
//	BASE/pg1/...           standbys, made with pg_basebackup
//
// The lifecycle of Start:
//
//  1. find the PostgreSQL binaries (PGWRT_PGBIN, the Debian PostgreSQL 15
//     directory, or pg_config --bindir);
//  2. initdb the primary, write postgresql.conf additions and pg_hba.conf,
//     start it on a port picked free at run time, create the roles;
//  3. pg_basebackup each standby from the primary, point it at the primary
//     in postgresql.auto.conf, start it;
//  4. wait until pg_stat_replication on the primary shows every standby
//     streaming, then write lab.json.
//
// PostgreSQL refuses to run as root: when the process is root, every
// PostgreSQL program runs as the postgres OS user and the base directory is
// owned by it.
//
// Tests use attached postmasters: each is its own process group and gets
// SIGKILL from the kernel when the process that started it dies, so a
// crashed or timed-out test leaves no server behind. The pgwrt-lab tool
// uses detached postmasters (Options.Detach) that outlive it.
package pglab
