package config

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// LoadTOML reads, decodes and validates the TOML file at path (on Linux
// /etc/pgwrt/pgwrt.toml). See ParseTOML.
func LoadTOML(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseTOML(path, data)
}

// ParseTOML decodes data, the TOML text of the file called name, on top of
// Default() and validates the result. Every option left out keeps its
// default; a [[backend]] without port gets 5432 and one without name is
// called host:port.
//
// The error, if any, holds one *Error per problem (see Errors), each
// printed "name:line: option: what is wrong". Syntax errors, unknown
// options and values of the wrong type stop before validation; validation
// reports everything it finds.
func ParseTOML(name string, data []byte) (*Config, error) {
	text := string(data)

	// Pass 1: syntax, into plain maps.
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		return nil, syntaxError(name, text, err)
	}

	// Pass 2: every key known, every value of the right type. The decoder
	// would stop at the first wrong type and could not say which
	// [[backend]] it was in; this walk can, with the line index.
	ix := indexLines(text)
	var errs errorList
	checkTable(&errs, name, ix, raw, reflect.TypeFor[Config](), "", "")
	if len(errs) > 0 {
		return nil, errs.err()
	}

	// Pass 3: decode for real.
	c := Default()
	md, err := toml.Decode(text, c)
	if err != nil { // pass 2 should have caught it
		return nil, &Error{File: name, Msg: err.Error()}
	}
	for _, k := range dedupKeys(md.Undecoded()) {
		lines := ix.seen[strings.Join(k, ".")]
		if len(lines) == 0 {
			lines = []int{0}
		}
		for _, n := range lines {
			errs.add(name, n, strings.Join(k, "."), "unknown option")
		}
	}
	if len(errs) > 0 {
		return nil, errs.err()
	}

	c.Source = name
	c.index = ix
	for i := range c.Backends {
		b := &c.Backends[i]
		b.Line = ix.line(fmt.Sprintf("backend[%d]", i))
		if !hasKey(raw, "backend", i, "port") {
			b.Port = 5432
		}
		if b.Name == "" {
			b.Name = b.Addr()
		}
	}
	for i := range c.HBA {
		c.HBA[i].Line = ix.line(fmt.Sprintf("hba[%d]", i))
	}
	for i := range c.Users {
		c.Users[i].Line = ix.line(fmt.Sprintf("user[%d]", i))
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// syntaxError turns the TOML parser's error into an *Error. The line is
// counted from the error's byte offset: the parser's own line number is one
// too far when the offending byte is the newline ending a line.
func syntaxError(name, text string, err error) error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{File: name, Msg: err.Error()}
	}
	opt := pe.LastKey
	if opt == "" {
		opt = "syntax"
	}
	line := pe.Position.Line
	if s := pe.Position.Start; s >= 0 && s <= len(text) {
		line = 1 + strings.Count(text[:s], "\n")
	}
	return &Error{File: name, Line: line, Option: opt, Msg: pe.Message}
}

// dedupKeys drops repeats (a key of every [[backend]] is reported once per
// table) and keys inside an unknown table, which is reported itself.
func dedupKeys(keys []toml.Key) []toml.Key {
	var out []toml.Key
	seen := map[string]bool{}
	for _, k := range keys {
		s := strings.Join(k, ".")
		if seen[s] {
			continue
		}
		seen[s] = true
		if len(k) > 1 && seen[strings.Join(k[:len(k)-1], ".")] {
			seen[s] = true // a child of a reported key
			continue
		}
		out = append(out, k)
	}
	return out
}

func hasKey(raw map[string]any, list string, i int, key string) bool {
	var m map[string]any
	switch v := raw[list].(type) {
	case []map[string]any:
		m = v[i]
	case []any:
		m, _ = v[i].(map[string]any)
	}
	_, ok := m[key]
	return ok
}

var durationType = reflect.TypeFor[Duration]()

// tomlFields maps the toml names of t's fields to their types.
func tomlFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		m[name] = f.Type
	}
	return m
}

// checkTable checks that table m has only keys of struct t and that each
// value fits its field. path is where m is ("" or "backend[1]"), plain the
// same without the index, for messages.
func checkTable(errs *errorList, file string, ix *lineIndex, m map[string]any, t reflect.Type, path, plain string) {
	fields := tomlFields(t)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := m[k]
		at, opt := join(path, k), join(plain, k)
		bad := func(format string, args ...any) {
			errs.add(file, ix.line(at), opt, format, args...)
		}
		ft, ok := fields[k]
		if !ok {
			bad("unknown option%s", unknownHint(k, fields, plain))
			continue
		}
		switch {
		case ft == durationType:
			var s string
			switch v := v.(type) {
			case string:
				s = v
			case int64:
				s = strconv.FormatInt(v, 10)
			case float64:
				bad("bad duration %v (seconds must be a whole number; write e.g. \"1500ms\")", v)
				continue
			default:
				bad("must be a duration such as \"5s\", not %s", tomlType(v))
				continue
			}
			if _, err := parseDuration(s); err != nil {
				bad("%v", err)
			}
		case ft.Kind() == reflect.String:
			if _, ok := v.(string); !ok {
				bad("must be a string, not %s", tomlType(v))
			}
		case ft.Kind() == reflect.Bool:
			if _, ok := v.(bool); !ok {
				bad("must be true or false, not %s", tomlType(v))
			}
		case ft.Kind() == reflect.Int:
			n, ok := v.(int64)
			if !ok {
				bad("must be an integer, not %s", tomlType(v))
			} else if n > math.MaxInt || n < math.MinInt {
				bad("%d is out of range", n)
			}
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			var tables []map[string]any
			switch v := v.(type) {
			case []map[string]any:
				tables = v
			case []any:
				for _, e := range v {
					if t, ok := e.(map[string]any); ok {
						tables = append(tables, t)
					} else {
						tables = nil
						break
					}
				}
				if len(tables) != len(v) {
					tables = nil
				}
			}
			if tables == nil {
				if s, ok := v.([]any); !ok || len(s) > 0 {
					bad("must be written as [[%s]] tables, not %s", k, tomlType(v))
				}
				continue
			}
			for i, t := range tables {
				checkTable(errs, file, ix, t, ft.Elem(), fmt.Sprintf("%s[%d]", at, i), opt)
			}
		default:
			panic("config: no TOML check for field type " + ft.String())
		}
	}
}

// unknownHint helps with the two likely mistakes: wrong case, and a
// top-level option written after a [[table]] header, where TOML puts it
// inside that table.
func unknownHint(k string, fields map[string]reflect.Type, table string) string {
	for f := range fields {
		if strings.EqualFold(f, k) {
			return fmt.Sprintf(" (did you mean %s?)", f)
		}
	}
	if table != "" {
		if _, ok := tomlFields(reflect.TypeFor[Config]())[k]; ok {
			return fmt.Sprintf(" in [[%s]] (top-level options must come before the first [[table]])", table)
		}
	}
	return ""
}

// tomlType names the TOML type of a decoded value, for messages.
func tomlType(v any) string {
	switch v := v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	default:
		return fmt.Sprintf("%T", v)
	}
}
