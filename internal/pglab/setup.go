package pglab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// command builds an exec.Cmd for a PostgreSQL program, run as the server
// user with a small, predictable environment.
func (c *Cluster) command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	var cmd *exec.Cmd
	if ctx == nil {
		cmd = exec.Command(filepath.Join(c.PGBin, prog), args...)
	} else {
		cmd = exec.CommandContext(ctx, filepath.Join(c.PGBin, prog), args...)
	}
	cmd.Env = []string{"PATH=" + c.PGBin + ":/usr/bin:/bin", "LC_ALL=C", "TZ=UTC"}
	cmd.Dir = c.BaseDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if !c.detach {
		// Dies with us; see launch for the thread caveat, harmless
		// for these short-lived programs.
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	return cmd
}

// run runs a PostgreSQL program to completion; its output goes into the
// error when it fails.
func (c *Cluster) run(ctx context.Context, env []string, prog string, args ...string) error {
	cmd := c.command(ctx, prog, args...)
	cmd.Env = append(cmd.Env, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pglab: %s: %w\n%s", prog, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// freePort asks the kernel for a free loopback port. Someone else may take
// it before the server binds it; startNew retries with another one.
func freePort() (int, error) {
	l, err := net.Listen("tcp", Host+":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// initPrimary runs initdb and writes the configuration every node shares
// (the standbys copy it with the base backup).
func (c *Cluster) initPrimary(ctx context.Context, n *Node, opt Options) error {
	if err := c.mkdir(n.Dir); err != nil {
		return err
	}
	pwfile := filepath.Join(n.Dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(SuperPassword+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	if err := c.chown(pwfile); err != nil {
		return err
	}
	if err := c.run(ctx, nil, "initdb", "-D", n.DataDir, "-U", SuperUser, "--pwfile", pwfile,
		"-E", "UTF8", "--locale", "C", "--auth-local", "trust", "--auth-host", "scram-sha-256",
		"--no-sync", "--no-instructions"); err != nil {
		return err
	}
	fsync := "off"
	if opt.Fsync {
		fsync = "on"
	}
	conf := []string{
		"",
		"# pglab",
		"listen_addresses = '" + Host + "'",
		"unix_socket_directories = '" + c.SocketDir + "'",
		"password_encryption = 'scram-sha-256'",
		"shared_buffers = 16MB",
		"fsync = " + fsync,
		"wal_level = replica",
		"max_wal_senders = 10",
		"max_replication_slots = 10",
		"hot_standby = on",
		"wal_keep_size = 64MB",
		"wal_retrieve_retry_interval = 1s",
		"wal_receiver_status_interval = 1s",
		"logging_collector = off",
		"log_destination = 'stderr'",
		"log_line_prefix = '%m [%p] %q%u@%d '",
		"log_connections = off",
	}
	conf = append(conf, opt.Conf...)
	if err := appendFile(filepath.Join(n.DataDir, "postgresql.conf"), strings.Join(conf, "\n")+"\n"); err != nil {
		return err
	}
	hba := strings.Join([]string{
		"# pglab",
		"local all         all               trust",
		"host  replication all 127.0.0.1/32  scram-sha-256",
		"host  all         all 127.0.0.1/32  scram-sha-256",
		"host  replication all ::1/128       scram-sha-256",
		"host  all         all ::1/128       scram-sha-256",
	}, "\n") + "\n"
	return os.WriteFile(filepath.Join(n.DataDir, "pg_hba.conf"), []byte(hba), 0o600)
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// createRoles makes the application and replication roles and the
// application database.
func (c *Cluster) createRoles(ctx context.Context, p *Node) error {
	for _, q := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN CREATEDB PASSWORD '%s'", AppUser, AppPassword),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", AppDatabase, AppUser),
		fmt.Sprintf("CREATE ROLE %s LOGIN REPLICATION PASSWORD '%s'", ReplicationUser, ReplicationPassword),
	} {
		if _, err := p.Query(ctx, q); err != nil {
			return err
		}
	}
	return nil
}

// baseBackup makes s a copy of primary p, configured to stream from it.
func (c *Cluster) baseBackup(ctx context.Context, p, s *Node) error {
	if err := c.mkdir(s.Dir); err != nil {
		return err
	}
	if err := c.run(ctx, []string{"PGPASSWORD=" + ReplicationPassword}, "pg_basebackup",
		"-h", p.Host, "-p", fmt.Sprint(p.Port), "-U", ReplicationUser, "-D", s.DataDir,
		"-X", "stream", "-c", "fast", "--no-sync", "-R"); err != nil {
		return err
	}
	return c.pointAt(s, p)
}

// setAutoConf sets parameters in the node's postgresql.auto.conf, replacing
// earlier lines for the same parameters.
func (n *Node) setAutoConf(kv map[string]string) error {
	path := filepath.Join(n.DataDir, "postgresql.auto.conf")
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var out []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		key, _, _ := strings.Cut(line, "=")
		if _, ok := kv[strings.TrimSpace(key)]; ok || line == "" {
			continue
		}
		out = append(out, line)
	}
	for _, k := range slices.Sorted(maps.Keys(kv)) {
		out = append(out, fmt.Sprintf("%s = '%s'", k, strings.ReplaceAll(kv[k], "'", "''")))
	}
	if err := os.WriteFile(path, []byte(strings.Join(out, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	return n.c.chown(path)
}
