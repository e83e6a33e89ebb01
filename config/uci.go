package config

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"pgwrt/uci"
)

// LoadUCI reads, decodes and validates the OpenWrt form of the
// configuration, /etc/config/pgwrt, holding the same shared lock libuci
// takes. See ParseUCI.
func LoadUCI(path string) (*Config, error) {
	f, err := uci.ReadFile(path)
	if err != nil {
		return nil, uciError(path, err)
	}
	return fromUCI(path, f)
}

// ParseUCI decodes data, the UCI text of the file called name, on top of
// Default() and validates the result. The options have the same names as
// in TOML:
//
//	config pgwrt 'main'          # the top-level options; at most one section
//		option listen '0.0.0.0:5432'
//		option health_check_period '1s'
//	config backend 'pg1'         # one per node: host, port (5432), name
//		option host '192.168.1.11'
//	config hba                   # database, user, address, method
//	config user                  # name, password
//
// A backend is called by its name option, else by its section name when the
// section is named, else host:port. Booleans are written the OpenWrt ways
// (1/0, yes/no, on/off, true/false, enabled/disabled). Errors are *Error
// values at the line of the option (or section) concerned, as for TOML.
func ParseUCI(name string, data []byte) (*Config, error) {
	f, err := uci.ParseBytes(name, data)
	if err != nil {
		return nil, uciError(name, err)
	}
	return fromUCI(name, f)
}

func uciError(name string, err error) error {
	var ue *uci.Error
	if errors.As(err, &ue) {
		return &Error{File: name, Line: ue.Line, Option: "syntax", Msg: ue.Msg}
	}
	return err
}

// uciSections are the section types besides "pgwrt": each adds one element
// to the Config list with the same toml name.
var uciSections = []string{"backend", "hba", "user"}

func fromUCI(name string, f *uci.File) (*Config, error) {
	c := Default()
	cv := reflect.ValueOf(c).Elem()
	ix := &lineIndex{at: map[string]int{}, seen: map[string][]int{}}
	var (
		errs errorList
		main *uci.Section
	)
	for _, s := range f.Sections {
		if s.Type == "pgwrt" {
			if main != nil {
				errs.add(name, s.Line, "pgwrt", "only one config pgwrt section is allowed (the first is at line %d)", main.Line)
				continue
			}
			main = s
			setUCIOptions(&errs, name, ix, s, cv, "", "")
			continue
		}
		fi, ok := fieldByTag(cv.Type(), s.Type)
		if !ok || cv.Field(fi).Kind() != reflect.Slice {
			errs.add(name, s.Line, s.Type, "unknown section type (want pgwrt, %s)", strings.Join(uciSections, ", "))
			continue
		}
		list := cv.Field(fi)
		path := fmt.Sprintf("%s[%d]", s.Type, list.Len())
		ix.at[path] = s.Line
		elem := reflect.New(list.Type().Elem()).Elem()
		setUCIOptions(&errs, name, ix, s, elem, path, s.Type)
		elem.FieldByName("Line").SetInt(int64(s.Line))
		if s.Type == "backend" {
			b := elem.Addr().Interface().(*Backend)
			if s.Get("port") == nil {
				b.Port = 5432
			}
			if b.Name == "" && !s.Anonymous {
				b.Name = s.Name
			}
			if b.Name == "" {
				b.Name = b.Addr()
			}
		}
		list.Set(reflect.Append(list, elem))
	}
	if len(errs) > 0 {
		return nil, errs.err()
	}
	c.Source = name
	c.index = ix
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// setUCIOptions sets the fields of struct v from the options of section s.
// path is where v is ("" or "backend[1]"), plain the same without the index.
func setUCIOptions(errs *errorList, file string, ix *lineIndex, s *uci.Section, v reflect.Value, path, plain string) {
	for _, o := range s.Options {
		at, opt := join(path, o.Name), join(plain, o.Name)
		ix.at[at] = o.Line
		bad := func(format string, args ...any) {
			errs.add(file, o.Line, opt, format, args...)
		}
		if check, ok := initScriptOptions[o.Name]; ok && s.Type == "pgwrt" {
			if o.IsList {
				bad("must be an option, not a list")
			} else if msg := check(o.Value()); msg != "" {
				bad("%s", msg)
			}
			continue
		}
		fi, ok := fieldByTag(v.Type(), o.Name)
		if !ok || v.Field(fi).Kind() == reflect.Slice {
			bad("unknown option%s", unknownUCIHint(o.Name, v.Type(), plain))
			continue
		}
		if o.IsList {
			bad("must be an option, not a list")
			continue
		}
		val := o.Value()
		f := v.Field(fi)
		switch {
		case f.Type() == durationType:
			d, err := parseDuration(val)
			if err != nil {
				bad("%v", err)
				continue
			}
			f.SetInt(int64(d))
		case f.Kind() == reflect.String:
			f.SetString(val)
		case f.Kind() == reflect.Int:
			n, err := strconv.Atoi(strings.TrimSpace(val))
			if err != nil {
				bad("must be an integer, not %s", quote(val))
				continue
			}
			f.SetInt(int64(n))
		case f.Kind() == reflect.Bool:
			b, ok := parseUCIBool(strings.ToLower(val))
			if !ok {
				bad("must be 1 or 0, not %s", quote(val))
				continue
			}
			f.SetBool(b)
		default:
			panic("config: no UCI conversion for field type " + f.Type().String())
		}
	}
}

// initScriptOptions are the options of config pgwrt that the procd init
// script reads (/etc/init.d/pgwrt) and the daemon does not: they are
// checked here, so that "pgwrt check" catches a typo before procd quietly
// falls back, and otherwise ignored. Each function returns what is wrong
// with a value, or "".
var initScriptOptions = map[string]func(string) string{
	// enabled '0': the init script opens no procd instance. It reads the
	// value with config_get_bool, which knows the words in lower case only
	// and takes anything else for the default (1).
	"enabled": func(v string) string {
		if _, ok := parseUCIBool(v); !ok {
			return fmt.Sprintf("must be 1 or 0, not %s", quote(v))
		}
		return ""
	},
	// nofile: RLIMIT_NOFILE (soft and hard) that procd sets. The init
	// script takes digits only; the kernel refuses more than fs.nr_open,
	// 1048576 by default.
	"nofile": func(v string) string {
		n, err := strconv.Atoi(v)
		if err != nil || strings.TrimLeft(v, "0123456789") != "" {
			return fmt.Sprintf("must be a number of files, not %s", quote(v))
		}
		if n < 1 || n > maxNofile {
			return fmt.Sprintf("must be between 1 and %d, not %d", maxNofile, n)
		}
		return ""
	},
}

// maxNofile is Linux's default fs.nr_open, the most RLIMIT_NOFILE can be.
const maxNofile = 1 << 20

// parseUCIBool reads a boolean the ways OpenWrt writes them, as
// config_get_bool in /lib/functions.sh does (case matters there).
func parseUCIBool(v string) (value, ok bool) {
	switch v {
	case "1", "yes", "on", "true", "enabled":
		return true, true
	case "0", "no", "off", "false", "disabled":
		return false, true
	}
	return false, false
}

// fieldByTag finds the field of struct t whose toml name is name.
func fieldByTag(t reflect.Type, name string) (int, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == name && tag != "-" && f.IsExported() {
			return i, true
		}
	}
	return 0, false
}

func unknownUCIHint(k string, t reflect.Type, section string) string {
	for name := range tomlFields(t) {
		if strings.EqualFold(name, k) && name != k {
			return fmt.Sprintf(" (did you mean %s?)", name)
		}
	}
	if section != "" {
		if _, ok := tomlFields(reflect.TypeFor[Config]())[k]; ok {
			return fmt.Sprintf(" in config %s (it belongs in config pgwrt)", section)
		}
	}
	return ""
}
