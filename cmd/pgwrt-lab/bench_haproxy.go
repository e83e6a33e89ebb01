package main

// HAProxy as a comparison side of pgwrt-lab bench: the TCP proxy pgwrt
// replaces, run as shipped (TCP mode, no pooling, one thread per CPU).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"pgwrt/internal/pglab"
)

// haproxyVersionRE reads the first line of `haproxy -v`, "HAProxy version
// 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/" (before 2.1
// "HA-Proxy version ...").
var haproxyVersionRE = regexp.MustCompile(`^HA-?Proxy version (\S+)`)

// haproxyVersion is bin's version for the report, "HAProxy 2.6.12-1+deb12u4".
func haproxyVersion(ctx context.Context, bin string) (string, error) {
	out, err := exec.CommandContext(ctx, bin, "-v").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s -v: %v\n%s", bin, err, out)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	m := haproxyVersionRE.FindStringSubmatch(first)
	if m == nil {
		return "", fmt.Errorf("%s -v: no version in %q", bin, first)
	}
	return "HAProxy " + m[1], nil
}

// startHaproxy runs HAProxy in the foreground in front of primary on addr,
// room for maxClients, its config in dir, and returns once it runs, with
// its version. HAProxy logs nothing when it starts well: the caller waits
// for a login through it. As root it stays root (no user or group lines).
// It does not pool: bench runs it in session mode only.
func startHaproxy(ctx context.Context, bin, dir, addr string, primary *pglab.Node, maxClients int, _ benchPool) (*pgwrtProcess, string, error) {
	version, err := haproxyVersion(ctx, bin)
	if err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(haproxyConfig(primary.Host, primary.Port, addr, maxClients)), 0o600); err != nil {
		return nil, "", err
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p, _, err := startLogged(ctx, "HAProxy", cmd, nil)
	if err != nil {
		return nil, "", err
	}
	p.addr = addr
	return p, version, nil
}

// haproxyConfig is HAProxy's config: one TCP listener on addr forwarding
// to the server, connections capped well above maxClients, and no nbthread
// (one thread per CPU, as shipped).
func haproxyConfig(serverHost string, serverPort int, addr string, maxClients int) string {
	maxconn := max(256, 4*maxClients)
	return fmt.Sprintf(`global
	maxconn %d

listen postgres
	mode tcp
	bind %s
	maxconn %d
	timeout connect 5s
	timeout client 1h
	timeout server 1h
	server primary %s:%d
`, maxconn, addr, maxconn, serverHost, serverPort)
}
