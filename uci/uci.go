package uci

import (
	"fmt"
	"strconv"
	"strings"
)

// File is one UCI config file (one "package" in libuci's words).
type File struct {
	// Package is the name from a `package` statement, if the file has one.
	// It is informational only: libuci ignores the statement when it loads a
	// file from disk (the package name is the file name), and `uci commit`
	// does not write it, so neither does Write.
	Package string
	// Sections in file order. A repeated named section is merged into the
	// first, so each named section appears once.
	Sections []*Section

	// allocated counts the sections ever created, as libuci's n_section
	// does: it numbers the generated names of anonymous sections.
	allocated int
}

// Section is one `config <type> [<name>]` block.
type Section struct {
	Type string
	// Name is the section's name. An anonymous section gets the name libuci
	// generates for it (cfgNNHHHH, see AnonymousName), so that `uci show -X`
	// and Lookup agree with libuci; Anonymous tells the two kinds apart.
	Name      string
	Anonymous bool
	// Line is where the section's first `config` statement starts (0 for
	// sections built in code).
	Line    int
	Options []*Option
}

// Option is an `option` (one value) or a `list` (IsList, any number of
// values, in order).
type Option struct {
	Name   string
	Values []string
	IsList bool
	// Line is where the option's first value was set (0 for options built in
	// code); ValueLines holds the line of each of Values when parsed.
	Line       int
	ValueLines []int
}

// Error is a parse error: "file:line: what is wrong".
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.File == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Value returns the option's value; for a list, its items joined by one
// space, as `uci get` prints them.
func (o *Option) Value() string {
	if o == nil {
		return ""
	}
	return strings.Join(o.Values, " ")
}

// LineOf returns the line of Values[i], or Line when it is not known.
func (o *Option) LineOf(i int) int {
	if i >= 0 && i < len(o.ValueLines) && o.ValueLines[i] != 0 {
		return o.ValueLines[i]
	}
	return o.Line
}

// Lookup finds a section the way `uci get pkg.<ref>` does: ref is a section
// name (also the generated name of an anonymous section), or "@type[i]" for
// the i-th section of that type, counting from 0, with negative i counting
// from the end ("@type[-1]" is the last). "@[i]" counts sections of any type.
// It returns nil when there is no such section or ref is malformed.
func (f *File) Lookup(ref string) *Section {
	if ValidName(ref) {
		return f.section(ref)
	}
	typ, idx, ok := parseExtRef(ref)
	if !ok {
		return nil
	}
	var match []*Section
	for _, s := range f.Sections {
		if typ == "" || s.Type == typ {
			match = append(match, s)
		}
	}
	if idx < 0 {
		idx += len(match)
	}
	if idx < 0 || idx >= len(match) {
		return nil
	}
	return match[idx]
}

// parseExtRef splits "@type[i]" as libuci does: the type may be empty, the
// index is a decimal integer with an optional sign, and an empty index means 0.
func parseExtRef(ref string) (typ string, idx int, ok bool) {
	if !strings.HasPrefix(ref, "@") || !strings.HasSuffix(ref, "]") {
		return "", 0, false
	}
	body := ref[1 : len(ref)-1]
	i := strings.IndexByte(body, '[')
	if i < 0 {
		return "", 0, false
	}
	typ, num := body[:i], body[i+1:]
	if strings.IndexByte(num, ']') >= 0 || (typ != "" && !ValidType(typ)) {
		return "", 0, false
	}
	if num == "" {
		return typ, 0, true
	}
	n, err := strconv.Atoi(strings.TrimLeft(num, " \t\n\v\f\r"))
	if err != nil {
		return "", 0, false
	}
	return typ, n, true
}

// section returns the first section called name.
func (f *File) section(name string) *Section {
	for _, s := range f.Sections {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// SectionsOfType returns the sections of type t, in file order.
func (f *File) SectionsOfType(t string) []*Section {
	var out []*Section
	for _, s := range f.Sections {
		if s.Type == t {
			out = append(out, s)
		}
	}
	return out
}

// AddSection adds a section as `uci add` (name "") or `uci set pkg.name=type`
// would. A named section that already exists with the same type is returned
// as it is; with another type it is an error.
func (f *File) AddSection(typ, name string) (*Section, error) {
	if !ValidType(typ) {
		return nil, fmt.Errorf("invalid section type %q", typ)
	}
	if name != "" {
		if !ValidName(name) {
			return nil, fmt.Errorf("invalid section name %q", name)
		}
		if s := f.section(name); s != nil {
			if s.Type != typ {
				return nil, fmt.Errorf("section %q is of type %q, not %q", name, s.Type, typ)
			}
			return s, nil
		}
	}
	return f.newSection(typ, name, 0), nil
}

func (f *File) newSection(typ, name string, line int) *Section {
	if f.allocated < len(f.Sections) {
		f.allocated = len(f.Sections)
	}
	f.allocated++
	s := &Section{Type: typ, Name: name, Line: line}
	if name == "" {
		s.Anonymous = true
		s.Name = AnonymousName(f.allocated, typ)
	}
	f.Sections = append(f.Sections, s)
	return s
}

// AnonymousName is the name libuci gives the n-th section (counting from 1,
// named sections included) of a file when that section is anonymous and of
// type typ: "cfg", n as at least two hex digits, and four hex digits of a
// djb hash of the type (libuci hashes the options too, but it names the
// section when it has none yet).
func AnonymousName(n int, typ string) string {
	h := uint32(5381)
	for i := 0; i < len(typ); i++ {
		h = h*33 + uint32(typ[i])
	}
	return fmt.Sprintf("cfg%02x%04x", n, h&0xffff)
}

// Get returns the option called name, or nil.
func (s *Section) Get(name string) *Option {
	for _, o := range s.Options {
		if o.Name == name {
			return o
		}
	}
	return nil
}

func (s *Section) index(name string) int {
	for i, o := range s.Options {
		if o.Name == name {
			return i
		}
	}
	return -1
}

// Set sets option name to value as `uci set` does: an existing option or
// list of that name is replaced in place, and an empty value deletes it.
func (s *Section) Set(name, value string) error {
	if !ValidName(name) {
		return fmt.Errorf("invalid option name %q", name)
	}
	if err := checkValue(value); err != nil {
		return fmt.Errorf("option %s: %v", name, err)
	}
	if value == "" {
		s.Delete(name)
		return nil
	}
	s.set(name, value, 0)
	return nil
}

// set stores a non-empty string option the way libuci's uci_set does.
func (s *Section) set(name, value string, line int) {
	o := &Option{Name: name, Values: []string{value}, Line: line}
	if line != 0 {
		o.ValueLines = []int{line}
	}
	i := s.index(name)
	if i < 0 {
		s.Options = append(s.Options, o)
		return
	}
	old := s.Options[i]
	if !old.IsList && len(old.Values) == 1 && old.Values[0] == value {
		return // libuci leaves an unchanged option alone
	}
	s.Options[i] = o
}

// AddList appends value to list name as `uci add_list` does; an existing
// plain option of that name becomes a list holding its value first.
func (s *Section) AddList(name, value string) error {
	if !ValidName(name) {
		return fmt.Errorf("invalid option name %q", name)
	}
	if err := checkValue(value); err != nil {
		return fmt.Errorf("list %s: %v", name, err)
	}
	s.addList(name, value, 0)
	return nil
}

func (s *Section) addList(name, value string, line int) {
	i := s.index(name)
	if i < 0 {
		o := &Option{Name: name, IsList: true, Line: line}
		o.appendValue(value, line)
		s.Options = append(s.Options, o)
		return
	}
	o := s.Options[i]
	if !o.IsList {
		// libuci replaces the option by a new list, in the same place.
		l := &Option{Name: name, IsList: true, Line: o.Line}
		for j, v := range o.Values {
			l.appendValue(v, o.LineOf(j))
		}
		s.Options[i] = l
		o = l
	}
	o.appendValue(value, line)
}

func (o *Option) appendValue(v string, line int) {
	if line != 0 || o.ValueLines != nil {
		for len(o.ValueLines) < len(o.Values) {
			o.ValueLines = append(o.ValueLines, 0)
		}
		o.ValueLines = append(o.ValueLines, line)
	}
	o.Values = append(o.Values, v)
}

// Delete removes option name and reports whether it was there.
func (s *Section) Delete(name string) bool {
	i := s.index(name)
	if i < 0 {
		return false
	}
	s.Options = append(s.Options[:i], s.Options[i+1:]...)
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// ValidName reports whether s may name a section or an option:
// one or more of [A-Za-z0-9_].
func ValidName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' {
			return false
		}
	}
	return true
}

// ValidPackage reports whether s may name a package: [A-Za-z0-9_-]+.
func ValidPackage(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// ValidType reports whether s may be a section type: one or more printable
// ASCII characters other than space.
func ValidType(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// checkValue rejects what `uci set` rejects in a value: control characters
// other than tab, CR and LF (and so NUL).
func checkValue(v string) error {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 32 && c != '\t' && c != '\n' && c != '\r' {
			return fmt.Errorf("invalid control character 0x%02x in value", c)
		}
	}
	return nil
}
