package uci

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Parse reads a UCI file the way libuci loads /etc/config/<name> in strict
// mode; filename is only used in errors. The first problem in the text is
// returned as an *Error.
func Parse(filename string, r io.Reader) (*File, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filename, err)
	}
	return ParseBytes(filename, data)
}

// ParseBytes is Parse on a byte slice.
func ParseBytes(filename string, data []byte) (*File, error) {
	p := &parser{file: filename, data: data, f: &File{}}
	for i, c := range data {
		if c == '\n' {
			p.newlines = append(p.newlines, i)
		}
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, p.errorAt(i, "NUL byte in file")
	}
	if err := p.run(); err != nil {
		return nil, err
	}
	return p.f, nil
}

// parser follows libuci's file.c. libuci reads a physical line into a buffer
// and parses statements from it in place; a quoted string that runs past the
// end of the line, or a backslash before the newline, appends the next line
// to the buffer. Here the buffer is the window [start, end) of data, and
// "end of buffer" is reading at end. Where libuci's in-place parsing leaves
// traces that change the meaning of a line (see parseStr), they are kept.
type parser struct {
	file     string
	data     []byte
	newlines []int // offsets of '\n', for line numbers

	pos     int // next byte to read
	end     int // end of the buffer; less than physEnd once a line is cut short
	physEnd int // end of the last physical line read

	f   *File
	cur *Section // the section option and list statements go to
}

// char is the byte at i, or 0 at the end of the buffer (libuci's NUL).
func (p *parser) char(i int) byte {
	if i >= p.end {
		return 0
	}
	return p.data[i]
}

// getln appends the next physical line to the buffer at pos, as libuci's
// uci_getln(ctx, pos) does: whatever was left of the buffer at pos (the
// newline after a backslash) is dropped.
func (p *parser) getln() bool {
	p.pos = p.physEnd
	if p.physEnd >= len(p.data) {
		p.end = p.physEnd
		return false
	}
	p.physEnd = p.lineEnd(p.physEnd)
	p.end = p.physEnd
	return true
}

// lineEnd returns the offset after the newline that ends the line at i, or
// len(data).
func (p *parser) lineEnd(i int) int {
	if j := bytes.IndexByte(p.data[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(p.data)
}

// lineAt is the 1-based line number of offset i.
func (p *parser) lineAt(i int) int {
	return sort.SearchInts(p.newlines, i) + 1
}

// errorAt makes an error for offset i. An offset past the buffer's final
// newline (an argument found missing at the end of the line) is blamed on
// that line, not the next.
func (p *parser) errorAt(i int, format string, args ...any) *Error {
	if i >= p.physEnd && p.physEnd > 0 {
		i = p.physEnd - 1
	}
	return &Error{File: p.file, Line: p.lineAt(i), Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) run() error {
	for p.physEnd < len(p.data) {
		p.pos = p.physEnd
		p.physEnd = p.lineEnd(p.pos)
		p.end = p.physEnd
		if err := p.parseLine(); err != nil {
			return err
		}
	}
	return nil
}

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func (p *parser) skipSpace() {
	for c := p.char(p.pos); c != 0 && isSpace(c); c = p.char(p.pos) {
		p.pos++
	}
}

// parseLine parses the statements of one buffer. Statements are separated
// by ';'; the command word is found as strtok(" \t") finds it, so only
// blanks and tabs end it.
func (p *parser) parseLine() error {
	p.skipSpace()
	for {
		for c := p.char(p.pos); c == ' ' || c == '\t'; c = p.char(p.pos) {
			p.pos++
		}
		if p.pos >= p.end {
			return nil
		}
		start := p.pos
		for c := p.char(p.pos); c != 0 && c != ' ' && c != '\t'; c = p.char(p.pos) {
			p.pos++
		}
		word := string(p.data[start:p.pos])
		// A command word must be followed by a blank or a tab: libuci steps
		// over the byte strtok cut, and fails if the word ended the buffer.
		delim := p.pos < p.end
		if delim {
			p.pos++
		}
		var err error
		switch word {
		case "p", "package":
			err = p.parsePackage(start, delim)
		case "c", "config":
			err = p.parseConfig(start, delim)
		case "o", "option":
			err = p.parseOption(start, delim, false)
		case "l", "list":
			err = p.parseOption(start, delim, true)
		default:
			if word[0] == '#' {
				return nil
			}
			// libuci says "invalid command" to all of these; be clearer.
			w := strings.TrimRight(word, " \t\n\v\f\r")
			switch w {
			case "":
				// libuci has this after a quoted argument: `option a 'b';`
				return p.errorAt(start, "nothing after \";\" (leave it out at the end of a line)")
			case "p", "package":
				return p.errorAt(start, "package without name")
			case "c", "config":
				return p.errorAt(start, "config without type")
			case "o", "option":
				return p.errorAt(start, "option without name")
			case "l", "list":
				return p.errorAt(start, "list without name")
			}
			return p.errorAt(start, "invalid command %q", w)
		}
		if err != nil {
			return err
		}
	}
}

// arg is one argument of a statement and where it started.
type arg struct {
	s   string
	pos int
}

// nextArg reads one argument. A ';' where an argument would start ends the
// statement and counts as an empty argument.
func (p *parser) nextArg() (arg, error) {
	p.skipSpace()
	a := arg{pos: p.pos}
	if p.char(p.pos) == ';' {
		p.pos++
		return a, nil
	}
	s, err := p.parseStr()
	a.s = s
	return a, err
}

// parseStr reads one argument made of unquoted, '…' and "…" pieces.
//
// libuci decodes in place and writes a NUL after what it decoded. When
// nothing in the argument was quoted or escaped, that NUL lands on the byte
// that stopped it; if that byte was ';', the rest of the buffer is lost. So
// `option a b;option c d` sets only a, while `option a 'b';option c d` sets
// both. This is kept, so that a file means here what it means to libuci.
func (p *parser) parseStr() (string, error) {
	var out []byte
	decoded := false // a quote or backslash made the output shorter
loop:
	for {
		switch c := p.char(p.pos); c {
		case '\'':
			decoded = true
			if err := p.singleQuote(&out); err != nil {
				return "", err
			}
		case '"':
			decoded = true
			if err := p.doubleQuote(&out); err != nil {
				return "", err
			}
		case '#':
			p.end = p.pos // a comment: the rest of the line is dropped
			break loop
		case 0:
			break loop
		case ';':
			if !decoded {
				p.end = p.pos
			}
			return string(out), nil
		case '\\':
			decoded = true
			if p.backslash() {
				out = append(out, p.data[p.pos])
				p.pos++
			}
		default:
			out = append(out, c)
			p.pos++
		}
		if c := p.char(p.pos); c == 0 || isSpace(c) {
			break
		}
	}
	if p.char(p.pos) != 0 {
		p.pos++ // the blank that ended the argument
	}
	return string(out), nil
}

// backslash handles a '\' at pos. A backslash that ends the line (before LF,
// CR LF, or the end of the file) joins the next line on and reports false;
// otherwise pos is left on the escaped byte, to be taken literally.
func (p *parser) backslash() bool {
	p.pos++
	c := p.char(p.pos)
	if c == 0 || c == '\n' || (c == '\r' && p.char(p.pos+1) == '\n' && p.char(p.pos+2) == 0) {
		p.getln()
		return false
	}
	return true
}

// singleQuote reads '…': every byte up to the next ' is taken as it is,
// newlines included.
func (p *parser) singleQuote(out *[]byte) error {
	open := p.pos
	p.pos++
	for {
		switch c := p.char(p.pos); c {
		case '\'':
			p.pos++
			return nil
		case 0:
			if !p.getln() {
				return p.errorAt(open, "unterminated ' quote")
			}
		default:
			*out = append(*out, c)
			p.pos++
		}
	}
}

// doubleQuote reads "…": '\' takes the next byte as it is (so \" and \\),
// and a backslash before the end of a line joins the next line on.
func (p *parser) doubleQuote(out *[]byte) error {
	open := p.pos
	p.pos++
	for {
		switch c := p.char(p.pos); c {
		case '"':
			p.pos++
			return nil
		case 0:
			if !p.getln() {
				return p.errorAt(open, "unterminated \" quote")
			}
		case '\\':
			if p.backslash() {
				*out = append(*out, p.data[p.pos])
				p.pos++
			}
		default:
			*out = append(*out, c)
			p.pos++
		}
	}
}

// endStatement reads one more argument, which must be empty (libuci's
// assert_eol in strict mode).
func (p *parser) endStatement() error {
	a, err := p.nextArg()
	if err != nil {
		return err
	}
	if a.s != "" {
		return p.errorAt(a.pos, "too many arguments (unexpected %q)", a.s)
	}
	return nil
}

// required reads an argument that must not be empty.
func (p *parser) required(delim bool, what string) (arg, error) {
	if !delim {
		return arg{}, p.errorAt(p.pos, "%s", what)
	}
	a, err := p.nextArg()
	if err != nil {
		return a, err
	}
	if a.s == "" {
		return a, p.errorAt(a.pos, "%s", what)
	}
	return a, nil
}

func (p *parser) parsePackage(start int, delim bool) error {
	name, err := p.required(delim, "package without name")
	if err != nil {
		return err
	}
	if !ValidPackage(name.s) {
		return p.errorAt(name.pos, "invalid package name %q", name.s)
	}
	if err := p.endStatement(); err != nil {
		return err
	}
	if p.f.Package == "" {
		p.f.Package = name.s
	}
	return nil
}

func (p *parser) parseConfig(start int, delim bool) error {
	typ, err := p.required(delim, "config without type")
	if err != nil {
		return err
	}
	if !ValidType(typ.s) {
		return p.errorAt(typ.pos, "invalid section type %q", typ.s)
	}
	name, err := p.nextArg()
	if err != nil {
		return err
	}
	if name.s != "" && !ValidName(name.s) {
		return p.errorAt(name.pos, "invalid section name %q", name.s)
	}
	if err := p.endStatement(); err != nil {
		return err
	}
	line := p.lineAt(start)
	if name.s == "" {
		p.cur = p.f.newSection(typ.s, "", line)
		return nil
	}
	// A repeated name continues the section, even the generated name of an
	// anonymous one.
	if s := p.f.section(name.s); s != nil {
		if s.Type != typ.s {
			return p.errorAt(start, "section %q redefined with type %q (it is of type %q, line %d)",
				name.s, typ.s, s.Type, s.Line)
		}
		p.cur = s
		return nil
	}
	p.cur = p.f.newSection(typ.s, name.s, line)
	return nil
}

func (p *parser) parseOption(start int, delim, list bool) error {
	cmd := "option"
	if list {
		cmd = "list"
	}
	if p.cur == nil {
		return p.errorAt(start, "%s before the first section", cmd)
	}
	name, err := p.required(delim, cmd+" without name")
	if err != nil {
		return err
	}
	if !ValidName(name.s) {
		return p.errorAt(name.pos, "invalid option name %q", name.s)
	}
	value, err := p.nextArg()
	if err != nil {
		return err
	}
	if err := p.endStatement(); err != nil {
		return err
	}
	if err := checkValue(value.s); err != nil {
		return p.errorAt(value.pos, "%s %s: %v", cmd, name.s, err)
	}
	line := p.lineAt(start)
	switch {
	case list:
		p.cur.addList(name.s, value.s, line)
	case value.s != "":
		p.cur.set(name.s, value.s, line)
	default:
		// libuci takes `option name ''` as "set to nothing": it changes
		// nothing, not even an earlier value.
	}
	return nil
}
