package patronilab

import (
	"os"
	"time"
)

// Credentials the lab bootstraps PostgreSQL with.
const (
	Scope = "pgwrt-lab"

	SuperUser       = "postgres"
	SuperPassword   = "postgres-secret"
	ReplUser        = "replicator"
	ReplPassword    = "repl-secret"
	AppUser         = "app"
	AppPassword     = "app-secret"
	AppDatabase     = "app"
	defaultPGBinDir = "/usr/lib/postgresql/15/bin"
)

// Options configure a lab. The zero value is a usable three-node lab with
// short Patroni timeouts.
type Options struct {
	// BaseDir holds every file of the lab. Empty means a new directory
	// under os.TempDir(). It must be reachable by the postgres OS user.
	BaseDir string
	// Logf receives one line per harness step. Nil discards them.
	Logf func(format string, args ...any) `json:"-"`

	// Nodes is the number of Patroni nodes (default 3).
	Nodes int
	// EtcdMembers is the number of etcd members (default 3).
	EtcdMembers int

	// TTL, LoopWait and RetryTimeout are Patroni's DCS timings in seconds
	// (defaults 10, 1, 4). Patroni wants ttl > loop_wait + 2*retry_timeout.
	// A dead leader is noticed after about TTL seconds.
	TTL          int
	LoopWait     int
	RetryTimeout int

	// StartTimeout bounds Start from the first process to a healthy
	// cluster (default 2 minutes).
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits for one process to exit after
	// SIGTERM before it sends SIGKILL (default 30 seconds).
	StopTimeout time.Duration

	// Parameters are PostgreSQL settings written into the bootstrap DCS
	// configuration, over the lab's defaults.
	Parameters map[string]string

	// PGBinDir holds initdb, postgres, pg_ctl, pg_basebackup and psql.
	// Default: $PATRONILAB_PG_BIN, else Debian's PostgreSQL 15 directory.
	PGBinDir string
	// Patroni, Patronictl and Etcd are the binaries; default: looked up
	// in $PATH.
	Patroni    string
	Patronictl string
	Etcd       string

	// KeepRunning leaves the processes running when this process exits,
	// for a CLI that starts a lab and acts on it later. Otherwise each
	// daemon gets SIGTERM when the process that started it dies.
	KeepRunning bool
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

// withDefaults fills the zero fields. It does not look up binaries; see
// resolveBinaries.
func (o Options) withDefaults() Options {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.EtcdMembers == 0 {
		o.EtcdMembers = 3
	}
	if o.TTL == 0 {
		o.TTL = 10
	}
	if o.LoopWait == 0 {
		o.LoopWait = 1
	}
	if o.RetryTimeout == 0 {
		o.RetryTimeout = 4
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.PGBinDir == "" {
		o.PGBinDir = os.Getenv("PATRONILAB_PG_BIN")
	}
	if o.PGBinDir == "" {
		o.PGBinDir = defaultPGBinDir
	}
	return o
}

// defaultParameters are the PostgreSQL settings every lab starts with. The
// lab only ever loses processes, never the machine, so fsync is off to
// spare the shared disk; a kill -9 loses nothing a client was told is
// committed.
func defaultParameters() map[string]string {
	return map[string]string{
		"password_encryption":   "scram-sha-256",
		"wal_level":             "replica",
		"hot_standby":           "on",
		"max_wal_senders":       "10",
		"max_replication_slots": "10",
		"wal_keep_size":         "64MB",
		"shared_buffers":        "16MB",
		"fsync":                 "off",
	}
}
