package router

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"pgwrt/router/wire"
)

func params(kv ...string) paramSet {
	var s paramSet
	for i := 0; i+1 < len(kv); i += 2 {
		s.set(kv[i], kv[i+1])
	}
	return s
}

func (s paramSet) String() string {
	var b strings.Builder
	for i, p := range s.list {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%q", p.name, p.value)
	}
	return b.String()
}

func statusBody(name, value string) []byte {
	return append(append(append([]byte(name), 0), value...), 0)
}

func TestParamSet(t *testing.T) {
	var s paramSet
	if !s.setStatus(statusBody("DateStyle", "ISO, MDY")) || !s.setStatus(statusBody("TimeZone", "UTC")) {
		t.Fatal("setStatus refused a good message")
	}
	s.set("datestyle", "ISO, DMY")
	if v, ok := s.get("DATESTYLE"); !ok || v != "ISO, DMY" {
		t.Errorf("get DATESTYLE = %q %v", v, ok)
	}
	if len(s.list) != 2 || s.list[0].name != "datestyle" {
		t.Errorf("set kept %v", s)
	}
	// Only ASCII letters fold: the Kelvin sign is not k.
	s.set("k", "1")
	if _, ok := s.get("\u212a"); ok {
		t.Error("K (U+212A) found k")
	}
	for _, bad := range [][]byte{nil, {0}, []byte("a"), []byte("a\x00b")} {
		if s.setStatus(bad) {
			t.Errorf("setStatus(%q) accepted", bad)
		}
	}
	c := s.clone()
	c.set("TimeZone", "Europe/Paris")
	if v, _ := s.get("TimeZone"); v != "UTC" {
		t.Errorf("a clone's change reached the original: %q", v)
	}
}

func TestParamSetStartup(t *testing.T) {
	for _, c := range []struct {
		params map[string]string
		keys   []string
		want   string
	}{
		{
			map[string]string{"user": "u", "database": "d", "application_name": "psql", "search_path": "a,b", "work_mem": "1MB"},
			[]string{"user", "database", "application_name", "search_path", "work_mem"},
			`application_name="psql" search_path="a,b"`,
		},
		{
			map[string]string{"user": "u", "DateStyle": "iso", "client_encoding": "UTF8"},
			[]string{"user", "DateStyle", "client_encoding"},
			`DateStyle="iso" client_encoding="UTF8"`,
		},
		// options first, then the parameters themselves.
		{
			map[string]string{"user": "u", "options": `-c search_path=x -c statement_timeout=5 --TimeZone=UTC -csearch-path=y`, "timezone": "Europe/Paris"},
			[]string{"user", "options", "timezone"},
			`search_path="y" timezone="Europe/Paris"`,
		},
		{
			map[string]string{"user": "u", "options": `-c application_name=my\ app\\x -B 8 -e -c`},
			[]string{"user", "options"},
			`application_name="my app\\x" DateStyle="euro"`,
		},
		// -d takes a value, so this -c is not a switch; after --, nothing is.
		{
			map[string]string{"user": "u", "options": `-d -c search_path=x -- -c timezone=UTC`},
			[]string{"user", "options"},
			``,
		},
	} {
		var s paramSet
		s.setStartup(c.keys, c.params)
		if got := s.String(); got != c.want {
			t.Errorf("setStartup(%v):\n got %s\nwant %s", c.params, got, c.want)
		}
	}
}

func TestApplyParams(t *testing.T) {
	reported := params("server_version", "16.2", "client_encoding", "UTF8", "DateStyle", "ISO, MDY",
		"TimeZone", "UTC", "IntervalStyle", "postgres", "standard_conforming_strings", "on",
		"application_name", "", "is_superuser", "off")
	for _, c := range []struct {
		name            string
		client, backend paramSet
		want            string
	}{
		{"same", reported, reported, ""},
		{"empty", paramSet{}, reported, ""},
		{"untracked differ", reported, params("server_version", "15.1", "DateStyle", "ISO, MDY", "TimeZone", "UTC",
			"client_encoding", "UTF8", "IntervalStyle", "postgres", "standard_conforming_strings", "on", "application_name", ""), ""},
		{"two", params("DateStyle", "ISO, DMY", "TimeZone", "Europe/Paris", "application_name", "app"),
			params("DateStyle", "ISO, MDY", "TimeZone", "UTC", "application_name", "app"),
			`SET datestyle = 'ISO, DMY'; SET timezone = 'Europe/Paris'`},
		{"names fold", params("datestyle", "ISO, MDY", "TIMEZONE", "UTC"), params("DateStyle", "ISO, MDY", "TimeZone", "UTC"), ""},
		{"missing on backend", params("IntervalStyle", "iso_8601"), paramSet{}, `SET intervalstyle = 'iso_8601'`},
		{"quote", params("application_name", "O'Brien's"), params("application_name", ""),
			`SET application_name = 'O''Brien''s'`},
		{"backslash", params("application_name", `C:\dir\'x`), params("application_name", ""),
			`SET application_name = E'C:\\dir\\''x'`},
		{"empty value", params("application_name", ""), params("application_name", "x"), `SET application_name = ''`},
		{"search_path", params("search_path", `"$user", public`, "application_name", "a"), params("application_name", "b"),
			`SET application_name = 'a'; SELECT pg_catalog.set_config('search_path', '"$user", public', false)`},
		{"search_path same", params("search_path", "a"), params("search_path", "a"), ""},
		{"scs and encoding", params("standard_conforming_strings", "off", "client_encoding", "LATIN1"),
			params("standard_conforming_strings", "on", "client_encoding", "UTF8"),
			`SET standard_conforming_strings = 'off'; SET client_encoding = 'LATIN1'`},
	} {
		got := applyParams(c.client, c.backend)
		if string(got) != c.want || (c.want == "") != (got == nil) {
			t.Errorf("%s: applyParams =\n %q\nwant\n %q", c.name, got, c.want)
		}
	}
}

// TestApplyParamsLexes reads applyParams' output with classifySQL's lexer,
// with standard_conforming_strings on and off: each value must be one
// literal that reads back as the value, and nothing else may appear.
func TestApplyParamsLexes(t *testing.T) {
	for _, v := range []string{
		"", "plain", "it's", "''", `\`, `\'`, `'\`, `a\'; DROP TABLE t; --`,
		`'; DROP TABLE t; --`, "$$", "E'x'", "\"q\"", "a\nb", "/* c", "-- c", "é",
	} {
		checkApplyLexes(t, v)
	}
}

func checkApplyLexes(t *testing.T, v string) {
	t.Helper()
	q := applyParams(params("application_name", v, "search_path", v), paramSet{})
	for _, backslash := range []bool{false, true} {
		l := sqlLexer{b: q, backslash: backslash}
		var toks []token
		for tk := l.next(); tk.kind != tokEOF; tk = l.next() {
			toks = append(toks, tk)
		}
		// SET application_name = '...' ; SELECT pg_catalog . set_config ( '...' , '...' , false )
		shape := []tokKind{tokWord, tokWord, tokOp, tokString, tokSemi,
			tokWord, tokWord, tokDot, tokWord, tokLParen, tokString, tokComma, tokString, tokComma, tokWord, tokRParen}
		ok := len(toks) == len(shape)
		for i := 0; ok && i < len(shape); i++ {
			ok = toks[i].kind == shape[i]
		}
		if !ok {
			t.Errorf("value %q, backslash %v: %q does not lex as two statements", v, backslash, q)
			continue
		}
		for _, i := range []int{3, 12} {
			if got := literalValue(q, toks[i], backslash); got != v {
				t.Errorf("value %q, backslash %v: literal %d reads %q in %q", v, backslash, i, got, q)
			}
		}
	}
}

// literalValue decodes a string token as PostgreSQL would: a doubled quote
// is one, and in E'...' or with backslash set a backslash keeps the next byte.
func literalValue(q []byte, t token, backslash bool) string {
	e := t.start >= 2 && (q[t.start-2] == 'E' || q[t.start-2] == 'e')
	var b []byte
	for i := t.start; i < t.end; i++ {
		c := q[i]
		if c == '\'' || c == '\\' && (e || backslash) {
			i++
			c = q[i]
		}
		b = append(b, c)
	}
	return string(b)
}

func FuzzApplyParams(f *testing.F) {
	for _, s := range []string{"", "x", "it's", `a\'b`, `\\'`, "\x01\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if strings.IndexByte(v, 0) >= 0 {
			return // a parameter value cannot hold NUL
		}
		checkApplyLexes(t, v)
	})
}

func TestParamIdent(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"DateStyle", "datestyle"},
		{"application_name", "application_name"},
		{"myapp.tenant", `"myapp.tenant"`},
		{"select", `"select"`},
		{`we"ird`, `"we""ird"`},
		{"Mixed Case", `"Mixed Case"`},
	} {
		if got := string(appendIdent(nil, c.name)); got != c.want {
			t.Errorf("appendIdent(%q) = %s, want %s", c.name, got, c.want)
		}
	}
}

func TestParamStatusDiff(t *testing.T) {
	seen := params("server_version", "15.6", "DateStyle", "ISO, MDY", "TimeZone", "UTC",
		"application_name", "app", "in_hot_standby", "off", "is_superuser", "off", "server_encoding", "UTF8")
	for _, c := range []struct {
		name    string
		backend paramSet
		want    string // name=value, in backend order
	}{
		{"same", seen, ""},
		{"subset", params("server_version", "15.6"), ""},
		{"version", params("server_version", "16.2", "DateStyle", "ISO, MDY", "TimeZone", "UTC", "in_hot_standby", "off"),
			`server_version="16.2"`},
		// Tracked values the client has are applyParams' business.
		{"tracked", params("DateStyle", "SQL, DMY", "TimeZone", "Asia/Tokyo", "application_name", "other"), ""},
		// ... but one it never saw is news.
		{"new tracked", params("IntervalStyle", "postgres"), `IntervalStyle="postgres"`},
		{"several", params("is_superuser", "on", "scram_iterations", "4096", "in_hot_standby", "off", "server_encoding", "SQL_ASCII"),
			`is_superuser="on" scram_iterations="4096" server_encoding="SQL_ASCII"`},
	} {
		out := paramStatusDiff(seen, c.backend)
		if (c.want == "") != (out == nil) {
			t.Errorf("%s: %q", c.name, out)
			continue
		}
		var got []string
		rd := wire.Reader{R: bytes.NewReader(out)}
		for {
			m, err := rd.Read()
			if err != nil {
				break
			}
			name, rest, ok1 := wire.CString(m.Body)
			value, rest, ok2 := wire.CString(rest)
			if m.Type != 'S' || !ok1 || !ok2 || len(rest) != 0 {
				t.Fatalf("%s: bad message %q %q", c.name, m.Type, m.Body)
			}
			got = append(got, fmt.Sprintf("%s=%q", name, value))
		}
		if s := strings.Join(got, " "); s != c.want {
			t.Errorf("%s: paramStatusDiff sends %s, want %s", c.name, s, c.want)
		}
	}
}

// paramsFit remembers a fit per backend: clients with the same parameters
// share it, and any change on either side asks again.
func TestParamsFitMemo(t *testing.T) {
	be := &backend{reported: params("client_encoding", "UTF8", "DateStyle", "ISO, MDY", "server_version", "15.18")}
	a := &session{want: params("client_encoding", "UTF8", "DateStyle", "ISO, MDY"), seen: be.reported.clone()}
	b := &session{want: params("client_encoding", "UTF8", "DateStyle", "ISO, MDY"), seen: be.reported.clone()}
	if !a.paramsFit(be) || !be.fit.ok {
		t.Fatal("a client whose parameters the backend has does not fit")
	}
	if !b.paramsFit(be) {
		t.Fatal("a second client with the same parameters does not fit")
	}
	b.want.set("DateStyle", "ISO, DMY")
	if b.paramsFit(be) {
		t.Fatal("after a change of its own the client still fits")
	}
	if !a.paramsFit(be) {
		t.Fatal("the first client no longer fits")
	}
	be.reported.set("TimeZone", "UTC")
	if a.paramsFit(be) {
		t.Fatal("a backend that reports a value the client has not seen still fits")
	}
	a.seen.set("TimeZone", "UTC")
	if !a.paramsFit(be) {
		t.Fatal("the client does not fit once it has seen the value")
	}
	be2 := &backend{reported: be.reported.clone()}
	be2.reported.set("server_version", "16.4")
	if a.paramsFit(be2) {
		t.Fatal("a backend of another server version fits")
	}
}

func TestNodeHasAddr(t *testing.T) {
	for _, n := range []NodeState{{Host: "127.0.0.1", Port: 5432}, {Host: "::1", Port: 6543}, {Host: "db.example", Port: 1}} {
		if !n.hasAddr(n.Addr()) {
			t.Errorf("%s:%d: hasAddr(Addr()) is false", n.Host, n.Port)
		}
		if n.hasAddr(n.Addr() + "0") {
			t.Errorf("%s:%d: hasAddr of another port is true", n.Host, n.Port)
		}
	}
}

// The check each transaction makes before it uses a backend, with the
// parameters a PostgreSQL 15 server reports: compared entry by entry, and
// through paramsFit's memo.
func BenchmarkParamsFit(b *testing.B) {
	rep := params("application_name", "pgbench", "client_encoding", "UTF8", "DateStyle", "ISO, MDY",
		"default_transaction_read_only", "off", "in_hot_standby", "off", "integer_datetimes", "on",
		"IntervalStyle", "postgres", "is_superuser", "on", "server_encoding", "UTF8", "server_version", "15.18",
		"session_authorization", "postgres", "standard_conforming_strings", "on", "TimeZone", "Etc/UTC")
	be := &backend{reported: rep}
	s := &session{seen: rep.clone()}
	for _, p := range rep.list {
		if isTracked(p.name) {
			s.want.set(p.name, p.value)
		}
	}
	b.Run("compare", func(b *testing.B) {
		for b.Loop() {
			if applyParams(s.want, be.reported) != nil || paramStatusDiff(s.seen, be.reported) != nil {
				b.Fatal("no fit")
			}
		}
	})
	b.Run("memo", func(b *testing.B) {
		for b.Loop() {
			if !s.paramsFit(be) {
				b.Fatal("no fit")
			}
		}
	})
}
