package uci

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// same reports whether a and b hold the same sections and options, lines
// aside.
func same(a, b *File) bool {
	if len(a.Sections) != len(b.Sections) {
		return false
	}
	for i, s := range a.Sections {
		t := b.Sections[i]
		if s.Type != t.Type || s.Name != t.Name || s.Anonymous != t.Anonymous || len(s.Options) != len(t.Options) {
			return false
		}
		for j, o := range s.Options {
			p := t.Options[j]
			if o.Name != p.Name || o.IsList != p.IsList || len(o.Values) != len(p.Values) {
				return false
			}
			for k := range o.Values {
				if o.Values[k] != p.Values[k] {
					return false
				}
			}
		}
	}
	return true
}

// roundTrip checks that f writes, parses back to the same thing, and writes
// the same bytes again.
func roundTrip(t testing.TB, f *File) {
	t.Helper()
	out, err := Marshal(f)
	if err != nil {
		t.Fatalf("Marshal: %v\n%s", err, show(f))
	}
	g, err := ParseBytes("written", out)
	if err != nil {
		t.Fatalf("parsing what Write wrote: %v\n%q", err, out)
	}
	if !same(f, g) {
		t.Fatalf("round trip changed the file:\nbefore %s\nafter  %s\nwritten %q", show(f), show(g), out)
	}
	again, err := Marshal(g)
	if err != nil || !bytes.Equal(out, again) {
		t.Fatalf("second write differs (%v):\n%q\n%q", err, out, again)
	}
}

func TestWriteFormat(t *testing.T) {
	in := "package pgwrt\n" +
		"# comments are lost, as with uci commit\n" +
		"config pgwrt main\n" +
		"\toption listen \"127.0.0.1:6432\"\n" +
		"\toption password 'it'\\''s \"x\"'\n" +
		"config backend\n" +
		"\tlist host a\n" +
		"\tlist host 'b c'\n" +
		"\toption text 'two\n" +
		"lines'\n" +
		"config odd.type-1\n"
	f, err := ParseBytes("f", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := "\n" +
		"config pgwrt 'main'\n" +
		"\toption listen '127.0.0.1:6432'\n" +
		"\toption password 'it'\\''s \"x\"'\n" +
		"\n" +
		"config backend\n" +
		"\tlist host 'a'\n" +
		"\tlist host 'b c'\n" +
		"\toption text 'two\n" +
		"lines'\n" +
		"\n" +
		"config odd.type-1\n" +
		"\n"
	var b bytes.Buffer
	if err := Write(&b, f); err != nil {
		t.Fatal(err)
	}
	if b.String() != want {
		t.Fatalf("Write:\n%q\nwant\n%q", b.String(), want)
	}
	roundTrip(t, f)
}

func TestWriteEmpty(t *testing.T) {
	out, err := Marshal(&File{})
	if err != nil || string(out) != "\n" {
		t.Fatalf("Marshal(empty) = %q, %v", out, err)
	}
}

func TestWriteQuotesOddTypes(t *testing.T) {
	f := &File{}
	for _, typ := range []string{`a'b`, `a"b`, `a\b`, `a#b`, `a;b`, `#`} {
		if _, err := f.AddSection(typ, ""); err != nil {
			t.Fatal(err)
		}
	}
	out, _ := Marshal(f)
	if !strings.Contains(string(out), "\nconfig 'a'\\''b'\n") {
		t.Errorf("quote in a type not quoted: %q", out)
	}
	roundTrip(t, f)
}

func TestWriteRefusesWhatWouldNotReadBack(t *testing.T) {
	sec := func(o ...*Option) *File {
		return &File{Sections: []*Section{{Type: "t", Name: "n", Options: o}}}
	}
	for name, f := range map[string]*File{
		"bad type":        {Sections: []*Section{{Type: "a b", Anonymous: true}}},
		"empty type":      {Sections: []*Section{{Type: "", Anonymous: true}}},
		"bad name":        {Sections: []*Section{{Type: "t", Name: "a-b"}}},
		"empty name":      {Sections: []*Section{{Type: "t", Name: ""}}},
		"name twice":      {Sections: []*Section{{Type: "t", Name: "a"}, {Type: "t", Name: "a"}}},
		"bad option name": sec(&Option{Name: "a.b", Values: []string{"x"}}),
		"option twice":    sec(&Option{Name: "a", Values: []string{"x"}}, &Option{Name: "a", Values: []string{"y"}}),
		"empty option":    sec(&Option{Name: "a", Values: []string{""}}),
		"no value":        sec(&Option{Name: "a"}),
		"two values":      sec(&Option{Name: "a", Values: []string{"x", "y"}}),
		"control char":    sec(&Option{Name: "a", Values: []string{"x\x00"}, IsList: true}),
	} {
		var b bytes.Buffer
		if err := Write(&b, f); err == nil || b.Len() != 0 {
			t.Errorf("%s: Write = %v, wrote %q", name, err, b.String())
		}
	}
	// An empty list is left out, as libuci does.
	out, err := Marshal(sec(&Option{Name: "a", IsList: true}))
	if err != nil || string(out) != "\nconfig t 'n'\n\n" {
		t.Errorf("empty list: %q, %v", out, err)
	}
}

func TestEdit(t *testing.T) {
	f, err := ParseBytes("f", []byte("config t x\noption a 1\noption b 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.AddSection("t", "x")
	if err != nil || s != f.Sections[0] {
		t.Fatalf("AddSection(existing) = %v, %v", s, err)
	}
	if _, err := f.AddSection("u", "x"); err == nil {
		t.Error("AddSection with another type: no error")
	}
	if _, err := f.AddSection("t", "a-b"); err == nil {
		t.Error("AddSection with a bad name: no error")
	}
	if _, err := f.AddSection("a b", ""); err == nil {
		t.Error("AddSection with a bad type: no error")
	}
	an, err := f.AddSection("u", "")
	if err != nil || !an.Anonymous || an.Name != AnonymousName(2, "u") {
		t.Fatalf("AddSection(anonymous) = %+v, %v", an, err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.Set("a", "3"))     // replaced in place
	must(s.AddList("b", "4")) // b becomes a list
	must(s.AddList("c", "5"))
	must(s.Set("b", ""))  // deletes
	must(s.Set("zz", "")) // nothing to delete
	must(an.Set("k", "it's"))
	if s.Set("a.b", "x") == nil || s.Set("a", "\x01") == nil || s.AddList("a b", "x") == nil || s.AddList("a", "\x02") == nil {
		t.Error("bad names or values accepted")
	}
	if !s.Delete("c") || s.Delete("c") {
		t.Error("Delete")
	}
	must(s.AddList("c", "6"))
	want := "t x: a=\"3\" c=[\"6\"]\nu @" + an.Name + ": k=\"it's\""
	if got := show(f); got != want {
		t.Fatalf("after edits:\n%s\nwant\n%s", got, want)
	}
	roundTrip(t, f)

	// A list made from an option keeps the option's line for its first item.
	g, _ := ParseBytes("g", []byte("config t n\noption a 1\n"))
	must(g.Sections[0].AddList("a", "2"))
	if o := g.Sections[0].Get("a"); o.Line != 2 || o.LineOf(0) != 2 || o.LineOf(1) != 2 {
		t.Errorf("lines %d %v", o.Line, o.ValueLines)
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pgwrt")
	f, err := ParseBytes("f", []byte("config t n\noption a 'b'\n"))
	if err != nil {
		t.Fatal(err)
	}

	// A new file is private.
	if err := WriteFile(path, f); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new file: %v %v", st.Mode(), err)
	}
	got, err := ReadFile(path)
	if err != nil || !same(f, got) {
		t.Fatalf("ReadFile: %v %s", err, show(got))
	}

	// An existing file keeps its mode; a symlink is written through.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("pgwrt", link); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(f.Sections[0].Set("a", "c"))
	must(WriteFile(link, f))
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink replaced: %v %v", fi.Mode(), err)
	}
	st, _ = os.Stat(path)
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	data, _ := os.ReadFile(path)
	if string(data) != "\nconfig t 'n'\n\toption a 'c'\n\n" {
		t.Errorf("content %q", data)
	}

	// Nothing is left behind, and a refused File leaves the old file alone.
	bad := &File{Sections: []*Section{{Type: "t", Name: "a-b"}}}
	if err := WriteFile(path, bad); err == nil {
		t.Error("WriteFile(bad) succeeded")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("files left: %v", ents)
	}
	if data2, _ := os.ReadFile(path); !bytes.Equal(data, data2) {
		t.Error("refused write changed the file")
	}

	if _, err := ReadFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("ReadFile(missing) succeeded")
	}
	if err := WriteFile(filepath.Join(dir, "no", "such", "dir"), f); err == nil {
		t.Error("WriteFile into a missing directory succeeded")
	}
}
