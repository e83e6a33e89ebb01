package uci

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// show renders a File compactly for table tests: one line per section,
// "type name: opt=value list=[v v]", anonymous names shown as @cfgNNHHHH.
func show(f *File) string {
	var lines []string
	for _, s := range f.Sections {
		var b strings.Builder
		b.WriteString(s.Type)
		if s.Anonymous {
			b.WriteString(" @" + s.Name)
		} else {
			b.WriteString(" " + s.Name)
		}
		b.WriteString(":")
		for _, o := range s.Options {
			if o.IsList {
				q := make([]string, len(o.Values))
				for i, v := range o.Values {
					q[i] = fmt.Sprintf("%q", v)
				}
				fmt.Fprintf(&b, " %s=[%s]", o.Name, strings.Join(q, " "))
			} else {
				fmt.Fprintf(&b, " %s=%q", o.Name, o.Values[0])
			}
		}
		lines = append(lines, b.String())
	}
	return strings.Join(lines, "\n")
}

func anon(n int, typ string) string { return "@" + AnonymousName(n, typ) }

// The results of parseCases, and that parseErrorCases are errors, were
// checked against libuci itself (strict uci_import of the same bytes),
// including the odd ones marked "libuci:". Only the control character and
// NUL cases are errors here and not in libuci.
var parseCases = []struct {
	name string
	in   string
	want string
}{
	{"empty", "", ""},
	{"blank and comments", "\n# one\n   # two\n\t\n", ""},
	{"named section", "config foo 'bar'\n\toption a 'x'\n", `foo bar: a="x"`},
	{"anonymous section", "config foo\n\toption a x\n", "foo " + anon(1, "foo") + `: a="x"`},
	{"anonymous counter counts named sections", "config t n\nconfig t\n",
		"t n:\nt " + anon(2, "t") + ":"},
	{"empty quoted name is anonymous", "config t ''\n", "t " + anon(1, "t") + ":"},
	{"abbreviated commands", "c t n\no a b\nl c d\nl c e\n", `t n: a="b" c=["d" "e"]`},
	{"unquoted, bare words", "config t n\noption a http://x:1/y?z=1&w\n", `t n: a="http://x:1/y?z=1&w"`},
	{"unquoted escapes", "config t n\noption a x\\ y\\'z\\\\\n", `t n: a="x y'z\\"`},
	{"single quotes are literal", "config t n\noption a 'x\\y \"z\"'\n", `t n: a="x\\y \"z\""`},
	{"double quotes escape", "config t n\noption a \"x\\\"y\\\\z\\n'q'\"\n", `t n: a="x\"y\\zn'q'"`},
	{"pieces concatenate", "config t n\noption a 'a'\"b\"c'd e'\n", `t n: a="abcd e"`},
	{"single quotes span lines", "config t n\noption a 'x\n  y\\\nz'\noption b c\n", `t n: a="x\n  y\\\nz" b="c"`},
	{"double quotes span lines", "config t n\noption a \"x\ny\"\n", `t n: a="x\ny"`},
	{"backslash newline inside double quotes joins", "config t n\noption a \"x \\\ny\"\n", `t n: a="x y"`},
	{"backslash newline joins an unquoted word", "config t n\noption a foo\\\nbar\n", `t n: a="foobar"`},
	{"backslash newline between arguments", "config t n\noption a \\\nbar\n", `t n: a="bar"`},
	{"backslash at end of file", "config t n\noption a foo\\", `t n: a="foo"`},
	{"CRLF lines", "config t n\r\n\toption a b\r\n\tlist c 'd'\r\n", `t n: a="b" c=["d"]`},
	{"CRLF continuation", "config t n\r\noption a foo\\\r\nbar\r\n", `t n: a="foobar"`},
	{"CR kept inside quotes", "config t n\r\noption a 'x\r\ny'\r\n", `t n: a="x\r\ny"`},
	{"no final newline", "config t n\noption a b", `t n: a="b"`},
	{"tabs and blanks", "\t config\t t \t n \noption\ta\t\tb\t\n", `t n: a="b"`},
	{"comment after a statement", "config t n # c\noption a b # c 'd\n", `t n: a="b"`},
	{"# ends an unquoted word", "config t n\noption a b#c d\n", `t n: a="b"`},
	{"# inside quotes", "config t n\noption a '#b' # c\n", `t n: a="#b"`},
	{"option whose value is a comment does nothing", "config t n\noption color #fff\n", "t n:"},
	{"# as a command word", "config t n\n#option a b\n", "t n:"},
	{"; after a quoted argument", "config t 'n'; option a 'b'; option c d\n", `t n: a="b" c="d"`},
	{"; after a blank", "config t n ; option a b ; option c d\n", `t n: a="b" c="d"`},
	// libuci: a ';' right after an argument that had nothing quoted or
	// escaped ends the line, and the rest is lost.
	{"; after a bare argument drops the rest", "config t n\noption a b;option c d\n", `t n: a="b"`},
	{"; after a bare type drops the rest", "config t;option a b\n", "t " + anon(1, "t") + ":"},
	{"; ending a line after a bare word", "config t n\noption a b;\n", `t n: a="b"`},
	{"escaped ;", "config t n\noption a b\\;c\n", `t n: a="b;c"`},
	// libuci: a ';' in place of an argument ends the statement, and the
	// next argument is then checked as an extra one.
	{"; in place of a value", "config t n\noption a ; # c\n", "t n:"},
	{"repeated section merges", "config t s\noption a 1\nconfig t x\nconfig t s\noption b 2\n",
		`t s: a="1" b="2"` + "\nt x:"},
	{"repeated option replaces in place", "config t n\noption a 1\noption b 2\noption a 3\n", `t n: a="3" b="2"`},
	{"list after option extends it", "config t n\noption a 1\noption z 0\nlist a 2\n", `t n: a=["1" "2"] z="0"`},
	{"option after list replaces it", "config t n\nlist a 1\nlist a 2\noption a 3\n", `t n: a="3"`},
	{"empty option changes nothing", "config t n\noption a 1\noption a ''\noption b\n", `t n: a="1"`},
	{"empty list items are kept", "config t n\nlist a ''\nlist a\n", `t n: a=["" ""]`},
	{"empty extra argument is allowed", "config t n\noption a b ''\n", `t n: a="b"`},
	{"generated name continues an anonymous section",
		"config t\noption a 1\nconfig t " + AnonymousName(1, "t") + "\noption b 2\n",
		"t " + anon(1, "t") + `: a="1" b="2"`},
	{"type may hold punctuation", "config 'a.b-c:d@[0]' x\n", "a.b-c:d@[0] x:"},
	{"package statement", "package my-pkg\nconfig t n\n", "t n:"},
	{"utf-8 and DEL in values", "config t n\noption a 'é\x7f'\n", `t n: a="é\x7f"`},
	{"tab in a value", "config t n\noption a 'x\ty'\n", `t n: a="x\ty"`},
}

func TestParse(t *testing.T) {
	for _, tt := range parseCases {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseBytes("test", []byte(tt.in))
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if got := show(f); got != tt.want {
				t.Fatalf("Parse(%q):\n got %s\nwant %s", tt.in, got, tt.want)
			}
			roundTrip(t, f)
		})
	}
}

var parseErrorCases = []struct {
	name string
	in   string
	want string // "line: message"
}{
	{"option outside a section", "option a b\n", `1: option before the first section`},
	{"list outside a section", "\n\nlist a b\n", `3: list before the first section`},
	{"unknown command", "config t n\nfoo bar\n", `2: invalid command "foo"`},
	{"glued command", "config t n\noptiona b\n", `2: invalid command "optiona"`},
	{"command with quotes", "'config' t\n", `1: invalid command "'config'"`},
	{"command alone on a line", "config t n\n  option\n", `2: option without name`},
	{"command alone at end of file", "config", `1: config without type`},
	{"command alone CRLF", "config\r\n", `1: config without type`},
	{"config without type", "config \n", `1: config without type`},
	{"config with empty type", "config '' n\n", `1: config without type`},
	{"bad type", "config 'a b' n\n", `1: invalid section type "a b"`},
	{"non-ASCII type", "config é\n", `1: invalid section type "é"`},
	{"bad section name", "config t a-b\n", `1: invalid section name "a-b"`},
	{"bad section name with dot", "config t 'a.b'\n", `1: invalid section name "a.b"`},
	{"config with too many arguments", "config t n x\n", `1: too many arguments (unexpected "x")`},
	{"option without name", "config t n\noption\t\n", `2: option without name`},
	{"option with empty name", "config t n\noption '' b\n", `2: option without name`},
	{"bad option name", "config t n\noption a.b c\n", `2: invalid option name "a.b"`},
	{"option with too many arguments", "config t n\noption a b c\n", `2: too many arguments (unexpected "c")`},
	{"list with too many arguments", "config t n\nlist a b c\n", `2: too many arguments (unexpected "c")`},
	{"extra argument after ;", "config t n\noption a ; option b c\n", `2: too many arguments (unexpected "option")`},
	{"; ending a line after a quoted word", "config t n\noption a 'b';\n", `2: nothing after ";" (leave it out at the end of a line)`},
	{"continued line starting with a blank", "config t n\noption a foo\\\n bar\n", `3: too many arguments (unexpected "bar")`},
	{"package without name", "package\n", `1: package without name`},
	{"bad package name", "package a.b\n", `1: invalid package name "a.b"`},
	{"package with too many arguments", "package a b\n", `1: too many arguments (unexpected "b")`},
	{"unterminated single quote", "config t n\noption a 'b\n\n\n", `2: unterminated ' quote`},
	{"unterminated double quote", "config t n\n\noption a \"b\\\"\n", `3: unterminated " quote`},
	{"unterminated quote in a comment-looking line", "config t n\noption a '#b\n", `2: unterminated ' quote`},
	{"section redefined with another type", "config t s\nconfig u s\n",
		`2: section "s" redefined with type "u" (it is of type "t", line 1)`},
	{"anonymous name redefined with another type", "config t\nconfig u " + AnonymousName(1, "t") + "\n",
		`2: section "` + AnonymousName(1, "t") + `" redefined with type "u" (it is of type "t", line 1)`},
	{"control character in a value", "config t n\noption a 'x\x01'\n", `2: option a: invalid control character 0x01 in value`},
	{"escape in a list value", "config t n\nlist a \"x\x1by\"\n", `2: list a: invalid control character 0x1b in value`},
	{"NUL byte", "config t n\n# \x00\n", `2: NUL byte in file`},
	{"error on a later statement of a line", "config t 'n'; option a 'b'; bogus\n", `1: invalid command "bogus"`},
	{"error line inside a multi-line value", "config t n\noption a 'x\ny' z\n", `3: too many arguments (unexpected "z")`},
}

func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			f, err := ParseBytes("test.conf", []byte(tt.in))
			if err == nil {
				t.Fatalf("Parse(%q) = %s, want error %s", tt.in, show(f), tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q): error %v is %T, not *Error", tt.in, err, err)
			}
			if got := fmt.Sprintf("%d: %s", pe.Line, pe.Msg); got != tt.want {
				t.Fatalf("Parse(%q):\n got %s\nwant %s", tt.in, got, tt.want)
			}
			if want := "test.conf:" + tt.want; err.Error() != want {
				t.Fatalf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestParseLines(t *testing.T) {
	in := "package p\n" +
		"config t a\n" + // 2
		"\toption x '1\n2'\n" + // 3-4
		"\tlist l p\n" + // 5
		"\n" +
		"config t\n" + // 7
		"\toption y z\n" + // 8
		"config t a\n" + // 9
		"\tlist l q; option x 3\n" + // 10
		"\toption w v\n" + // 11
		"\toption w v\n" // 12: unchanged, keeps line 11
	f, err := ParseBytes("f", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if f.Package != "p" {
		t.Errorf("Package = %q", f.Package)
	}
	a, anon := f.Lookup("a"), f.Lookup("@t[1]")
	if a == nil || anon == nil {
		t.Fatalf("sections: %s", show(f))
	}
	if a.Line != 2 || anon.Line != 7 {
		t.Errorf("section lines %d %d, want 2 7", a.Line, anon.Line)
	}
	check := func(o *Option, line int, lines ...int) {
		t.Helper()
		if o == nil {
			t.Fatal("missing option")
		}
		if o.Line != line || fmt.Sprint(o.ValueLines) != fmt.Sprint(lines) {
			t.Errorf("%s: Line %d ValueLines %v, want %d %v", o.Name, o.Line, o.ValueLines, line, lines)
		}
	}
	// Line 10 does not set x again: the bare q before ';' drops the rest of
	// the line, as in libuci.
	check(a.Get("x"), 3, 3)
	check(a.Get("l"), 5, 5, 10)
	check(a.Get("w"), 11, 11)
	check(anon.Get("y"), 8, 8)
	if got := a.Get("l").LineOf(1); got != 10 {
		t.Errorf("LineOf(1) = %d", got)
	}
}

func TestAnonymousName(t *testing.T) {
	// Names as OpenWrt's `uci show -X` prints them for stock configs.
	for _, tt := range []struct {
		n    int
		typ  string
		want string
	}{
		{1, "defaults", "cfg01e63d"},
		{2, "zone", "cfg02dc81"},
		{3, "zone", "cfg03dc81"},
		{1, "dnsmasq", "cfg01411c"},
		{300, "zone", "cfg12cdc81"},
	} {
		if got := AnonymousName(tt.n, tt.typ); got != tt.want {
			t.Errorf("AnonymousName(%d, %q) = %s, want %s", tt.n, tt.typ, got, tt.want)
		}
	}
}

func TestLookup(t *testing.T) {
	f, err := ParseBytes("f", []byte(
		"config a x\nconfig b\nconfig a\nconfig b y\nconfig a\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Sections
	for _, tt := range []struct {
		ref  string
		want *Section
	}{
		{"x", s[0]},
		{"y", s[3]},
		{"nope", nil},
		{AnonymousName(2, "b"), s[1]},
		{"@a[0]", s[0]},
		{"@a[1]", s[2]},
		{"@a[2]", s[4]},
		{"@a[3]", nil},
		{"@a[-1]", s[4]},
		{"@a[-3]", s[0]},
		{"@a[-4]", nil},
		{"@b[+1]", s[3]},
		{"@a[]", s[0]},
		{"@[1]", s[1]},
		{"@[-1]", s[4]},
		{"@c[0]", nil},
		{"@a", nil},
		{"@a[0", nil},
		{"@a[0]x", nil},
		{"@a[x]", nil},
		{"@a[0]]", nil},
		{"a[0]", nil},
		{"", nil},
		{"@a b[0]", nil},
	} {
		if got := f.Lookup(tt.ref); got != tt.want {
			t.Errorf("Lookup(%q) = %v, want %v", tt.ref, got, tt.want)
		}
	}
	if got := f.SectionsOfType("a"); len(got) != 3 || got[1] != s[2] {
		t.Errorf("SectionsOfType(a) = %v", got)
	}
	if got := f.SectionsOfType("zzz"); got != nil {
		t.Errorf("SectionsOfType(zzz) = %v", got)
	}
}

func TestOptionValue(t *testing.T) {
	f, err := ParseBytes("f", []byte("config t n\noption a 'x y'\nlist l 1\nlist l 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Lookup("n")
	if got := s.Get("a").Value(); got != "x y" {
		t.Errorf("a = %q", got)
	}
	if got := s.Get("l").Value(); got != "1 2" {
		t.Errorf("l = %q", got)
	}
	if s.Get("zz") != nil || s.Get("zz").Value() != "" {
		t.Errorf("missing option")
	}
}

func TestParseReadError(t *testing.T) {
	_, err := Parse("f", errReader{})
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("got %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("boom") }
