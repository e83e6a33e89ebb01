package patronilab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// PatroniNode is one Patroni daemon and the PostgreSQL it manages.
type PatroniNode struct {
	Name       string `json:"name"`
	PGPort     int    `json:"pg_port"`
	RESTPort   int    `json:"rest_port"`
	Dir        string `json:"dir"`
	DataDir    string `json:"data_dir"`
	ConfigPath string `json:"config_path"`
	LogPath    string `json:"log_path"`
	Pid        int    `json:"pid"`

	pgBinDir string
	proc     *proc

	mu     sync.Mutex
	frozen []int // pids stopped by Freeze, postmaster first
}

// RESTURL is the base URL of the node's Patroni REST API.
func (n *PatroniNode) RESTURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(n.RESTPort)
}

// Addr is the node's PostgreSQL address, host:port.
func (n *PatroniNode) Addr() string {
	return "127.0.0.1:" + strconv.Itoa(n.PGPort)
}

// Running reports whether the node's Patroni daemon runs.
func (n *PatroniNode) Running() bool { return n.proc.alive() }

// PostmasterPID reads the pid of the node's running postmaster from
// postmaster.pid. It fails when PostgreSQL is not running.
func (n *PatroniNode) PostmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(n.DataDir, "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("%s: postgres not running: %w", n.Name, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: bad postmaster.pid %q", n.Name, line)
	}
	if !pidAlive(pid) || !cmdlineHas(pid, n.DataDir) {
		return 0, fmt.Errorf("%s: postmaster %d from postmaster.pid is gone", n.Name, pid)
	}
	return pid, nil
}

// KillPostmaster sends SIGKILL to the node's postmaster only, as a crash
// would. Its backends notice and exit; Patroni notices too and restarts
// PostgreSQL or lets another node take over.
func (n *PatroniNode) KillPostmaster() error {
	pid, err := n.PostmasterPID()
	if err != nil {
		return err
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// Freeze sends SIGSTOP to the node's postmaster and all its children: the
// server keeps its sockets but answers nothing, like a hung machine.
// Patroni itself keeps running. Thaw undoes it.
func (n *PatroniNode) Freeze() error {
	pid, err := n.PostmasterPID()
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	// The postmaster first, so it forks no child we would miss.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return err
	}
	n.frozen = append(n.frozen, pid)
	for _, c := range children(pid) {
		if syscall.Kill(c, syscall.SIGSTOP) == nil {
			n.frozen = append(n.frozen, c)
		}
	}
	return nil
}

// Thaw sends SIGCONT to every process Freeze stopped, and to the current
// postmaster and its children in case the node was frozen by another
// process (a CLI that loaded the state file).
func (n *PatroniNode) Thaw() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	pids := n.frozen
	n.frozen = nil
	if pid, err := n.PostmasterPID(); err == nil {
		pids = append(pids, pid)
		pids = append(pids, children(pid)...)
	}
	var errs []error
	for _, p := range pids {
		if err := syscall.Kill(p, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// patroniConfig is the node's Patroni configuration. It is written as
// JSON, which Patroni's YAML loader reads as it is.
func (n *PatroniNode) patroniConfig(o *Options, etcd []*EtcdMember, postBootstrap string) map[string]any {
	hosts := make([]string, len(etcd))
	for i, m := range etcd {
		hosts[i] = "127.0.0.1:" + strconv.Itoa(m.ClientPort)
	}
	params := defaultParameters()
	for k, v := range o.Parameters {
		params[k] = v
	}
	hba := []string{
		"local all all trust",
		"host replication " + ReplUser + " 127.0.0.1/32 scram-sha-256",
		"host all all 127.0.0.1/32 scram-sha-256",
	}
	return map[string]any{
		"scope": Scope,
		"name":  n.Name,
		"log":   map[string]any{"level": "INFO"},
		"restapi": map[string]any{
			"listen":          "127.0.0.1:" + strconv.Itoa(n.RESTPort),
			"connect_address": "127.0.0.1:" + strconv.Itoa(n.RESTPort),
		},
		"etcd3": map[string]any{"hosts": hosts},
		"bootstrap": map[string]any{
			"dcs": map[string]any{
				"ttl":                     o.TTL,
				"loop_wait":               o.LoopWait,
				"retry_timeout":           o.RetryTimeout,
				"maximum_lag_on_failover": 1 << 20,
				"postgresql": map[string]any{
					"use_pg_rewind": true,
					"use_slots":     true,
					"parameters":    params,
				},
			},
			"initdb":         []any{map[string]any{"encoding": "UTF8"}, map[string]any{"locale": "C.UTF-8"}, "data-checksums"},
			"post_bootstrap": postBootstrap,
		},
		"postgresql": map[string]any{
			"listen":          "127.0.0.1:" + strconv.Itoa(n.PGPort),
			"connect_address": "127.0.0.1:" + strconv.Itoa(n.PGPort),
			"data_dir":        n.DataDir,
			"bin_dir":         o.PGBinDir,
			"pgpass":          filepath.Join(n.Dir, "pgpass"),
			"authentication": map[string]any{
				"superuser":   map[string]any{"username": SuperUser, "password": SuperPassword},
				"replication": map[string]any{"username": ReplUser, "password": ReplPassword},
			},
			"parameters": map[string]any{
				"unix_socket_directories": n.Dir,
			},
			"pg_hba": hba,
			// A spread checkpoint would hold pg_basebackup, and so each
			// replica's first start, for minutes; fsync is off anyway.
			"basebackup": []any{map[string]any{"checkpoint": "fast"}, "no-sync"},
		},
		"tags": map[string]any{
			"nofailover":    false,
			"noloadbalance": false,
			"clonefrom":     false,
			"nosync":        false,
		},
	}
}

// prepare creates the node's directory and writes its configuration.
func (n *PatroniNode) prepare(o *Options, ra runAs, etcd []*EtcdMember, postBootstrap string) error {
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return err
	}
	if err := ra.chown(n.Dir); err != nil {
		return err
	}
	b, err := json.MarshalIndent(n.patroniConfig(o, etcd, postBootstrap), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(n.ConfigPath, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return ra.chown(n.ConfigPath)
}

// start starts the node's Patroni daemon as the run-as user.
func (n *PatroniNode) start(o *Options, ra runAs) error {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + n.Dir,
		"LC_ALL=C.UTF-8",
		"LANG=C.UTF-8",
		"PYTHONUNBUFFERED=1",
	}
	p, err := spawn(spawnSpec{
		path:    o.Patroni,
		args:    []string{n.ConfigPath},
		env:     env,
		dir:     n.Dir,
		logPath: n.LogPath,
		cred:    ra.cred,
		detach:  o.KeepRunning,
	}, n.ConfigPath)
	if err != nil {
		return fmt.Errorf("start %s: %w", n.Name, err)
	}
	n.proc = p
	n.Pid = p.pid
	return nil
}

// postBootstrapScript creates the application role and database. Patroni
// runs it once, on the node that ran initdb, with a connection string as
// its only argument.
func postBootstrapScript(pgBinDir string) string {
	return "#!/bin/sh\nset -e\nexec " + shellQuote(filepath.Join(pgBinDir, "psql")) + ` -X -v ON_ERROR_STOP=1 -d "$1" \
  -c "CREATE ROLE ` + AppUser + ` LOGIN PASSWORD '` + AppPassword + `'" \
  -c "CREATE DATABASE ` + AppDatabase + ` OWNER ` + AppUser + `"
`
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func patroniNodes(base string, ports []int, pgBinDir string) []*PatroniNode {
	ns := make([]*PatroniNode, len(ports)/2)
	for i := range ns {
		name := "node" + strconv.Itoa(i+1)
		dir := filepath.Join(base, name)
		ns[i] = &PatroniNode{
			Name:       name,
			PGPort:     ports[2*i],
			RESTPort:   ports[2*i+1],
			Dir:        dir,
			DataDir:    filepath.Join(dir, "data"),
			ConfigPath: filepath.Join(dir, "patroni.yml"),
			LogPath:    filepath.Join(base, name+".log"),
			pgBinDir:   pgBinDir,
		}
	}
	return ns
}
