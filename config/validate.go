package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Validate checks everything that can be checked without the network and
// returns nil or one *Error per problem (see Errors), each printed
// "file:line: option: what is wrong". LoadTOML and ParseTOML call it; call it
// yourself on a Config built in code. It does not change c.
func (c *Config) Validate() error {
	v := validator{c: c}

	v.hostPort("listen", c.Listen, false)
	v.hostPort("http_listen", c.HTTPListen, true)
	if msg := checkPoolMode(c.PoolMode); msg != "" {
		v.bad("pool_mode", "%s", msg)
	}
	switch c.IOEngine {
	case "auto", "io_uring", "epoll", "goroutines":
	default:
		v.bad("io_engine", "%s is not one of auto, io_uring, epoll, goroutines", quote(c.IOEngine))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.bad("log_level", "%s is not one of debug, info, warn, error", quote(c.LogLevel))
	}

	v.atLeast("max_clients", c.MaxClients, 1)
	v.atLeast("max_pool", c.MaxPool, 0)
	v.atLeast("max_backend_connections", c.MaxBackendConnections, 1)
	v.atLeast("max_prepared_statements", c.MaxPreparedStatements, 0)
	v.poolSize()
	v.atLeast("health_check_max_retries", c.HealthCheckMaxRetries, 0)
	v.atLeast("tcp_keepalive_count", c.TCPKeepaliveCount, 0)
	if c.BufferSize < 1024 || c.BufferSize > 1<<20 {
		v.bad("buffer_size", "must be between 1024 and 1048576, not %d", c.BufferSize)
	}

	v.positive("client_wait_timeout", c.ClientWaitTimeout)
	v.positive("server_connect_timeout", c.ServerConnectTimeout)
	v.positive("health_check_period", c.HealthCheckPeriod)
	v.positive("health_check_fast_period", c.HealthCheckFastPeriod)
	v.positive("health_check_timeout", c.HealthCheckTimeout)
	v.notNegative("failover_wait", c.FailoverWait)
	v.notNegative("server_idle_timeout", c.ServerIdleTimeout)
	v.notNegative("server_lifetime", c.ServerLifetime)
	v.notNegative("tcp_keepalive_idle", c.TCPKeepaliveIdle)
	v.notNegative("tcp_keepalive_interval", c.TCPKeepaliveInterval)
	v.notNegative("tcp_user_timeout", c.TCPUserTimeout)

	v.notEmpty("health_check_user", c.HealthCheckUser)
	v.notEmpty("health_check_database", c.HealthCheckDatabase)

	v.backends()
	v.hba()
	v.users()
	return v.errs.err()
}

type validator struct {
	c    *Config
	errs errorList
}

// line is where option path ("listen", "backend[1].port") was written. For
// an element of a list, header is the element's own Line: it is what counts
// when the list was built or reordered in code.
func (v *validator) line(path string) int {
	if v.c.index == nil {
		return 0
	}
	return v.c.index.line(path)
}

func (v *validator) elemLine(list string, i, header int, key string) int {
	elem := fmt.Sprintf("%s[%d]", list, i)
	if v.c.index == nil || v.c.index.at[elem] != header {
		return header
	}
	if key == "" {
		return header
	}
	return v.c.index.line(elem + "." + key)
}

func (v *validator) bad(option, format string, args ...any) {
	v.errs.add(v.c.Source, v.line(option), option, format, args...)
}

func (v *validator) badAt(line int, option, format string, args ...any) {
	v.errs.add(v.c.Source, line, option, format, args...)
}

func (v *validator) atLeast(option string, n, min int) {
	if n < min {
		v.bad(option, "must be at least %d, not %d", min, n)
	}
}

func (v *validator) positive(option string, d Duration) {
	if d <= 0 {
		v.bad(option, "must be more than 0, not %s", d)
	}
}

func (v *validator) notNegative(option string, d Duration) {
	if d < 0 {
		v.bad(option, "must not be negative, not %s", d)
	}
}

func (v *validator) notEmpty(option, s string) {
	if s == "" {
		v.bad(option, "must be set")
	}
}

// hostPort checks a listen address: host:port where host is empty, an IP
// literal ([::1] for IPv6) or a name, and port is 0..65535 (0 picks a free
// port, which tests use).
func (v *validator) hostPort(option, s string, mayBeEmpty bool) {
	if s == "" {
		if !mayBeEmpty {
			v.bad(option, "must be set (host:port, e.g. \"0.0.0.0:5432\")")
		}
		return
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.bad(option, "%s is not host:port (e.g. \"0.0.0.0:5432\", \"[::]:5432\", \":5432\")", quote(s))
		return
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.bad(option, "%s has a bad port %s (want 0..65535)", quote(s), quote(port))
	}
	if host != "" {
		if msg := checkHost(host); msg != "" {
			v.bad(option, "%s has a bad host: %s", quote(s), msg)
		}
	}
}

// checkHost accepts an IP literal or a DNS name and otherwise says why not.
func checkHost(h string) string {
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if strings.Contains(h, ":") {
		return quote(h) + " is not an IP address (a port goes in its own option)"
	}
	if len(h) > 253 {
		return "name is longer than 253 bytes"
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return quote(h) + " is not a valid host name"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return quote(h) + " is not a valid host name"
			}
		}
	}
	return ""
}

func (v *validator) backends() {
	c := v.c
	if len(c.Backends) == 0 {
		v.badAt(0, "backend", "no backends configured")
		return
	}
	byAddr := map[string]int{}
	byName := map[string]int{}
	for i, b := range c.Backends {
		switch {
		case b.Host == "":
			v.badAt(v.elemLine("backend", i, b.Line, "host"), "backend.host", "must be set")
		default:
			if msg := checkHost(b.Host); msg != "" {
				v.badAt(v.elemLine("backend", i, b.Line, "host"), "backend.host", "%s", msg)
			}
		}
		if b.Port < 1 || b.Port > 65535 {
			v.badAt(v.elemLine("backend", i, b.Line, "port"), "backend.port", "must be between 1 and 65535, not %d", b.Port)
		}
		addr := joinHostPort(strings.ToLower(b.Host), b.Port)
		if j, ok := byAddr[addr]; ok {
			v.badAt(b.Line, "backend", "%s is defined twice (%s)", b.Addr(), both("backends", j, c.Backends[j].Line, i, b.Line))
			continue // a second message about the same name says nothing new
		}
		byAddr[addr] = i
		name := b.ID()
		if j, ok := byName[name]; ok {
			v.badAt(v.elemLine("backend", i, b.Line, "name"), "backend.name", "%s is used twice (%s)", quote(name), both("backends", j, c.Backends[j].Line, i, b.Line))
		} else {
			byName[name] = i
		}
	}
}

// both names two list elements by line, or by position when the lines are
// not known.
func both(what string, i, li, j, lj int) string {
	if li > 0 && lj > 0 {
		return fmt.Sprintf("lines %d and %d", li, lj)
	}
	return fmt.Sprintf("%s #%d and #%d", what, i+1, j+1)
}

func (v *validator) hba() {
	for i, r := range v.c.HBA {
		at := func(key string) int { return v.elemLine("hba", i, r.Line, key) }
		if r.Database == "" {
			v.badAt(at("database"), "hba.database", `must be set ("all" or a database name)`)
		}
		if r.User == "" {
			v.badAt(at("user"), "hba.user", `must be set ("all" or a user name)`)
		}
		if _, err := parseHBAAddress(r.Address); err != nil {
			v.badAt(at("address"), "hba.address", "%v", err)
		}
		switch r.Method {
		case "trust", "password", "reject":
		case "":
			v.badAt(at("method"), "hba.method", "must be set (trust, password or reject)")
		default:
			v.badAt(at("method"), "hba.method", "%s is not one of trust, password, reject", quote(r.Method))
		}
	}
}

// checkPoolMode says what is wrong with a pool_mode value, or "".
func checkPoolMode(mode string) string {
	switch mode {
	case "session", "transaction":
		return ""
	}
	return fmt.Sprintf(`%s is not a pool mode; use "session" or "transaction"`, quote(mode))
}

// poolSize checks the global pool_size: at least 1, and at most
// max_backend_connections. The second is checked only where it can matter
// or was asked for: when pool_size is written in the file, or when some
// client runs in transaction mode with it. A configuration that does
// neither (every one from before transaction mode, say one with
// max_backend_connections = 10) stays valid with the default 20.
func (v *validator) poolSize() {
	c := v.c
	if c.PoolSize < 1 {
		v.bad("pool_size", "must be at least 1, not %d", c.PoolSize)
		return
	}
	if c.MaxBackendConnections < 1 || c.PoolSize <= c.MaxBackendConnections {
		return
	}
	written := v.c.index != nil && v.c.index.at["pool_size"] > 0
	used := c.PoolMode == "transaction"
	for _, u := range c.Users {
		if u.PoolMode == "transaction" && u.PoolSize == 0 {
			used = true
		}
	}
	switch {
	case written:
		v.bad("pool_size", "must not be more than max_backend_connections (%d), not %d", c.MaxBackendConnections, c.PoolSize)
	case used:
		v.bad("pool_size", `must not be more than max_backend_connections (%d), not %d (its default; pool_mode "transaction" uses it)`, c.MaxBackendConnections, c.PoolSize)
	}
}

// written reports whether key of element i of list was written in the file
// (false for a Config built in code).
func (v *validator) written(list string, i, header int, key string) bool {
	elem := fmt.Sprintf("%s[%d]", list, i)
	if v.c.index == nil || v.c.index.at[elem] != header {
		return false
	}
	_, ok := v.c.index.at[elem+"."+key]
	return ok
}

func (v *validator) users() {
	byName := map[string]int{}
	for i, u := range v.c.Users {
		at := func(key string) int { return v.elemLine("user", i, u.Line, key) }
		if u.PoolMode != "" || v.written("user", i, u.Line, "pool_mode") {
			if msg := checkPoolMode(u.PoolMode); msg != "" {
				v.badAt(at("pool_mode"), "user.pool_mode", "%s", msg)
			}
		}
		switch {
		case u.PoolSize < 0 || u.PoolSize == 0 && v.written("user", i, u.Line, "pool_size"):
			v.badAt(at("pool_size"), "user.pool_size", "must be at least 1, not %d", u.PoolSize)
		case u.PoolSize > v.c.MaxBackendConnections && v.c.MaxBackendConnections >= 1:
			v.badAt(at("pool_size"), "user.pool_size", "must not be more than max_backend_connections (%d), not %d", v.c.MaxBackendConnections, u.PoolSize)
		}
		if u.Name == "" {
			v.badAt(at("name"), "user.name", "must be set")
			continue
		}
		if j, ok := byName[u.Name]; ok {
			v.badAt(v.elemLine("user", i, u.Line, "name"), "user.name", "%s is defined twice (%s)", quote(u.Name), both("users", j, v.c.Users[j].Line, i, u.Line))
		} else {
			byName[u.Name] = i
		}
	}
}

// ID is the backend's name, or host:port when it has none.
func (b Backend) ID() string {
	if b.Name != "" {
		return b.Name
	}
	return b.Addr()
}
