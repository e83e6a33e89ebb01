package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Error is one thing wrong with a configuration, located in its file. Its
// text is "file:line: option: what is wrong"; the line is left out when it
// is not known (an option that was never written, or a Config built in
// code), and so is the file when there is none.
type Error struct {
	File   string // as given to LoadTOML / ParseTOML; "" for a Config built in code
	Line   int    // 1-based; 0 when unknown
	Option string // "listen", "backend.port", ...
	Msg    string
}

func (e *Error) Error() string {
	var b []byte
	switch {
	case e.File != "" && e.Line > 0:
		b = fmt.Appendf(b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b = fmt.Appendf(b, "%s: ", e.File)
	case e.Line > 0:
		b = fmt.Appendf(b, "line %d: ", e.Line)
	}
	if e.Option != "" {
		b = append(b, e.Option...)
		b = append(b, ": "...)
	}
	return string(append(b, e.Msg...))
}

// errorList collects Errors and turns them into one error.
type errorList []*Error

func (l *errorList) add(file string, line int, option, format string, args ...any) {
	*l = append(*l, &Error{File: file, Line: line, Option: option, Msg: fmt.Sprintf(format, args...)})
}

// err returns nil, the only error, or all of them joined in file order (one
// per line of the message).
func (l errorList) err() error {
	if len(l) == 0 {
		return nil
	}
	slices.SortStableFunc(l, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	if len(l) == 1 {
		return l[0]
	}
	errs := make([]error, len(l))
	for i, e := range l {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// Errors returns the *Error values inside err (as returned by LoadTOML,
// ParseTOML or Validate), for callers that want to point at lines, such as
// a LuCI page.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
		}
	}
	walk(err)
	return out
}

// quote is %q for messages.
func quote(s string) string { return strconv.Quote(s) }
