package config

import (
	"reflect"
	"strings"
	"testing"
)

// TestParseUCI is the UCI table: the same options and messages as TOML, at
// the lines of uci options and sections.
func TestParseUCI(t *testing.T) {
	const be = "\nconfig backend\n\toption host 'db'\n"
	tests := []struct {
		input string
		want  string
	}{
		{be, ""},
		{"config pgwrt 'main'\n\toption listen ':6432'\n\toption freebind '1'\n\toption health_check_period '5'\n\toption max_pool '8'" + be, ""},
		{"config pgwrt\n\toption freebind 'enabled'" + be, ""},
		{"config pgwrt 'main'\n\toption enabled '0'\n\toption nofile '4096'" + be, ""},
		{"config pgwrt 'main'\n\toption enabled 'yes'\n\toption nofile '1048576'" + be, ""},
		{"config backend 'pg1'\n\toption host '10.0.0.1'\nconfig backend\n\toption host '10.0.0.2'\n\toption port '6432'\n" +
			"config hba\n\toption database 'all'\n\toption user 'all'\n\toption address '192.168.1.0/24'\n\toption method 'trust'\n" +
			"config user\n\toption name 'app'\n\toption password 'x'", ""},
		{"config pgwrt 'main'\n\toption pool_mode 'transaction'\n\toption pool_size '5'\n\toption max_prepared_statements '0'" + be, ""},
		{"config user 'batch'\n\toption name 'batch'\n\toption pool_mode 'transaction'\n\toption pool_size '2'" + be, ""},
		{"config pgwrt 'main'\n\toption pool_mode 'statement'" + be, `u:2: pool_mode: "statement" is not a pool mode; use "session" or "transaction"`},
		{"config pgwrt 'main'\n\toption pool_size '0'" + be, `u:2: pool_size: must be at least 1, not 0`},
		{"config pgwrt 'main'\n\toption pool_size 'twenty'" + be, `u:2: pool_size: must be an integer, not "twenty"`},
		{"config pgwrt 'main'\n\toption max_backend_connections '8'\n\toption pool_size '9'" + be,
			`u:3: pool_size: must not be more than max_backend_connections (8), not 9`},
		{"config pgwrt 'main'\n\toption pool_mode 'transaction'\n\toption max_backend_connections '8'" + be,
			`u: pool_size: must not be more than max_backend_connections (8), not 20 (its default; pool_mode "transaction" uses it)`},
		{"config pgwrt 'main'\n\toption max_prepared_statements '-1'" + be, `u:2: max_prepared_statements: must be at least 0, not -1`},
		{"config user\n\toption name 'app'\n\toption pool_mode 'Transaction'" + be, `u:3: user.pool_mode: "Transaction" is not a pool mode; use "session" or "transaction"`},
		{"config user\n\toption name 'app'\n\toption pool_size '0'" + be, `u:3: user.pool_size: must be at least 1, not 0`},
		{"config user\n\toption name 'app'\n\toption pool_size '65'" + be, `u:3: user.pool_size: must not be more than max_backend_connections (64), not 65`},
		{"config user\n\toption name 'app'\n\tlist pool_mode 'session'" + be, `u:3: user.pool_mode: must be an option, not a list`},
		{"config backend\n\toption host 'a'\n\toption pool_size '5'", `u:3: backend.pool_size: unknown option in config backend (it belongs in config pgwrt)`},

		{"config pgwrt 'main'\n\toption listen 'x'" + be, `u:2: listen: "x" is not host:port (e.g. "0.0.0.0:5432", "[::]:5432", ":5432")`},
		{"config pgwrt 'main'\n\toption bogus '1'" + be, `u:2: bogus: unknown option`},
		{"config pgwrt 'main'\n\toption Listen ':1'" + be, `u:2: Listen: unknown option (did you mean listen?)`},
		{"config pgwrt 'main'\n\toption backend 'x'" + be, `u:2: backend: unknown option`},
		{"config pgwrt 'main'\n\tlist listen ':1'" + be, `u:2: listen: must be an option, not a list`},
		{"config pgwrt 'main'\n\toption max_clients 'many'" + be, `u:2: max_clients: must be an integer, not "many"`},
		{"config pgwrt 'main'\n\toption max_clients '0'" + be, `u:2: max_clients: must be at least 1, not 0`},
		{"config pgwrt 'main'\n\toption freebind 'maybe'" + be, `u:2: freebind: must be 1 or 0, not "maybe"`},
		{"config pgwrt 'main'\n\toption enabled 'maybe'" + be, `u:2: enabled: must be 1 or 0, not "maybe"`},
		{"config pgwrt 'main'\n\toption enabled 'Off'" + be, `u:2: enabled: must be 1 or 0, not "Off"`},
		{"config pgwrt 'main'\n\tlist enabled '1'" + be, `u:2: enabled: must be an option, not a list`},
		{"config pgwrt 'main'\n\toption nofile 'lots'" + be, `u:2: nofile: must be a number of files, not "lots"`},
		{"config pgwrt 'main'\n\toption nofile '-1'" + be, `u:2: nofile: must be a number of files, not "-1"`},
		{"config pgwrt 'main'\n\toption nofile ' 64'" + be, `u:2: nofile: must be a number of files, not " 64"`},
		{"config pgwrt 'main'\n\toption nofile '0'" + be, `u:2: nofile: must be between 1 and 1048576, not 0`},
		{"config pgwrt 'main'\n\toption nofile '2000000'" + be, `u:2: nofile: must be between 1 and 1048576, not 2000000`},
		{"config backend\n\toption host 'a'\n\toption enabled '1'", `u:3: backend.enabled: unknown option`},
		{"config pgwrt 'main'\n\n\n\n\n\toption health_check_period '5x'" + be, `u:6: health_check_period: bad duration "5x" (want e.g. "1s", "250ms", "2m" or seconds)`},
		{"config pgwrt 'main'\nconfig pgwrt 'other'" + be, `u:2: pgwrt: only one config pgwrt section is allowed (the first is at line 1)`},
		{"config pool" + be, `u:1: pool: unknown section type (want pgwrt, backend, hba, user)`},
		{"config pgwrt 'main'\n\toption listen 'it''s", `u:2: syntax: unterminated ' quote`},
		{"config pgwrt 'main'\n", `u: backend: no backends configured`},
		{"config backend\n\toption port '5432'", `u:1: backend.host: must be set`},
		{"config backend\n\toption host 'a'\n\toption port '0'", `u:3: backend.port: must be between 1 and 65535, not 0`},
		{"config backend\n\toption host 'a'\n\toption listen ':1'", `u:3: backend.listen: unknown option in config backend (it belongs in config pgwrt)`},
		{"config backend 'pg'\n\toption host 'a'\nconfig backend\n\toption name 'pg'\n\toption host 'b'", `u:4: backend.name: "pg" is used twice (lines 1 and 3)`},
		{"config backend\n\toption host 'a'\nconfig backend\n\toption host 'a'\n\toption port '5432'", `u:3: backend: a:5432 is defined twice (lines 1 and 3)`},
		{"config hba\n\toption database 'all'\n\toption user 'all'\n\toption address 'all'\n\toption method 'md5'" + be, `u:5: hba.method: "md5" is not one of trust, password, reject`},
		{"config user\n\toption password 'x'" + be, `u:1: user.name: must be set`},
	}
	for _, tc := range tests {
		c, err := ParseUCI("u", []byte(tc.input))
		got := ""
		if err != nil {
			got = err.Error()
			if c != nil {
				t.Errorf("%q: got a Config with an error", tc.input)
			}
			if len(Errors(err)) == 0 {
				t.Errorf("%q: %q is not an *Error", tc.input, err)
			}
		}
		if got != tc.want {
			t.Errorf("ParseUCI(%q):\n got: %s\nwant: %s", tc.input, got, tc.want)
		}
	}
}

// exampleUCI says in UCI what pgwrt.example.toml says.
const exampleUCI = `
config pgwrt 'main'
	option listen '0.0.0.0:5432'
	option freebind '0'
	option pool_mode 'session'
	option max_clients '32'
	option client_wait_timeout '10s'
	option buffer_size '8192'
	option io_engine 'auto'
	option max_pool '4'
	option max_backend_connections '64'
	option pool_size '20'
	option max_prepared_statements '200'
	option server_idle_timeout '5m'
	option server_lifetime '1h'
	option server_reset_query 'DISCARD ALL'
	option server_connect_timeout '5s'
	option failover_wait '30s'
	option health_check_period '1s'
	option health_check_fast_period '100ms'
	option health_check_timeout '3s'
	option health_check_max_retries '2'
	option health_check_user 'postgres'
	option health_check_database 'postgres'
	option tcp_keepalive_idle '10s'
	option tcp_keepalive_interval '2s'
	option tcp_keepalive_count '3'
	option tcp_user_timeout '8s'
	option log_level 'info'

config backend 'pg1'
	option host '192.168.1.11'

config backend
	option name 'pg2'
	option host '192.168.1.12'
	option port '5432'

config backend 'pg3'
	option host '192.168.1.13'

config hba
	option database 'all'
	option user 'all'
	option address '127.0.0.1/32'
	option method 'trust'

config hba
	option database 'all'
	option user 'all'
	option address '::1/128'
	option method 'trust'

config hba
	option database 'all'
	option user 'all'
	option address 'all'
	option method 'password'
`

func TestUCIMatchesTOML(t *testing.T) {
	u, err := ParseUCI("pgwrt", []byte(exampleUCI))
	if err != nil {
		t.Fatal(err)
	}
	tm, err := LoadTOML("pgwrt.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if ch := Diff(tm, u); !ch.Empty() {
		t.Errorf("UCI and TOML examples differ: %+v", ch)
	}
	for i := range u.Backends {
		if u.Backends[i].Name != tm.Backends[i].Name {
			t.Errorf("backend %d is %q in UCI, %q in TOML", i, u.Backends[i].Name, tm.Backends[i].Name)
		}
	}
	// Every option of config pgwrt is in exampleUCI except the ones UCI
	// cannot hold (an empty option is no option at all).
	for name, typ := range tomlFields(reflect.TypeFor[Config]()) {
		if typ.Kind() == reflect.Slice || name == "health_check_password" || name == "http_listen" {
			continue
		}
		if !strings.Contains(exampleUCI, "option "+name+" ") {
			t.Errorf("exampleUCI lacks %s", name)
		}
	}
}
