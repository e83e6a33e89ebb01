package router

import (
	"strings"
	"sync/atomic"

	"pgwrt/router/wire"
)

// Session parameters in transaction pooling. A client keeps one paramSet of
// what it has seen: its startup parameters (tracked ones), then every
// ParameterStatus it receives, which replaces a startup value with the
// server's spelling of it (datestyle=iso comes back as "ISO, MDY"). Each
// backend keeps one of what its server reported, plus what was applied to it.
// When a client's transaction lands on a backend, applyParams gives the SQL
// that brings the backend's tracked parameters to the client's values, and
// paramStatusDiff the ParameterStatus messages for the reported values the
// client cannot set and has not seen.

// trackedParams are the parameters a client's backend must have as the
// client has them. All but search_path are reported by the server
// (GUC_REPORT); search_path is reported from PostgreSQL 18 only, so before
// that it is in a client's set only if the client gave it at startup.
var trackedParams = [...]string{
	"client_encoding", "DateStyle", "TimeZone", "IntervalStyle",
	"standard_conforming_strings", "application_name", "search_path",
}

func isTracked(name string) bool {
	for _, p := range trackedParams {
		if eqFoldASCII(name, p) {
			return true
		}
	}
	return false
}

// eqFoldASCII compares parameter names as PostgreSQL does (guc_name_compare:
// ASCII letters only, unlike strings.EqualFold).
func eqFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		c, d := a[i], b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

type param struct{ name, value string }

// paramSet is an ordered set of parameter name → value. It holds a few
// dozen entries at most (a server reports about 15), so a slice searched in
// order costs less than a map and keeps the order messages are built in.
// Names are compared ignoring ASCII case; a name keeps the spelling it was
// last set with. Like a slice, a copy shares entries with the original: use
// clone before changing one that is shared.
//
// ver names the content: every change takes a new number from paramVers,
// and a clone keeps it, so two sets with one ver hold the same entries
// (the zero set, ver 0, holds none). paramsFit relies on it.
type paramSet struct {
	list []param
	ver  uint64
}

var paramVers atomic.Uint64

func (s *paramSet) index(name string) int {
	for i := range s.list {
		if eqFoldASCII(s.list[i].name, name) {
			return i
		}
	}
	return -1
}

func (s *paramSet) get(name string) (string, bool) {
	if i := s.index(name); i >= 0 {
		return s.list[i].value, true
	}
	return "", false
}

func (s *paramSet) set(name, value string) {
	s.ver = paramVers.Add(1)
	if i := s.index(name); i >= 0 {
		s.list[i] = param{name, value}
		return
	}
	s.list = append(s.list, param{name, value})
}

func (s paramSet) clone() paramSet {
	return paramSet{list: append([]param(nil), s.list...), ver: s.ver}
}

// setStatus records a ParameterStatus message body (name, value, both
// NUL-terminated). It reports false for a malformed one.
func (s *paramSet) setStatus(body []byte) bool {
	name, rest, ok := wire.CString(body)
	if !ok || name == "" {
		return false
	}
	value, _, ok := wire.CString(rest)
	if !ok {
		return false
	}
	s.set(name, value)
	return true
}

// setStartup records the tracked parameters among a client's startup
// parameters (keys in the order sent). As in PostgreSQL, settings in the
// options parameter (-c name=value, --name=value) come first and the
// parameters themselves override them.
func (s *paramSet) setStartup(keys []string, params map[string]string) {
	if o, ok := params["options"]; ok {
		startupOptions(o, func(name, value string) {
			if isTracked(name) {
				s.set(name, value)
			}
		})
	}
	for _, k := range keys {
		if k != "options" && isTracked(k) {
			s.set(k, params[k])
		}
	}
}

// startupOptions calls f for each setting in a startup options string, read
// as PostgreSQL does: pg_split_opts splits on white space, a backslash
// keeping the next byte; then the postgres switches, of which -c name=value,
// --name=value and -e (DateStyle euro) set parameters, '-' in a name
// standing for '_'. Switches that take a value (-B 8) skip it.
func startupOptions(o string, f func(name, value string)) {
	var args []string
	var cur []byte
	for i := 0; i < len(o); {
		for i < len(o) && isSpace(o[i]) {
			i++
		}
		if i == len(o) {
			break
		}
		cur = cur[:0]
		for i < len(o) && !isSpace(o[i]) {
			if o[i] == '\\' {
				if i++; i == len(o) {
					break
				}
			}
			cur = append(cur, o[i])
			i++
		}
		args = append(args, string(cur))
	}
	const withValue = "BcCDdfhkNprStW-" // getopt "B:bc:C:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:W:-:"
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return // getopt: the end of the switches
		}
		if len(a) < 2 || a[0] != '-' {
			continue
		}
		for j := 1; j < len(a); j++ {
			sw := a[j]
			if sw == 'e' {
				f("DateStyle", "euro")
				continue
			}
			if strings.IndexByte(withValue, sw) < 0 {
				continue
			}
			v := a[j+1:]
			if v == "" && i+1 < len(args) {
				i++
				v = args[i]
			}
			if sw == 'c' || sw == '-' {
				if name, value, ok := strings.Cut(v, "="); ok {
					f(strings.ReplaceAll(name, "-", "_"), value)
				}
			}
			break
		}
	}
}

// setApplied records on a backend's set the tracked values of client, once
// the query applyParams gave has succeeded. The server reports most of them
// again, but not search_path before PostgreSQL 18.
func (s *paramSet) setApplied(client paramSet) {
	for _, p := range client.list {
		if isTracked(p.name) {
			s.set(p.name, p.value)
		}
	}
}

// applyParams returns the SQL, one simple Query without its NUL, that gives
// backend the client's values of the tracked parameters, or nil when it has
// them already. A value the backend's set does not hold counts as different.
//
// Parameters are SET at session level: the backend keeps them while this
// client's transactions run on it, and the next client's own are applied the
// same way. search_path alone goes through set_config, because SET quotes
// each string argument of a list parameter as one identifier: SET search_path
// = 'a, b' means the schema "a, b", whereas set_config, like a startup
// parameter, takes the list as written.
//
// Values read the same whatever standard_conforming_strings is: '...'
// without backslashes, E'...' with them. The bytes of a value are sent as
// they are; the server reads the whole query in the backend's
// client_encoding before any SET of it in the query runs, so a non-ASCII
// value is right only when the client's and the backend's encodings agree
// (tracked values are ASCII but for search_path: the server keeps
// application_name to printable ASCII).
func applyParams(client, backend paramSet) []byte {
	var q []byte
	var list []param // list parameters, after the SETs
	for _, p := range client.list {
		if !isTracked(p.name) {
			continue
		}
		if v, ok := backend.get(p.name); ok && v == p.value {
			continue
		}
		if eqFoldASCII(p.name, "search_path") {
			list = append(list, p)
			continue
		}
		if q != nil {
			q = append(q, "; "...)
		}
		q = append(q, "SET "...)
		q = appendIdent(q, p.name)
		q = append(q, " = "...)
		q = appendLiteral(q, p.value)
	}
	for _, p := range list {
		if q != nil {
			q = append(q, "; "...)
		}
		q = append(q, "SELECT pg_catalog.set_config("...)
		q = appendLiteral(q, strings.ToLower(p.name))
		q = append(q, ", "...)
		q = appendLiteral(q, p.value)
		q = append(q, ", false)"...)
	}
	return q
}

// paramStatusDiff returns the ParameterStatus messages a client must get on
// landing on backend, given the values it has seen: one for each value the
// backend reported that the client has not seen, or has seen with another
// value (server_version after a failover to another major version,
// in_hot_standby, is_superuser, a parameter a newer server reports).
// Tracked parameters the client has a value for are left out: applyParams
// gives the backend the client's value, so the client has nothing new to
// learn. A value the client has seen and the backend does not report
// (failover to an older server) cannot be taken back in the protocol and is
// left as it is. The caller records what it sends in clientSeen.
func paramStatusDiff(clientSeen, backend paramSet) []byte {
	var out []byte
	for _, p := range backend.list {
		v, ok := clientSeen.get(p.name)
		if ok && (v == p.value || isTracked(p.name)) {
			continue
		}
		out = wire.AppendParameterStatus(out, p.name, p.value)
	}
	return out
}

// paramsFit reports whether be already looks to the client as its
// backends before did: applyParams and paramStatusDiff would both be nil.
// The answer is remembered on the backend against the client's sets as
// content (paramsKey) and the backend's set as a version, so a transaction
// whose client has the same parameters as the backend's last one (as a
// pool's clients mostly have) compares one string.
func (s *session) paramsFit(be *backend) bool {
	k := s.paramsKey()
	if be.fit.ok && be.fit.rep == be.reported.ver && be.fit.key == k {
		return true
	}
	if applyParams(s.want, be.reported) != nil || paramStatusDiff(s.seen, be.reported) != nil {
		return false
	}
	be.fit.ok, be.fit.rep, be.fit.key = true, be.reported.ver, k
	return true
}

// paramsKey is the content of the client's want and seen sets as one
// string, rebuilt when either changes.
func (s *session) paramsKey() string {
	f := &s.fitKey
	if f.ok && f.want == s.want.ver && f.seen == s.seen.ver {
		return f.key
	}
	var b []byte
	for _, set := range [2]*paramSet{&s.want, &s.seen} {
		for _, p := range set.list {
			b = append(append(append(append(b, p.name...), 0), p.value...), 0)
		}
		b = append(b, 1)
	}
	f.ok, f.want, f.seen, f.key = true, s.want.ver, s.seen.ver, string(b)
	return f.key
}

// appendLiteral appends s as an SQL string literal that PostgreSQL reads as
// s whatever standard_conforming_strings is: with backslashes it is an
// escape string (E'...', backslashes doubled), which both settings read
// alike; without, a plain one. Quotes are doubled in both.
func appendLiteral(dst []byte, s string) []byte {
	esc := strings.IndexByte(s, '\\') >= 0
	if esc {
		dst = append(dst, 'E')
	}
	dst = append(dst, '\'')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			dst = append(dst, '\'', '\'')
		case c == '\\':
			dst = append(dst, '\\', '\\')
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '\'')
}

// appendIdent appends a parameter name for SET: a tracked name bare in lower
// case (each is a plain identifier and no keyword), any other quoted, which
// is always right since parameter names ignore case and a quoted "ext.name"
// names the same parameter as ext.name.
func appendIdent(dst []byte, name string) []byte {
	if isTracked(name) {
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			dst = append(dst, c)
		}
		return dst
	}
	dst = append(dst, '"')
	for i := 0; i < len(name); i++ {
		if name[i] == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, name[i])
	}
	return append(dst, '"')
}
