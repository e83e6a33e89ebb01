package uci

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Write writes f as `uci commit` does:
//
//	\nconfig <type> '<name>'\n\toption <name> '<value>'\n\tlist <name> '<value>'\n … \n
//
// Every value is single-quoted, a quote inside it written as
//
//	'\''
//
// Anonymous sections get no name; an empty list is left out; the package
// statement is not written. One deliberate difference: libuci writes the type
// bare even when it holds a quote, a backslash, '#' or ';', and then cannot
// read it back; such a type is quoted here.
//
// Write first checks that what it writes would parse back to f (valid names
// and types, no control characters in values, no empty plain option, no
// name used twice) and writes nothing if not.
func Write(w io.Writer, f *File) error {
	b, err := Marshal(f)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// Marshal returns what Write writes.
func Marshal(f *File) ([]byte, error) {
	if err := check(f); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, s := range f.Sections {
		b.WriteString("\nconfig ")
		b.WriteString(typeToken(s.Type))
		if !s.Anonymous {
			b.WriteString(" ")
			b.WriteString(quote(s.Name))
		}
		b.WriteString("\n")
		for _, o := range s.Options {
			kw := "\toption "
			if o.IsList {
				kw = "\tlist "
			}
			for _, v := range o.Values {
				b.WriteString(kw)
				b.WriteString(o.Name)
				b.WriteString(" ")
				b.WriteString(quote(v))
				b.WriteString("\n")
			}
		}
	}
	b.WriteString("\n")
	return b.Bytes(), nil
}

// quote single-quotes v the way libuci does.
func quote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", `'\''`) + "'"
}

// typeToken writes a type bare, as libuci does, unless it holds a byte that
// means something to the parser.
func typeToken(t string) string {
	if strings.ContainsAny(t, "'\"\\#;") {
		return quote(t)
	}
	return t
}

func check(f *File) error {
	named := map[string]bool{}
	for i, s := range f.Sections {
		where := fmt.Sprintf("section %d (%s)", i, s.Type)
		if !s.Anonymous {
			where = fmt.Sprintf("section %s", s.Name)
		}
		if !ValidType(s.Type) {
			return fmt.Errorf("uci: %s: invalid type %q", where, s.Type)
		}
		if !s.Anonymous {
			if !ValidName(s.Name) {
				return fmt.Errorf("uci: %s: invalid name", where)
			}
			if named[s.Name] {
				return fmt.Errorf("uci: %s: name used twice", where)
			}
			named[s.Name] = true
		}
		opts := map[string]bool{}
		for _, o := range s.Options {
			if !ValidName(o.Name) {
				return fmt.Errorf("uci: %s: invalid option name %q", where, o.Name)
			}
			if opts[o.Name] {
				return fmt.Errorf("uci: %s: option %s given twice", where, o.Name)
			}
			opts[o.Name] = true
			if !o.IsList && (len(o.Values) != 1 || o.Values[0] == "") {
				return fmt.Errorf("uci: %s: option %s must have one non-empty value", where, o.Name)
			}
			for _, v := range o.Values {
				if err := checkValue(v); err != nil {
					return fmt.Errorf("uci: %s: option %s: %v", where, o.Name, err)
				}
			}
		}
	}
	return nil
}

// ReadFile parses the file at path, holding a shared flock on it while
// reading, as libuci does.
func ReadFile(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	if err := lock(fh, false); err != nil {
		return nil, fmt.Errorf("%s: lock: %w", path, err)
	}
	return Parse(path, fh)
}

// WriteFile replaces the file at path with f the way `uci commit` does: it
// takes an exclusive flock on the file (so concurrent uci commands wait),
// writes a temporary file beside it, fsyncs it, gives it the old file's mode
// (0600 for a new file), and renames it over the target. A symlink at path is
// written through, not replaced.
func WriteFile(path string, f *File) error {
	data, err := Marshal(f)
	if err != nil {
		return err
	}
	target := path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		target = real
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	mode := fs.FileMode(0o600)
	if st, err := os.Stat(target); err == nil {
		mode = st.Mode().Perm()
	}

	// libuci opens (creating) the config file itself to lock it.
	lk, err := os.OpenFile(target, os.O_RDWR|os.O_CREATE, mode)
	if err != nil {
		return err
	}
	defer lk.Close()
	if err := lock(lk, true); err != nil {
		return fmt.Errorf("%s: lock: %w", target, err)
	}

	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".uci-*")
	if err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	done = true
	// Make the rename itself durable; libuci does not, but it is cheap.
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
