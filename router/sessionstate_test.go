package router

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// effString names the bits of f, for failure messages.
func effString(f effect) string {
	names := []string{"set", "prepare", "deallocate", "listen", "advisory", "hold", "temp", "load", "unknown"}
	var s []string
	for i, n := range names {
		if f&(1<<i) != 0 {
			s = append(s, n)
		}
	}
	return strings.Join(s, "|")
}

func changesString(e *stmtEffect) string {
	var s []string
	for _, c := range e.changes() {
		if c.reset {
			s = append(s, "reset "+c.name)
		} else {
			s = append(s, c.name)
		}
	}
	if !e.allListed() {
		s = append(s, "...")
	}
	return strings.Join(s, ",")
}

func TestClassifySQL(t *testing.T) {
	for _, c := range []struct {
		q       string
		eff     effect
		changes string // "reset x" for a RESET; "" names an unknown parameter
	}{
		// Nothing.
		{"", 0, ""},
		{"   \n\t", 0, ""},
		{";;", 0, ""},
		{"SELECT 1", 0, ""},
		{"select * from settings", 0, ""},
		{"SHOW search_path", 0, ""},
		{"BEGIN; SELECT 1; COMMIT", 0, ""},
		{"UNLISTEN *", 0, ""},
		{"NOTIFY ch, 'LISTEN x'", 0, ""},
		{"SETTINGS x", 0, ""},
		{"RESETS", 0, ""},
		{"UPDATE t SET a = 1", 0, ""},
		{"ALTER ROLE r SET search_path = x", 0, ""},
		{"ALTER DATABASE d RESET ALL", 0, ""},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = x AS 'select 1'", 0, ""},
		{"INSERT INTO tempo VALUES (1)", 0, ""},
		{"CREATE TABLE t (a int)", 0, ""},
		{"CREATE UNLOGGED TABLE t (a int)", 0, ""},
		{"DECLARE c CURSOR FOR SELECT 1", 0, ""},
		{"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", 0, ""},
		{"DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold", 0, ""},
		{"PREPARE TRANSACTION 'gid'", 0, ""},
		{"COMMIT PREPARED 'gid'", 0, ""},
		{"SELECT pg_advisory_xact_lock(1)", 0, ""},
		{"SELECT pg_try_advisory_xact_lock_shared(1)", 0, ""},
		{"SELECT pg_advisory_unlock_all()", 0, ""},
		{"SELECT pg_advisory_lock", 0, ""},
		{"SELECT my_pg_advisory_lock(1)", 0, ""},
		{"SELECT current_setting('search_path')", 0, ""},

		// Literals, identifiers and comments hide what is inside them.
		{"SELECT 'SET x = 1'", 0, ""},
		{"SELECT 'it''s; SET x = 1'", 0, ""},
		{"SELECT E'it\\'s; SET x = 1'", 0, ""},
		{"SELECT e'\\\\'; SET x = 1", effSet, "x"},
		{"SELECT $$; SET x = 1$$", 0, ""},
		{"SELECT $f$ $$; SET x = 1 $f$", 0, ""},
		{"SELECT $f$ $g$; LISTEN x $f$; LISTEN y", effListen, ""},
		{"SELECT $1; LISTEN x", effListen, ""},
		{`SELECT "SET x"; SELECT "a""; LISTEN x"`, 0, ""},
		{`SELECT U&"d\0061t\+000061"; SELECT U&'\0041; LISTEN x'`, 0, ""},
		{"SELECT N'; LISTEN x', B'1; LISTEN x', X'; LISTEN x'", 0, ""},
		{"-- SET x = 1\nSELECT 1", 0, ""},
		{"/* SET x = 1 */ SELECT 1", 0, ""},
		{"/* a /* nested */ SET x = 1 */ SELECT 1", 0, ""},
		{"/* a /* nested */ */ SET x = 1", effSet, "x"},
		{"/**/SET x = 1", effSet, "x"},
		{"SELECT 1 -- ; SET x = 1\r; SET y = 2", effSet, "y"},
		{"SELECT 'unterminated; SET x = 1", 0, ""},
		{"SELECT $$unterminated; SET x = 1", 0, ""},
		{"/* unterminated; SET x = 1", 0, ""},
		{"SELECT a$$b; SET x = 1", effSet, "x"},
		{"SELECT 'SET x' AS \"pg_advisory_lock\"", 0, ""},
		{"SELECT 1 FROM t WHERE a = 'pg_advisory_lock(1)'", 0, ""},

		// SET and RESET.
		{"SET search_path = a, b", effSet, "search_path"},
		{"set Search_Path to DEFAULT", effSet, "search_path"},
		{"  \n-- c\n/* c */ SET\nstatement_timeout=0", effSet, "statement_timeout"},
		{"SET SESSION DateStyle = 'ISO'", effSet, "datestyle"},
		{"SET \"DateStyle\" = 'ISO'", effSet, "datestyle"},
		{"SET myapp.Tenant = '7'", effSet, "myapp.tenant"},
		{"SET \"my\"\"app\".x TO 1", effSet, `my"app.x`},
		{"SET LOCAL search_path = a", 0, ""},
		{"set local statement_timeout = 5", 0, ""},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", 0, ""},
		{"SET SESSION TRANSACTION READ ONLY", 0, ""},
		{"SET TRANSACTION SNAPSHOT '000003A1-1'", 0, ""},
		{"SET CONSTRAINTS ALL DEFERRED", 0, ""},
		{"SET TIME ZONE 'UTC'", effSet, "timezone"},
		{"SET time = 1", effSet, "time"},
		{"SET NAMES 'UTF8'", effSet, "client_encoding"},
		{"SET names = 1", effSet, "names"},
		{"SET SCHEMA 'app'", effSet, "search_path"},
		{"SET schema TO 'app'", effSet, "schema"},
		{"SET ROLE admin", effSet, "role"},
		{"SET SESSION AUTHORIZATION DEFAULT", effSet, "session_authorization"},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", effSet, "session_characteristics"},
		{"SET XML OPTION DOCUMENT", effSet, "xmloption"},
		{"SET work_mem FROM CURRENT", effSet, "work_mem"},
		{"SET", effSet, ""},
		{"RESET search_path", effSet, "reset search_path"},
		{"RESET ALL", effSet, "reset all"},
		{"reset time zone", effSet, "reset timezone"},
		{"RESET SESSION AUTHORIZATION", effSet, "reset session_authorization"},
		{"RESET ROLE", effSet, "reset role"},
		{"RESET TRANSACTION ISOLATION LEVEL", 0, ""},
		{"SET a = 1; SET LOCAL b = 2; RESET c; SET a = 3", effSet, "a,reset c"},
		{"SET a=1;SET b=1;SET c=1;SET d=1;SET e=1", effSet, "a,b,c,d,..."},
		{"BEGIN; SET search_path = x; COMMIT;", effSet, "search_path"},
		{"EXPLAIN SET x = 1", effSet, "x"}, // a syntax error, over-reported

		// set_config.
		{"SELECT set_config('search_path', 'a', false)", effSet, "search_path"},
		{"SELECT pg_catalog.set_config('Search_Path', 'a', FALSE)", effSet, "search_path"},
		{"SELECT set_config('search_path', 'a', true)", 0, ""},
		{"SELECT set_config('app.user', $1, TRUE)", 0, ""},
		{"SELECT set_config('a.b', 'x', 't'), set_config('a.c', 'y', 'on'::boolean)", 0, ""},
		{"select set_config ( 'a.b' , f(1, 2) , true::bool )", 0, ""},
		{"SELECT set_config('a.b', 'x', $3)", effSet, "a.b"},
		{"SELECT set_config('a.b', 'x', NOT false)", effSet, "a.b"},
		{"SELECT set_config('a.b', 'x', (true))", effSet, "a.b"},
		{"SELECT set_config('a.b', 'x')", effSet, "a.b"},
		{"SELECT set_config('a.b', 'x', true, 1)", effSet, "a.b"},
		{"SELECT set_config($1, $2, false)", effSet, ""},
		{"SELECT set_config('a' || '.b', 'x', false)", effSet, ""},
		{"SELECT set_config(E'a.b', 'x', false)", effSet, ""},
		{"SELECT \"set_config\"('a.b', 'x', false)", effSet, "a.b"},
		{"SELECT \"SET_CONFIG\"('a.b', 'x', false)", 0, ""}, // another function
		{"SELECT set_config('a.b', set_config('c.d', 'x', false), true)", effSet, "c.d"},
		{"SELECT set_config(set_config('c.d', 'x', true), 'y', true)", 0, ""},
		{"SELECT set_config('a.b', 'x', true", 0, ""}, // unterminated, but all there
		{"SELECT set_config('a.b', 'x'; SELECT 1", effSet, "a.b"},
		{"SELECT 1 WHERE set_config('a.b', 'x', false) IS NOT NULL", effSet, "a.b"},

		// Prepared statements, LISTEN, advisory locks, cursors, LOAD.
		{"PREPARE p AS SELECT 1", effPrepare, ""},
		{"prepare p(int) as select $1", effPrepare, ""},
		{"PREPARE transaction AS SELECT 1", effPrepare, ""},
		{"DEALLOCATE p", effDeallocate, ""},
		{"DEALLOCATE PREPARE ALL", effDeallocate, ""},
		{"LISTEN ch", effListen, ""},
		{"listen \"Ch\"", effListen, ""},
		{"SELECT pg_advisory_lock(1)", effAdvisoryLock, ""},
		{"SELECT pg_catalog.pg_advisory_lock_shared(1, 2)", effAdvisoryLock, ""},
		{"SELECT PG_TRY_ADVISORY_LOCK (1)", effAdvisoryLock, ""},
		{"SELECT pg_try_advisory_lock_shared/**/(1)", effAdvisoryLock, ""},
		{"SELECT \"pg_advisory_lock\"(1)", effAdvisoryLock, ""},
		{"SELECT x FROM t WHERE pg_try_advisory_lock(t.id) LIMIT 1", effAdvisoryLock, ""},
		{"DECLARE c CURSOR WITH HOLD FOR SELECT 1", effHoldCursor, ""},
		{"declare c binary no scroll cursor with hold for select 1", effHoldCursor, ""},
		{"LOAD 'auto_explain'", effLoad, ""},

		// Temporary objects.
		{"CREATE TEMP TABLE t (a int)", effTemp, ""},
		{"create temporary table t as select 1", effTemp, ""},
		{"CREATE LOCAL TEMP TABLE t (a int)", effTemp, ""},
		{"CREATE GLOBAL TEMPORARY TABLE t (a int)", effTemp, ""},
		{"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", effTemp, ""},
		{"CREATE TEMP RECURSIVE VIEW v (n) AS SELECT 1", effTemp, ""},
		{"CREATE TEMPORARY SEQUENCE s", effTemp, ""},
		{"CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS", effTemp, ""},
		{"CREATE TEMP TABLE t (a int) ON COMMIT PRESERVE ROWS", effTemp, ""},
		{"CREATE TEMP TABLE t (a int) ON COMMIT DROP", 0, ""},
		{"BEGIN; CREATE TEMP TABLE t ON COMMIT DROP AS SELECT 1; COMMIT", 0, ""},
		{"CREATE TABLE pg_temp.t (a int)", effTemp, ""},
		{"CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql", effTemp, ""},
		{"CREATE TABLE pg_temp_3.t (a int)", effTemp, ""},
		{"CREATE TABLE pg_temporary.t (a int)", 0, ""},
		{"SELECT 1 AS a INTO TEMP t", effTemp, ""},
		{"select * into temporary table t from u", effTemp, ""},
		{"WITH x AS (SELECT 1) SELECT * INTO TEMP t FROM x", effTemp, ""},
		{"SELECT * INTO t FROM u", 0, ""},
		{"EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1", effTemp, ""},
		{"EXPLAIN (ANALYZE, BUFFERS) SELECT pg_advisory_lock(1)", effAdvisoryLock, ""},

		// Several at once.
		{"SET a = 1; LISTEN c; SELECT pg_advisory_lock(1); PREPARE p AS SELECT 1", effSet | effListen | effAdvisoryLock | effPrepare, "a"},
		{"SELECT 1\x00SET a = 1", 0, ""}, // a Query body ends at its NUL
	} {
		e := classifySQL([]byte(c.q))
		if e.eff != c.eff || changesString(&e) != c.changes {
			t.Errorf("classifySQL(%q) = %s [%s], want %s [%s]", c.q, effString(e.eff), changesString(&e), effString(c.eff), c.changes)
		}
	}
}

// TestClassifySQLBackslash: where a backslash in '...' makes the query read
// differently with standard_conforming_strings on and off, both readings
// count.
func TestClassifySQLBackslash(t *testing.T) {
	for _, c := range []struct {
		q   string
		eff effect
	}{
		// on: 'a\' ends, LISTEN x runs; off: one literal, LISTEN y runs.
		{`SELECT 'a\'; LISTEN x; SELECT '; LISTEN y`, effListen},
		// on: LISTEN runs; off: inside the literal.
		{`SELECT 'a\'; LISTEN x; --'`, effListen},
		// off: the literal ends at the second quote and PREPARE runs.
		{`SELECT 'a\''; PREPARE p AS SELECT 1; --'`, effPrepare},
		// No backslash: one reading.
		{`SELECT 'a'''; SELECT 1`, 0},
	} {
		e := classifySQL([]byte(c.q))
		if e.eff != c.eff {
			t.Errorf("classifySQL(%q) = %s, want %s", c.q, effString(e.eff), effString(c.eff))
		}
	}
}

func TestClassifySQLLimit(t *testing.T) {
	long := "SELECT '" + strings.Repeat("x", maxClassify) + "'"
	if e := classifySQL([]byte(long)); e.eff != effUnknown {
		t.Errorf("long query: %s, want unknown", effString(e.eff))
	}
	// What the start shows is reported as well.
	if e := classifySQL([]byte("LISTEN a; " + long)); e.eff != effUnknown|effListen {
		t.Errorf("long query with LISTEN: %s", effString(e.eff))
	}
	// Exactly the limit, with the Query body's NUL after it, is whole.
	exact := long[:maxClassify-1] + "'\x00"
	if e := classifySQL([]byte(exact)); e.eff != 0 {
		t.Errorf("query of maxClassify bytes: %s", effString(e.eff))
	}
}

// TestClassifySQLLinear feeds inputs that make a careless scanner go back
// over what it read: nested comments and calls, dollar quotes that do not
// close, long names. Each must take about as long as reading 64 KiB.
func TestClassifySQLLinear(t *testing.T) {
	n := maxClassify
	inputs := map[string]string{
		"nested calls":     strings.Repeat("set_config(", n/11),
		"nested unclosed":  strings.Repeat("set_config('a', ", n/16) + strings.Repeat("x", n/2),
		"comment openings": strings.Repeat("/*", n/2),
		"dollar tags":      strings.Repeat("$a$ ", n/4),
		"dollar near miss": "$abcdefgh$" + strings.Repeat("$abcdefg$", n/10),
		"dotted name":      "SET " + strings.Repeat("a.", n/2),
		"semicolons":       strings.Repeat("SET a=1;", n/8),
		"explain":          strings.Repeat("EXPLAIN (", n/9),
	}
	for name, q := range inputs {
		start := time.Now()
		classifySQL([]byte(q))
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: %v", name, d)
		}
	}
}

func TestClassifySQLAllocs(t *testing.T) {
	for _, q := range []string{
		"SELECT 1",
		"SELECT * FROM t WHERE a = 'it''s' AND b = $1 /* c */ -- d\n",
		"SELECT $$x$$, E'\\n', \"Col\", U&'\\0041', 'a\\b'",
		"BEGIN; UPDATE t SET a = 1; COMMIT",
		"SET LOCAL statement_timeout = 0; SELECT set_config('a.b', 'c', true)",
		"SHOW POOL_NODES\x00",
	} {
		b := []byte(q)
		if n := testing.AllocsPerRun(100, func() { classifySQL(b) }); n != 0 {
			t.Errorf("classifySQL(%q): %v allocations", q, n)
		}
	}
	// Known names do not allocate either.
	b := []byte("SET search_path = a; RESET timezone; SELECT set_config('application_name', 'x', false)")
	if n := testing.AllocsPerRun(100, func() { classifySQL(b) }); n != 0 {
		t.Errorf("known names: %v allocations", n)
	}
}

func FuzzClassifySQL(f *testing.F) {
	for _, s := range []string{
		"SET a = 1", "SET LOCAL a = 1", "RESET ALL", "SELECT set_config('a', 'b', false)",
		"SELECT 'x'; LISTEN c", "SELECT $a$ $$ $a$", "/* /* */ */ SET x TO 1",
		"SELECT E'\\''; LISTEN y", "SELECT 'a\\'; LISTEN x; --'", `SET "a""b".c = 1`,
		"CREATE TEMP TABLE t ON COMMIT DROP", "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
		"EXPLAIN (ANALYZE) SELECT pg_advisory_lock(1)", "SELECT set_config(set_config(",
		"U&'\\0041' U&\"x\"", "$1$2$$", "-", "/", "$", "'", "\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, q []byte) {
		e := classifySQL(q)
		if !e.has(effSet) && e.n != 0 {
			t.Fatalf("%d parameters without effSet", e.n)
		}
		if e.has(effSet) && e.n == 0 {
			t.Fatal("effSet without a parameter")
		}
		if len(q) <= maxClassify-16 && bytes.IndexByte(q, 0) < 0 {
			// A statement that follows a finished one reads the same.
			if e.has(effUnknown) {
				t.Fatal("unknown for a short query")
			}
			e2 := classifySQL(append([]byte("SELECT 1;"), q...))
			if e2.eff != e.eff || fmt.Sprint(e2.changes()) != fmt.Sprint(e.changes()) {
				t.Fatalf("after SELECT 1: %s %v, alone: %s %v", effString(e2.eff), e2.changes(), effString(e.eff), e.changes())
			}
		}
	})
}

func BenchmarkClassifySQL(b *testing.B) {
	q := []byte("SELECT a, b, c FROM accounts WHERE id = $1 AND note <> 'x''y' -- by id\n")
	b.SetBytes(int64(len(q)))
	for b.Loop() {
		classifySQL(q)
	}
}
