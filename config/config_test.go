package config

import (
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// bk is one valid backend, to append to inputs about other things; it comes
// last so the inputs' own line numbers stay 1, 2, ...
const bk = "\n[[backend]]\nhost = \"db\"\n"

// TestParseTOML is the table of inputs and the errors they must give, the
// whole text of them: "" means the input is valid.
func TestParseTOML(t *testing.T) {
	tests := []struct {
		input string
		want  string
	}{
		// Valid.
		{bk, ""},
		{"listen = \":6432\"" + bk, ""},
		{"listen = \"[::1]:5432\"" + bk, ""},
		{"listen = \"[fe80::1%eth0]:5432\"" + bk, ""},
		{"listen = \"router.lan:5432\"" + bk, ""},
		{"listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:8080\"" + bk, ""},
		{"health_check_period = \"250ms\"\nhealth_check_timeout = \"2m\"\nclient_wait_timeout = 5\nfailover_wait = 0\nserver_lifetime = \"1h30m\"" + bk, ""},
		{"pool_mode = \"session\"\nlog_level = \"debug\"\nfreebind = true" + bk, ""},
		{"buffer_size = 1024\nmax_pool = 0" + bk, ""},
		{"buffer_size = 1048576" + bk, ""},
		{"# listen = 5\n  # [[backend]]" + bk, ""},
		{"backend = [{host = \"a\"}, {host = \"b\", port = 6432, name = \"b\"}]", ""},
		{"[[backend]]\nhost = \"10.0.0.1\"\n[[backend]]\nhost = \"10.0.0.1\"\nport = 5433", ""},
		{"[[backend]]\nhost = \"fd00::1\"\n[[backend]]\nhost = \"fd00::2\"", ""},
		{"[[hba]]\ndatabase = \"all\"\nuser = \"app\"\naddress = \"192.168.1.5/24\"\nmethod = \"password\"\n" +
			"[[hba]]\ndatabase = \"app\"\nuser = \"all\"\naddress = \"10.0.0.7\"\nmethod = \"trust\"\n" +
			"[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"fd00::/8\"\nmethod = \"reject\"\n" +
			"[[user]]\nname = \"app\"\npassword = \"x\"" + bk, ""},
		{"'listen' = \"[::]:5432\"\n\"log_level\" = \"warn\"" + bk, ""},
		{"pool_mode = \"transaction\"\npool_size = 1\nmax_prepared_statements = 0" + bk, ""},
		{"pool_mode = \"transaction\"\nmax_backend_connections = 20" + bk, ""},
		{"pool_size = 8\nmax_backend_connections = 8\nmax_prepared_statements = 1000" + bk, ""},
		// Session mode leaves the default pool_size unused: a small
		// max_backend_connections stays valid, as it was before pool_size.
		{"max_backend_connections = 4" + bk, ""},
		{"max_backend_connections = 4\n[[user]]\nname = \"app\"\npool_mode = \"transaction\"\npool_size = 4" + bk, ""},
		{"[[user]]\nname = \"app\"\npool_mode = \"session\"\n[[user]]\nname = \"batch\"\npool_mode = \"transaction\"\npool_size = 64" + bk, ""},

		// Syntax: the TOML parser's message at its line.
		{"listen = \n" + bk, `t.toml:1: listen: expected value but found '\n' instead`},
		{"max_pool = 1\nmax_pool = 2" + bk, `t.toml:2: max_pool: Key 'max_pool' has already been defined.`},
		{"[[backend]\nhost = \"a\"", `t.toml:1: syntax: expected end of table array name delimiter ']', but got '\n' instead`},

		// Unknown options, wherever they are.
		{"listne = \":5432\"" + bk, `t.toml:1: listne: unknown option`},
		{"Listen = \":5432\"" + bk, `t.toml:1: Listen: unknown option (did you mean listen?)`},
		{"[pool]\nmax = 1" + bk, `t.toml:1: pool: unknown option`},
		{"[[backend]]\nhost = \"a\"\nhots = \"b\"", `t.toml:3: backend.hots: unknown option`},
		{"[[backend]]\nhost = \"a\"\n[[backend]]\nhost = \"b\"\nsize = 1\n[[backend]]\nhost = \"c\"\nsize = 2",
			"t.toml:5: backend.size: unknown option\nt.toml:8: backend.size: unknown option"},
		{"[[backend]]\nhost = \"a\"\nlog_level = \"debug\"",
			`t.toml:3: backend.log_level: unknown option in [[backend]] (top-level options must come before the first [[table]])`},
		{"[[hba]]\ndb = \"all\"" + bk, `t.toml:2: hba.db: unknown option`},
		{"[[user]]\nname = \"a\"\npass = \"x\"" + bk, `t.toml:3: user.pass: unknown option`},
		{"listen.host = \"a\"" + bk, `t.toml:1: listen: must be a string, not a table`},

		// Wrong types.
		{"max_clients = \"8\"" + bk, `t.toml:1: max_clients: must be an integer, not a string`},
		{"max_clients = 8.5" + bk, `t.toml:1: max_clients: must be an integer, not a float`},
		{"listen = 5432" + bk, `t.toml:1: listen: must be a string, not an integer`},
		{"freebind = \"yes\"" + bk, `t.toml:1: freebind: must be true or false, not a string`},
		{"[backend]\nhost = \"a\"", `t.toml:1: backend: must be written as [[backend]] tables, not a table`},
		{"backend = [1, 2]", `t.toml:1: backend: must be written as [[backend]] tables, not an array`},
		{"backend = []", `t.toml: backend: no backends configured`},
		{"[[backend]]\nhost = \"a\"\n[[backend]]\nhost = \"b\"\nport = \"5432\"", `t.toml:5: backend.port: must be an integer, not a string`},
		{"[[hba]]\nmethod = true" + bk, `t.toml:2: hba.method: must be a string, not a boolean`},

		// Durations.
		{"\n\n\n\n\n\nhealth_check_period = \"5x\"" + bk, `t.toml:7: health_check_period: bad duration "5x" (want e.g. "1s", "250ms", "2m" or seconds)`},
		{"health_check_period = \"\"" + bk, `t.toml:1: health_check_period: bad duration "" (want e.g. "1s", "250ms", "2m" or seconds)`},
		{"health_check_period = 1.5" + bk, `t.toml:1: health_check_period: bad duration 1.5 (seconds must be a whole number; write e.g. "1500ms")`},
		{"health_check_period = true" + bk, `t.toml:1: health_check_period: must be a duration such as "5s", not a boolean`},
		{"health_check_period = 99999999999999" + bk, `t.toml:1: health_check_period: bad duration "99999999999999": too large`},
		{"health_check_period = 0" + bk, `t.toml:1: health_check_period: must be more than 0, not 0s`},
		{"health_check_timeout = \"-1s\"" + bk, `t.toml:1: health_check_timeout: must be more than 0, not -1s`},
		{"client_wait_timeout = \"0s\"" + bk, `t.toml:1: client_wait_timeout: must be more than 0, not 0s`},
		{"server_connect_timeout = 0" + bk, `t.toml:1: server_connect_timeout: must be more than 0, not 0s`},
		{"failover_wait = -1" + bk, `t.toml:1: failover_wait: must not be negative, not -1s`},
		{"server_idle_timeout = \"-1m\"" + bk, `t.toml:1: server_idle_timeout: must not be negative, not -1m0s`},
		{"tcp_user_timeout = \"-1ms\"" + bk, `t.toml:1: tcp_user_timeout: must not be negative, not -1ms`},

		// Addresses to listen on.
		{"listen = \"\"" + bk, `t.toml:1: listen: must be set (host:port, e.g. "0.0.0.0:5432")`},
		{"listen = \"5432\"" + bk, `t.toml:1: listen: "5432" is not host:port (e.g. "0.0.0.0:5432", "[::]:5432", ":5432")`},
		{"listen = \"::1:5432\"" + bk, `t.toml:1: listen: "::1:5432" is not host:port (e.g. "0.0.0.0:5432", "[::]:5432", ":5432")`},
		{"listen = \"0.0.0.0:65536\"" + bk, `t.toml:1: listen: "0.0.0.0:65536" has a bad port "65536" (want 0..65535)`},
		{"listen = \"0.0.0.0:pg\"" + bk, `t.toml:1: listen: "0.0.0.0:pg" has a bad port "pg" (want 0..65535)`},
		{"listen = \"my host:5432\"" + bk, `t.toml:1: listen: "my host:5432" has a bad host: "my host" is not a valid host name`},
		{"http_listen = \"8080\"" + bk, `t.toml:1: http_listen: "8080" is not host:port (e.g. "0.0.0.0:5432", "[::]:5432", ":5432")`},

		// Choices and counts.
		{"pool_mode = \"statement\"" + bk, `t.toml:1: pool_mode: "statement" is not a pool mode; use "session" or "transaction"`},
		{"pool_mode = \"Transaction\"" + bk, `t.toml:1: pool_mode: "Transaction" is not a pool mode; use "session" or "transaction"`},
		{"pool_mode = \"\"" + bk, `t.toml:1: pool_mode: "" is not a pool mode; use "session" or "transaction"`},
		{"pool_mode = 1" + bk, `t.toml:1: pool_mode: must be a string, not an integer`},
		{"pool_size = 0" + bk, `t.toml:1: pool_size: must be at least 1, not 0`},
		{"pool_size = -5" + bk, `t.toml:1: pool_size: must be at least 1, not -5`},
		{"pool_size = \"20\"" + bk, `t.toml:1: pool_size: must be an integer, not a string`},
		{"max_backend_connections = 16\npool_size = 17" + bk, `t.toml:2: pool_size: must not be more than max_backend_connections (16), not 17`},
		{"pool_size = 65" + bk, `t.toml:1: pool_size: must not be more than max_backend_connections (64), not 65`},
		{"pool_mode = \"transaction\"\nmax_backend_connections = 10" + bk,
			`t.toml: pool_size: must not be more than max_backend_connections (10), not 20 (its default; pool_mode "transaction" uses it)`},
		{"max_backend_connections = 10\n[[user]]\nname = \"app\"\npool_mode = \"transaction\"" + bk,
			`t.toml: pool_size: must not be more than max_backend_connections (10), not 20 (its default; pool_mode "transaction" uses it)`},
		{"max_prepared_statements = -1" + bk, `t.toml:1: max_prepared_statements: must be at least 0, not -1`},
		{"max_prepared_statements = 2.5" + bk, `t.toml:1: max_prepared_statements: must be an integer, not a float`},
		{"log_level = \"trace\"" + bk, `t.toml:1: log_level: "trace" is not one of debug, info, warn, error`},
		{"\nio_engine = \"kqueue\"" + bk, `t.toml:2: io_engine: "kqueue" is not one of auto, io_uring, epoll, goroutines`},
		{"max_clients = 0" + bk, `t.toml:1: max_clients: must be at least 1, not 0`},
		{"max_pool = -1" + bk, `t.toml:1: max_pool: must be at least 0, not -1`},
		{"max_backend_connections = 0" + bk, `t.toml:1: max_backend_connections: must be at least 1, not 0`},
		{"buffer_size = 1023" + bk, `t.toml:1: buffer_size: must be between 1024 and 1048576, not 1023`},
		{"buffer_size = 1048577" + bk, `t.toml:1: buffer_size: must be between 1024 and 1048576, not 1048577`},
		{"health_check_max_retries = -1" + bk, `t.toml:1: health_check_max_retries: must be at least 0, not -1`},
		{"tcp_keepalive_count = -3" + bk, `t.toml:1: tcp_keepalive_count: must be at least 0, not -3`},
		{"health_check_user = \"\"" + bk, `t.toml:1: health_check_user: must be set`},
		{"health_check_database = \"\"" + bk, `t.toml:1: health_check_database: must be set`},

		// Backends.
		{"", `t.toml: backend: no backends configured`},
		{"listen = \":5432\"\n", `t.toml: backend: no backends configured`},
		{"[[backend]]\nport = 5432", `t.toml:1: backend.host: must be set`},
		{"[[backend]]\nhost = \"a\"\nport = 0", `t.toml:3: backend.port: must be between 1 and 65535, not 0`},
		{"[[backend]]\nhost = \"a\"\n\nport = 65536", `t.toml:4: backend.port: must be between 1 and 65535, not 65536`},
		{"[[backend]]\nhost = \"10.0.0.1:5432\"", `t.toml:2: backend.host: "10.0.0.1:5432" is not an IP address (a port goes in its own option)`},
		{"[[backend]]\nhost = \"a/b\"", `t.toml:2: backend.host: "a/b" is not a valid host name`},
		{"backend = [{host = \"a\"}, {host = \"a\", port = 70000}]", `t.toml:1: backend.port: must be between 1 and 65535, not 70000`},
		{"[[backend]]\nhost = \"10.0.0.1\"\n\n[[backend]]\nname = \"pg2\"\nhost = \"10.0.0.1\"\nport = 5432",
			`t.toml:4: backend: 10.0.0.1:5432 is defined twice (lines 1 and 4)`},
		{"[[backend]]\nhost = \"DB\"\n[[backend]]\nhost = \"db\"", `t.toml:3: backend: db:5432 is defined twice (lines 1 and 3)`},
		{"[[backend]]\nname = \"pg\"\nhost = \"a\"\n[[backend]]\nname = \"pg\"\nhost = \"b\"",
			`t.toml:5: backend.name: "pg" is used twice (lines 1 and 4)`},
		{"[[backend]]\nname = \"b:5432\"\nhost = \"a\"\n[[backend]]\nhost = \"b\"",
			`t.toml:4: backend.name: "b:5432" is used twice (lines 1 and 4)`},

		// hba.
		{"[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"all\"\nmethod = \"md5\"" + bk,
			`t.toml:5: hba.method: "md5" is not one of trust, password, reject`},
		{"[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"10.0.0.0/33\"\nmethod = \"trust\"" + bk,
			`t.toml:4: hba.address: bad address "10.0.0.0/33" (want "all", an IP or a CIDR such as "192.168.1.0/24")`},
		{"[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"lan\"\nmethod = \"trust\"" + bk,
			`t.toml:4: hba.address: bad address "lan" (want "all", an IP or a CIDR such as "192.168.1.0/24")`},
		{"[[hba]]\nmethod = \"reject\"" + bk,
			"t.toml:1: hba.database: must be set (\"all\" or a database name)\n" +
				"t.toml:1: hba.user: must be set (\"all\" or a user name)\n" +
				"t.toml:1: hba.address: must be set (\"all\", an IP or a CIDR such as \"192.168.1.0/24\")"},
		{"[[hba]]\ndatabase = \"\"\nuser = \"all\"\naddress = \"all\"" + bk,
			"t.toml:1: hba.method: must be set (trust, password or reject)\n" +
				"t.toml:2: hba.database: must be set (\"all\" or a database name)"},

		// Users.
		{"[[user]]\npassword = \"x\"" + bk, `t.toml:1: user.name: must be set`},
		{"[[user]]\nname = \"a\"\n[[user]]\nname = \"a\"" + bk, `t.toml:4: user.name: "a" is defined twice (lines 1 and 3)`},
		{"[[user]]\nname = \"a\"\npool_mode = \"statement\"" + bk, `t.toml:3: user.pool_mode: "statement" is not a pool mode; use "session" or "transaction"`},
		{"[[user]]\nname = \"a\"\npool_mode = \"\"" + bk, `t.toml:3: user.pool_mode: "" is not a pool mode; use "session" or "transaction"`},
		{"[[user]]\nname = \"a\"\npool_mode = true" + bk, `t.toml:3: user.pool_mode: must be a string, not a boolean`},
		{"[[user]]\nname = \"a\"\n[[user]]\nname = \"b\"\npool_size = 0" + bk, `t.toml:5: user.pool_size: must be at least 1, not 0`},
		{"[[user]]\nname = \"a\"\npool_size = -1" + bk, `t.toml:3: user.pool_size: must be at least 1, not -1`},
		{"max_backend_connections = 32\n[[user]]\nname = \"a\"\npool_size = 33" + bk,
			`t.toml:4: user.pool_size: must not be more than max_backend_connections (32), not 33`},
		{"[[user]]\npool_mode = \"x\"" + bk,
			"t.toml:1: user.name: must be set\nt.toml:2: user.pool_mode: \"x\" is not a pool mode; use \"session\" or \"transaction\""},

		// The line index is not fooled by multi-line values.
		{"server_reset_query = \"\"\"\nmax_clients = 1\n[[backend]]\"\"\"\nhba = [\n  { max_clients = 2 },\n]\nmax_clients = 0" + bk,
			`t.toml:4: hba.max_clients: unknown option in [[hba]] (top-level options must come before the first [[table]])`},
		{"server_reset_query = '''\n[[backend]]\n'''\nx = [\n \"]\", # ]\n]\nmax_clients = 0" + bk,
			"t.toml:4: x: unknown option"},
		{"server_reset_query = '''\n[[backend]]\n'''\nmax_clients = [\n \"]\", # ]\n]\nmax_pool = -1" + bk,
			"t.toml:4: max_clients: must be an integer, not an array"},
		{"server_reset_query = \"\"\"\n\\\"\"\"\n[[backend]]\"\"\"\nmax_clients = 0" + bk,
			"t.toml:4: max_clients: must be at least 1, not 0"},

		// Everything wrong at once comes back in file order.
		{"max_clients = 0\nlog_level = \"loud\"\n\n[[backend]]\nhost = \"\"\nport = 0\n[[hba]]\naddress = \"all\"\ndatabase = \"all\"\nuser = \"all\"\nmethod = \"trust\"\nlisten = \"x\"",
			"t.toml:12: hba.listen: unknown option in [[hba]] (top-level options must come before the first [[table]])"},
		{"max_clients = 0\nlog_level = \"loud\"\n\n[[backend]]\nhost = \"\"\nport = 0\n[[hba]]\naddress = \"any\"\ndatabase = \"all\"\nuser = \"all\"\nmethod = \"trust\"",
			"t.toml:1: max_clients: must be at least 1, not 0\n" +
				"t.toml:2: log_level: \"loud\" is not one of debug, info, warn, error\n" +
				"t.toml:5: backend.host: must be set\n" +
				"t.toml:6: backend.port: must be between 1 and 65535, not 0\n" +
				"t.toml:8: hba.address: bad address \"any\" (want \"all\", an IP or a CIDR such as \"192.168.1.0/24\")"},
	}
	for _, tc := range tests {
		c, err := ParseTOML("t.toml", []byte(tc.input))
		got := ""
		if err != nil {
			got = err.Error()
			if c != nil {
				t.Errorf("%q: got a Config with an error", tc.input)
			}
			for _, e := range Errors(err) {
				if e.File != "t.toml" {
					t.Errorf("%q: error %q names file %q", tc.input, e, e.File)
				}
			}
			if n := strings.Count(got, "\n") + 1; len(Errors(err)) != n {
				t.Errorf("%q: %d *Errors for %d lines", tc.input, len(Errors(err)), n)
			}
		}
		if got != tc.want {
			t.Errorf("ParseTOML(%q):\n got: %s\nwant: %s", tc.input, got, tc.want)
		}
	}
}

// TestDefaults: an empty file but for one backend is Default(), and what the
// loader fills in for a backend and for lines.
func TestDefaults(t *testing.T) {
	c, err := ParseTOML("d.toml", []byte("# defaults\n\n[[backend]]\nhost = \"db\"\n[[backend]]\nname = \"two\"\nhost = \"::1\"\nport = 6432\n[[hba]]\ndatabase = \"all\"\nuser = \"all\"\naddress = \"all\"\nmethod = \"trust\"\n[[user]]\nname = \"u\""))
	if err != nil {
		t.Fatal(err)
	}
	want := []Backend{{Name: "db:5432", Host: "db", Port: 5432, Line: 3}, {Name: "two", Host: "::1", Port: 6432, Line: 5}}
	if !reflect.DeepEqual(c.Backends, want) {
		t.Errorf("backends = %+v, want %+v", c.Backends, want)
	}
	if c.Backends[1].Addr() != "[::1]:6432" {
		t.Errorf("Addr = %q", c.Backends[1].Addr())
	}
	if c.HBA[0].Line != 9 || c.Users[0].Line != 14 || c.Source != "d.toml" {
		t.Errorf("lines or source: hba %d user %d source %q", c.HBA[0].Line, c.Users[0].Line, c.Source)
	}
	d := Default()
	c.Source, c.index, c.Backends, c.HBA, c.Users = "", nil, nil, nil, nil
	if !reflect.DeepEqual(c, d) {
		t.Errorf("parsed defaults differ from Default():\n%+v\n%+v", c, d)
	}

	// Default() lacks only backends; a Config built in code gets errors
	// without file or line.
	if err := Default().Validate(); err == nil || err.Error() != "backend: no backends configured" {
		t.Errorf("Default().Validate() = %v", err)
	}
	d.Backends = []Backend{{Host: "db", Port: 5432}, {Host: "db", Port: 5432}}
	d.HBA = []HBARule{{Database: "all", User: "all", Address: "all", Method: "md5"}}
	const wantErr = "backend: db:5432 is defined twice (backends #1 and #2)\nhba.method: \"md5\" is not one of trust, password, reject"
	if err := d.Validate(); err == nil || err.Error() != wantErr {
		t.Errorf("Validate() = %v, want %s", err, wantErr)
	}

	// Durations: seconds when bare.
	for in, want := range map[string]time.Duration{"5": 5 * time.Second, "250ms": 250 * time.Millisecond, "2m": 2 * time.Minute, " 1h ": time.Hour} {
		var d Duration
		if err := d.UnmarshalText([]byte(in)); err != nil || d.D() != want {
			t.Errorf("Duration(%q) = %v, %v; want %v", in, d, err, want)
		}
		if b, _ := d.MarshalText(); string(b) != want.String() {
			t.Errorf("MarshalText = %s", b)
		}
	}
}

func TestEffectiveHBA(t *testing.T) {
	c := Default()
	rules := c.EffectiveHBA()
	first := func(db, user, addr string) string {
		for _, r := range rules {
			if r.Matches(db, user, netip.MustParseAddr(addr)) {
				return r.Method
			}
		}
		return "none"
	}
	for addr, want := range map[string]string{
		"127.0.0.1": "trust", "::1": "trust", "::ffff:127.0.0.1": "trust",
		"127.0.0.2": "password", "192.168.1.10": "password", "fd00::1": "password",
	} {
		if got := first("app", "app", addr); got != want {
			t.Errorf("default hba for %s = %s, want %s", addr, got, want)
		}
	}

	c.HBA = []HBARule{
		{Database: "app", User: "all", Address: "192.168.1.5/24", Method: "trust"},
		{Database: "all", User: "admin", Address: "10.0.0.1", Method: "password"},
		{Database: "all", User: "all", Address: "all", Method: "reject"},
	}
	rules = c.EffectiveHBA()
	for _, tc := range []struct{ db, user, addr, want string }{
		{"app", "x", "192.168.1.200", "trust"},
		{"other", "x", "192.168.1.200", "reject"},
		{"app", "x", "192.168.2.1", "reject"},
		{"other", "admin", "10.0.0.1", "password"},
		{"other", "admin", "10.0.0.2", "reject"},
		{"other", "admin", "fe80::1%eth0", "reject"},
	} {
		if got := first(tc.db, tc.user, tc.addr); got != tc.want {
			t.Errorf("hba(%s, %s, %s) = %s, want %s", tc.db, tc.user, tc.addr, got, tc.want)
		}
	}
}

// TestExample: the shipped example validates, writes every option, and
// writes each with its default.
func TestExample(t *testing.T) {
	c, err := LoadTOML("pgwrt.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	for name := range tomlFields(reflect.TypeFor[Config]()) {
		if _, ok := c.index.at[name]; !ok && name != "backend" && name != "hba" && name != "user" {
			t.Errorf("pgwrt.example.toml does not show %s", name)
		}
	}
	text, _ := os.ReadFile("pgwrt.example.toml")
	for _, s := range []string{"[[user]]", "name = ", "password = "} {
		if !strings.Contains(string(text), s) {
			t.Errorf("pgwrt.example.toml does not show %s", s)
		}
	}
	if len(c.Backends) == 0 {
		t.Error("example has no backends")
	}
	hba := slices.Clone(c.HBA)
	for i := range hba {
		hba[i].Line = 0
	}
	if !reflect.DeepEqual(hba, Default().EffectiveHBA()) {
		t.Errorf("example hba %+v is not the default %+v", hba, Default().EffectiveHBA())
	}
	d := Default()
	c.Source, c.index, c.Backends, c.HBA, c.Users = "", nil, nil, nil, nil
	if !reflect.DeepEqual(c, d) {
		t.Errorf("example values differ from Default():\n%+v\n%+v", c, d)
	}
}

func TestDiff(t *testing.T) {
	base := func() *Config {
		c := Default()
		c.Backends = []Backend{{Name: "pg1", Host: "10.0.0.1", Port: 5432, Line: 3}, {Name: "pg2", Host: "10.0.0.2", Port: 5432, Line: 7}}
		c.HBA = []HBARule{{Database: "all", User: "all", Address: "all", Method: "password", Line: 11}}
		return c
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   Change
	}{
		{"nothing", func(c *Config) {}, Change{}},
		{"only lines and source", func(c *Config) {
			c.Source = "other.toml"
			c.Backends[0].Line, c.HBA[0].Line = 30, 40
		}, Change{}},
		{"backend added", func(c *Config) {
			c.Backends = append(c.Backends, Backend{Name: "pg3", Host: "10.0.0.3", Port: 5432})
		}, Change{BackendsAdded: []string{"pg3"}}},
		{"backend removed", func(c *Config) { c.Backends = c.Backends[1:] }, Change{BackendsRemoved: []string{"pg1"}}},
		{"backend moved", func(c *Config) { c.Backends[1].Port = 6432 }, Change{BackendsAdded: []string{"pg2"}, BackendsRemoved: []string{"pg2"}}},
		{"backend renamed", func(c *Config) { c.Backends[0].Name = "" }, Change{BackendsAdded: []string{"10.0.0.1:5432"}, BackendsRemoved: []string{"pg1"}}},
		{"backends reordered", func(c *Config) { c.Backends[0], c.Backends[1] = c.Backends[1], c.Backends[0] }, Change{}},
		{"listen", func(c *Config) { c.Listen = ":6432" }, Change{ListenChanged: true, Options: []string{"listen"}}},
		{"freebind", func(c *Config) { c.FreeBind = true }, Change{ListenChanged: true, Options: []string{"freebind"}}},
		{"options", func(c *Config) {
			c.MaxPool = 8
			c.HealthCheckPeriod = Duration(2 * time.Second)
			c.LogLevel = "debug"
		}, Change{Options: []string{"max_pool", "health_check_period", "log_level"}}},
		{"transaction pooling", func(c *Config) {
			c.PoolMode = "transaction"
			c.PoolSize = 10
			c.MaxPreparedStatements = 0
		}, Change{Options: []string{"pool_mode", "pool_size", "max_prepared_statements"}}},
		{"a user's pool", func(c *Config) {
			c.Users = []User{{Name: "app", PoolMode: "transaction", PoolSize: 5}}
		}, Change{Options: []string{"user"}}},
		{"hba and users", func(c *Config) {
			c.HBA[0].Method = "trust"
			c.Users = []User{{Name: "app"}}
		}, Change{Options: []string{"hba", "user"}}},
	}
	for _, tc := range tests {
		c := base()
		tc.change(c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		got := Diff(base(), c)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Diff = %+v, want %+v", tc.name, got, tc.want)
		}
		if got.Empty() != reflect.DeepEqual(tc.want, Change{}) {
			t.Errorf("%s: Empty() = %v", tc.name, got.Empty())
		}
	}
}

// TestPoolFor: a [[user]]'s pool_mode and pool_size override the global
// ones for that user only, and an unset one (""/0) keeps the global value.
func TestPoolFor(t *testing.T) {
	c, err := ParseTOML("p.toml", []byte("pool_mode = \"transaction\"\npool_size = 10\n"+
		"[[user]]\nname = \"report\"\npool_mode = \"session\"\n"+
		"[[user]]\nname = \"batch\"\npool_size = 3\n"+
		"[[user]]\nname = \"app\"\npassword = \"x\""+bk))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		user string
		mode string
		size int
	}{
		{"report", "session", 10},
		{"batch", "transaction", 3},
		{"app", "transaction", 10},
		{"nobody", "transaction", 10},
		{"", "transaction", 10},
	} {
		if got := c.PoolModeFor(tc.user); got != tc.mode {
			t.Errorf("PoolModeFor(%q) = %q, want %q", tc.user, got, tc.mode)
		}
		if got := c.PoolSizeFor(tc.user); got != tc.size {
			t.Errorf("PoolSizeFor(%q) = %d, want %d", tc.user, got, tc.size)
		}
	}
	d := Default()
	if d.PoolModeFor("app") != "session" || d.PoolSizeFor("app") != 20 || d.MaxPreparedStatements != 200 {
		t.Errorf("defaults: %q %d %d", d.PoolModeFor("app"), d.PoolSizeFor("app"), d.MaxPreparedStatements)
	}
}

func FuzzParseTOML(f *testing.F) {
	example, _ := os.ReadFile("pgwrt.example.toml")
	f.Add(string(example))
	f.Add("server_reset_query = '''\n[[backend]]\n'''\nx = [\n \"]\", # ]\n]\n" + bk)
	f.Add("backend = [{host = \"a\"}, {host = \"a\", port = 70000}]")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseTOML("f.toml", []byte(s))
		if err == nil {
			if c == nil || c.Validate() != nil {
				t.Fatal("valid config does not validate again")
			}
			return
		}
		errs := Errors(err)
		if len(errs) == 0 {
			t.Fatalf("error %q is not an *Error", err)
		}
		for _, e := range errs {
			if e.File != "f.toml" || e.Msg == "" {
				t.Fatalf("bad error %#v", e)
			}
		}
	})
}
