// Package config holds pgwrt's one configuration struct: its defaults, its
// loading from TOML (Linux) or UCI (OpenWrt), validation with
// "file:line: option: what is wrong" errors, and the diff used by reload.
//
// The same option names are used in both syntaxes, and they follow
// pgpool-II and PgBouncer where those have a word for the thing.
package config

import "time"

// Config is the whole of pgwrt's configuration. A *Config is never changed
// after it has been validated: reload builds a new one and swaps it in.
type Config struct {
	// Source is the file the config was read from ("" for defaults).
	Source string `toml:"-"`

	// Listen is the client listener address, host:port.
	Listen string `toml:"listen"`
	// FreeBind binds Listen even when the address is not (yet) configured on
	// an interface (IP_FREEBIND), so boot order does not matter.
	FreeBind bool `toml:"freebind"`

	// PoolMode is "session" (the backend stays with the client until it
	// leaves) or "transaction" (the backend goes back to its pool at the
	// end of each transaction). A [[user]] may override it: use PoolModeFor.
	// Protocol-level named prepared statements are not carried between
	// backends yet (use unnamed statements or the simple protocol). A
	// reload applies it to clients that connect afterwards.
	PoolMode string `toml:"pool_mode"`
	// MaxClients is the number of client slots (pgpool's num_init_children).
	MaxClients int `toml:"max_clients"`
	// ClientWaitTimeout is how long a client waits for a free slot before it
	// gets SQLSTATE 53300.
	ClientWaitTimeout Duration `toml:"client_wait_timeout"`
	// BufferSize is the size of each of a slot's two forwarding buffers.
	BufferSize int `toml:"buffer_size"`
	// IOEngine is how sessions forward: "auto" (io_uring where the kernel
	// allows it, else epoll), "io_uring", "epoll" or "goroutines". Only
	// Linux has the first three; elsewhere every value means goroutines.
	IOEngine string `toml:"io_engine"`

	// MaxPool is the number of idle cached backend connections kept per
	// (user, database) in session mode (pgpool's max_pool); a
	// transaction-mode pool keeps up to its PoolSize idle.
	MaxPool int `toml:"max_pool"`
	// MaxBackendConnections caps all backend connections, idle and busy.
	MaxBackendConnections int `toml:"max_backend_connections"`
	// PoolSize is the most backend connections, idle and busy, of one
	// (database, user) pool in transaction mode (PgBouncer's
	// default_pool_size); clients beyond it wait for one to come back. At
	// least 1, at most MaxBackendConnections. A [[user]] may override it:
	// use PoolSizeFor.
	PoolSize int `toml:"pool_size"`
	// MaxPreparedStatements is how many protocol-level (Parse/Bind) prepared
	// statements pgwrt keeps prepared per backend connection in transaction
	// mode (PgBouncer's name), least recently used closed first. Clients'
	// named statements are tracked and follow them from backend to backend;
	// 0 turns that off, and a client's first named Parse then pins it to
	// its backend.
	MaxPreparedStatements int `toml:"max_prepared_statements"`
	// ServerIdleTimeout closes cached backend connections idle this long.
	ServerIdleTimeout Duration `toml:"server_idle_timeout"`
	// ServerLifetime closes cached backend connections older than this.
	ServerLifetime Duration `toml:"server_lifetime"`
	// ServerResetQuery runs when a backend connection goes back to the cache.
	ServerResetQuery string `toml:"server_reset_query"`
	// ServerConnectTimeout bounds dialling and logging in to a backend.
	ServerConnectTimeout Duration `toml:"server_connect_timeout"`

	// FailoverWait is how long a client is held while no primary is known
	// before it gets SQLSTATE 57P03.
	FailoverWait Duration `toml:"failover_wait"`

	// Health checks: one monitor per backend.
	HealthCheckPeriod Duration `toml:"health_check_period"`
	// HealthCheckFastPeriod is the check period while no primary is known
	// or right after a backend connection failed: failover detection.
	HealthCheckFastPeriod Duration `toml:"health_check_fast_period"`
	HealthCheckTimeout    Duration `toml:"health_check_timeout"`
	HealthCheckMaxRetries int      `toml:"health_check_max_retries"`
	HealthCheckUser       string   `toml:"health_check_user"`
	HealthCheckPassword   string   `toml:"health_check_password"`
	HealthCheckDatabase   string   `toml:"health_check_database"`

	// TCP settings for backend sockets.
	TCPKeepaliveIdle     Duration `toml:"tcp_keepalive_idle"`
	TCPKeepaliveInterval Duration `toml:"tcp_keepalive_interval"`
	TCPKeepaliveCount    int      `toml:"tcp_keepalive_count"`
	TCPUserTimeout       Duration `toml:"tcp_user_timeout"`

	// HTTPListen serves /status, /metrics and /healthz; "" disables it.
	HTTPListen string `toml:"http_listen"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`

	// Backends are the PostgreSQL nodes; at least one is required.
	Backends []Backend `toml:"backend"`
	// HBA are the client authentication rules, first match wins. None at
	// all means trust from loopback, password from anywhere else: use
	// EffectiveHBA, not this field, to decide.
	HBA []HBARule `toml:"hba"`
	// Users are stored credentials for logging in to backends.
	Users []User `toml:"user"`

	// index says where each option was written, for Validate's messages;
	// nil for a Config built in code.
	index *lineIndex
}

// Backend is one PostgreSQL node.
type Backend struct {
	// Name is how logs and SHOW POOL_NODES call the node, and how reload
	// tells backends apart; the loaders set it to host:port when it is not
	// written (see ID).
	Name string `toml:"name"`
	// Host is an IP address or a DNS name.
	Host string `toml:"host"`
	// Port is 1..65535; the loaders default it to 5432.
	Port int `toml:"port"`
	// Line is where the backend was defined ([[backend]] header), for
	// messages; 0 when not from a file.
	Line int `toml:"-"`
}

// Addr is host:port.
func (b Backend) Addr() string { return joinHostPort(b.Host, b.Port) }

// HBARule is one client authentication rule; the first rule that matches a
// client's (database, user, address) decides its method.
type HBARule struct {
	Database string `toml:"database"` // "all" or a name
	User     string `toml:"user"`     // "all" or a name
	Address  string `toml:"address"`  // "all", a CIDR, or one IP
	Method   string `toml:"method"`   // trust, password, reject
	Line     int    `toml:"-"`
}

// User is a stored credential pgwrt uses to log in to backends on behalf of
// clients it does not ask for a password (method trust), and the pool
// settings of that user's clients where they differ from the global ones.
type User struct {
	Name     string `toml:"name"`
	Password string `toml:"password"`
	// PoolMode overrides Config.PoolMode for this user; "" keeps it.
	PoolMode string `toml:"pool_mode"`
	// PoolSize overrides Config.PoolSize for this user's pools; 0 keeps it.
	PoolSize int `toml:"pool_size"`
	Line     int `toml:"-"`
}

// user returns the [[user]] called name, or nil.
func (c *Config) user(name string) *User {
	for i := range c.Users {
		if c.Users[i].Name == name {
			return &c.Users[i]
		}
	}
	return nil
}

// PoolModeFor is the pool mode of the clients of user: its [[user]]
// pool_mode when it has one, else the global pool_mode.
func (c *Config) PoolModeFor(user string) string {
	if u := c.user(user); u != nil && u.PoolMode != "" {
		return u.PoolMode
	}
	return c.PoolMode
}

// PoolSizeFor is the size of user's (database, user) pools in transaction
// mode: its [[user]] pool_size when it has one, else the global pool_size.
func (c *Config) PoolSizeFor(user string) int {
	if u := c.user(user); u != nil && u.PoolSize > 0 {
		return u.PoolSize
	}
	return c.PoolSize
}

// Default returns the configuration every omitted option falls back to. The
// values suit a router with 64 MB of RAM.
func Default() *Config {
	return &Config{
		Listen:                "0.0.0.0:5432",
		PoolMode:              "session",
		MaxClients:            32,
		ClientWaitTimeout:     Duration(10 * time.Second),
		BufferSize:            8192,
		IOEngine:              "auto",
		MaxPool:               4,
		MaxBackendConnections: 64,
		PoolSize:              20,
		MaxPreparedStatements: 200,
		ServerIdleTimeout:     Duration(5 * time.Minute),
		ServerLifetime:        Duration(time.Hour),
		ServerResetQuery:      "DISCARD ALL",
		ServerConnectTimeout:  Duration(5 * time.Second),
		FailoverWait:          Duration(30 * time.Second),
		HealthCheckPeriod:     Duration(time.Second),
		HealthCheckFastPeriod: Duration(100 * time.Millisecond),
		HealthCheckTimeout:    Duration(3 * time.Second),
		HealthCheckMaxRetries: 2,
		HealthCheckUser:       "postgres",
		HealthCheckDatabase:   "postgres",
		TCPKeepaliveIdle:      Duration(10 * time.Second),
		TCPKeepaliveInterval:  Duration(2 * time.Second),
		TCPKeepaliveCount:     3,
		TCPUserTimeout:        Duration(8 * time.Second),
		HTTPListen:            "",
		LogLevel:              "info",
	}
}
