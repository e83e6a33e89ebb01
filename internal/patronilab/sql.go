package patronilab

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// DSN is a libpq key/value connection string for the node's PostgreSQL
// over TCP on loopback.
func (n *PatroniNode) DSN(user, password, db string) string {
	kv := [][2]string{
		{"host", "127.0.0.1"},
		{"port", strconv.Itoa(n.PGPort)},
		{"user", user},
		{"password", password},
		{"dbname", db},
		{"sslmode", "disable"},
		{"connect_timeout", "5"},
	}
	parts := make([]string, len(kv))
	for i, p := range kv {
		parts[i] = p[0] + "=" + dsnQuote(p[1])
	}
	return strings.Join(parts, " ")
}

// dsnQuote quotes a libpq connection string value when it needs it.
func dsnQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\`) {
		return v
	}
	v = strings.ReplaceAll(v, `\`, `\\`)
	v = strings.ReplaceAll(v, `'`, `\'`)
	return "'" + v + "'"
}

// Query runs sql as the superuser in the app database and returns the
// result rows, one per line, columns separated by '|'.
func (n *PatroniNode) Query(ctx context.Context, sql string) (string, error) {
	return n.QueryDSN(ctx, n.DSN(SuperUser, SuperPassword, AppDatabase), sql)
}

// QueryDSN runs sql with psql against dsn (any server, pgwrt included)
// and returns the result rows as Query does.
func (n *PatroniNode) QueryDSN(ctx context.Context, dsn, sql string) (string, error) {
	return psql(ctx, n.pgBinDir, dsn, sql)
}

func psql(ctx context.Context, binDir, dsn, sql string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "psql"),
		"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql)
	cmd.Env = []string{"LC_ALL=C.UTF-8", "PGAPPNAME=patronilab"}
	var out, errb bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("psql: %w: %s", err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimRight(out.String(), "\n"), nil
}
