package config

import (
	"strconv"
	"strings"
)

// lineIndex maps where things are in a TOML text, so that errors found after
// decoding (a bad port in the second [[backend]], an unknown key) can still
// say "file:line". The TOML decoder keeps no positions we can use for that:
// keys inside arrays of tables all share one name.
//
// The scan is deliberately small. It understands comments, [table] and
// [[array]] headers, key = value lines with bare, quoted and dotted keys,
// and enough of values (strings, multi-line strings, arrays and inline
// tables spanning lines) not to mistake their insides for keys. It only runs
// on text the TOML parser has already accepted.
type lineIndex struct {
	// at holds the line of each key and header by indexed path:
	// "listen", "backend[1]" (the header), "backend[1].port".
	at map[string]int
	// seen holds every line of each key by plain path ("backend.port"), in
	// file order, for keys the decoder reports without an index.
	seen map[string][]int
}

// line returns the line of path, or of the nearest enclosing thing that has
// one ("backend[1].port" → "backend[1]" → "backend"), or 0.
func (ix *lineIndex) line(path string) int {
	for path != "" {
		if n, ok := ix.at[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func indexLines(text string) *lineIndex {
	ix := &lineIndex{at: map[string]int{}, seen: map[string][]int{}}
	text = strings.TrimPrefix(text, "\uFEFF")
	var (
		table, plain string             // current table: indexed and plain path
		count        = map[string]int{} // [[array]] headers seen so far
		v            valueScan
	)
	for n, l := range strings.Split(text, "\n") {
		n++ // 1-based
		l = strings.TrimSuffix(l, "\r")
		if v.open() {
			v.scan(l)
			continue
		}
		s := strings.TrimLeft(l, " \t")
		switch {
		case s == "" || s[0] == '#':
		case strings.HasPrefix(s, "[["):
			keys, _, ok := scanKey(s[2:])
			if !ok {
				continue
			}
			plain = strings.Join(keys, ".")
			i := count[plain]
			count[plain]++
			table = plain + "[" + strconv.Itoa(i) + "]"
			ix.add(table, plain, n)
		case s[0] == '[':
			keys, _, ok := scanKey(s[1:])
			if !ok {
				continue
			}
			plain = strings.Join(keys, ".")
			table = plain
			ix.add(table, plain, n)
		default:
			keys, rest, ok := scanKey(s)
			if !ok || !strings.HasPrefix(rest, "=") {
				continue
			}
			// a.b.c = 1 also makes the tables a and a.b.
			for i := 1; i < len(keys); i++ {
				k := strings.Join(keys[:i], ".")
				if _, ok := ix.at[join(table, k)]; !ok {
					ix.at[join(table, k)] = n
				}
			}
			k := strings.Join(keys, ".")
			ix.add(join(table, k), join(plain, k), n)
			v.scan(rest[1:])
		}
	}
	return ix
}

func (ix *lineIndex) add(path, plain string, n int) {
	if _, ok := ix.at[path]; !ok {
		ix.at[path] = n
	}
	ix.seen[plain] = append(ix.seen[plain], n)
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}

// scanKey reads a dotted key (a.b, "a b".c, 'x') at the start of s and
// returns its parts and what follows it, leading blanks removed.
func scanKey(s string) (keys []string, rest string, ok bool) {
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" {
			return nil, "", false
		}
		var k string
		switch s[0] {
		case '"':
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
			if i >= len(s) {
				return nil, "", false
			}
			uq, err := strconv.Unquote(s[:i+1])
			if err != nil {
				uq = s[1:i]
			}
			k, s = uq, s[i+1:]
		case '\'':
			i := strings.IndexByte(s[1:], '\'')
			if i < 0 {
				return nil, "", false
			}
			k, s = s[1:i+1], s[i+2:]
		default:
			i := 0
			for i < len(s) && isBareKeyChar(s[i]) {
				i++
			}
			if i == 0 {
				return nil, "", false
			}
			k, s = s[:i], s[i:]
		}
		keys = append(keys, k)
		s = strings.TrimLeft(s, " \t")
		if !strings.HasPrefix(s, ".") {
			return keys, s, true
		}
		s = s[1:]
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// valueScan follows a value across lines: how deep in [ ] and { } it is, and
// whether a multi-line string is open.
type valueScan struct {
	depth int
	delim string // `"""` or `'''` while a multi-line string is open
}

func (v *valueScan) open() bool { return v.depth > 0 || v.delim != "" }

func (v *valueScan) scan(s string) {
	for i := 0; i < len(s); i++ {
		if v.delim != "" {
			j := strings.Index(s[i:], v.delim)
			if v.delim == `"""` {
				j = indexUnescaped(s[i:], v.delim)
			}
			if j < 0 {
				return
			}
			i += j + len(v.delim) - 1
			// A closing delimiter may carry up to two more quotes.
			for i+1 < len(s) && s[i+1] == v.delim[0] {
				i++
			}
			v.delim = ""
			continue
		}
		switch c := s[i]; c {
		case '#':
			return
		case '[', '{':
			v.depth++
		case ']', '}':
			if v.depth > 0 {
				v.depth--
			}
		case '"', '\'':
			if strings.HasPrefix(s[i:], string([]byte{c, c, c})) {
				v.delim = s[i : i+3]
				i += 2
				continue
			}
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if c == '"' && s[j] == '\\' {
					j++
				}
			}
			i = j
		}
	}
}

// indexUnescaped is strings.Index for a delimiter not preceded by an odd
// number of backslashes.
func indexUnescaped(s, delim string) int {
	for i := 0; i+len(delim) <= len(s); i++ {
		if s[i] == '\\' {
			i++
			continue
		}
		if strings.HasPrefix(s[i:], delim) {
			return i
		}
	}
	return -1
}
