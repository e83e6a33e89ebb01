package router

import "bytes"

// What a statement does to session state: the part of a backend's state that
// outlives a transaction. In transaction pooling a backend goes back to the
// pool at ReadyForQuery 'I', so such state would follow the backend to its
// next client. classifySQL tells the pooler which statements leave some, so it
// can keep the client on its backend, reset the backend, or (for SET of a
// tracked parameter, params.go) carry the value to the next backend.
//
// It reads SQL text without parsing it: a lexer that knows PostgreSQL's
// comments, literals and quoted identifiers, and a look at the first words of
// each statement and at function calls. Where it cannot tell it errs towards
// reporting an effect: a needless pin costs a backend for a while, a missed
// one gives another client a backend holding a lock or a changed setting.
//
// What it cannot see: statements run by functions, procedures, DO blocks,
// triggers and rules (a DO body is a string literal), EXECUTE of a prepared
// statement (its PREPARE is reported), and set_config or advisory lock calls
// reached through a name it does not know (a wrapper function, a view).

// effect is a bit set of session-level effects.
type effect uint16

const (
	// effSet: a session-level SET or RESET, set_config(..., false) or a
	// set_config whose is_local is not a literal true.
	effSet effect = 1 << iota
	// effPrepare: SQL PREPARE name AS (not PREPARE TRANSACTION).
	effPrepare
	// effDeallocate: DEALLOCATE or DISCARD; they only remove state, noted
	// so a caller that counts prepared statements can follow.
	effDeallocate
	// effListen: LISTEN (UNLISTEN only removes state).
	effListen
	// effAdvisoryLock: a call of a session-level advisory lock function.
	effAdvisoryLock
	// effHoldCursor: DECLARE ... WITH HOLD.
	effHoldCursor
	// effTemp: a temporary table, view, sequence or function that outlives
	// the transaction (CREATE TEMP ... ON COMMIT DROP does not).
	effTemp
	// effLoad: LOAD 'library'.
	effLoad
	// effUnknown: the query was longer than maxClassify and only its start
	// was read; anything may follow.
	effUnknown
	// effNamedParse: a named protocol-level Parse pgwrt does not track
	// (max_prepared_statements = 0, or longer than the link's buffer).
	effNamedParse
)

// maxClassify bounds the bytes of one query classifySQL reads. Longer
// queries (bulk INSERTs, mostly) get effUnknown along with what their first
// maxClassify bytes showed: an effect after the cut is as likely as one
// before it, and saying "none" would hand a backend that may hold a lock or
// a changed setting to another client. What unknown costs is the caller's
// choice (keep the client on its backend, or reset the backend).
const maxClassify = 64 << 10

// paramChange is the target of one SET, RESET or set_config.
type paramChange struct {
	// name is lower case (PostgreSQL compares parameter names ignoring
	// case). "all" is RESET ALL; "session_characteristics" is SET SESSION
	// CHARACTERISTICS AS TRANSACTION (the default_transaction_* settings);
	// "" is a name classifySQL could not read (set_config with a computed
	// or escaped name), which may be any parameter.
	name  string
	reset bool
}

// stmtEffect is what a query (one or more statements) does to the session.
type stmtEffect struct {
	eff effect
	// commits: a statement that commits a transaction block (COMMIT,
	// END, COMMIT PREPARED, PREPARE TRANSACTION). It leaves no state;
	// it tells whether a transaction's outcome is known when its
	// backend is lost with the statement unanswered.
	commits bool
	// n counts the distinct SET/RESET targets seen; the first len(params)
	// are listed in params.
	n      int
	params [4]paramChange
}

func (e *stmtEffect) has(f effect) bool { return e.eff&f != 0 }

// effectNames name the effects as the README's table and the log do.
var effectNames = []string{"SET", "PREPARE", "DEALLOCATE", "LISTEN", "advisory lock", "WITH HOLD cursor", "temporary object", "LOAD", "unknown", "named protocol-level prepared statement"}

func (f effect) String() string {
	var out []byte
	for i, n := range effectNames {
		if f&(1<<i) != 0 {
			if len(out) > 0 {
				out = append(out, ", "...)
			}
			out = append(out, n...)
		}
	}
	return string(out)
}

// changes lists the parameters SET or RESET, in query order. When
// allListed is false there were more than fit and the caller must assume
// any parameter may have changed.
func (e *stmtEffect) changes() []paramChange { return e.params[:min(e.n, len(e.params))] }

func (e *stmtEffect) allListed() bool { return e.n <= len(e.params) }

func (e *stmtEffect) addParam(name string, reset bool) {
	e.eff |= effSet
	c := paramChange{name: name, reset: reset}
	for _, p := range e.changes() {
		if p == c {
			return
		}
	}
	if e.n < len(e.params) {
		e.params[e.n] = c
	}
	e.n++
}

// classifySQL reports the session-level effects of q, a simple Query body
// (its terminating NUL may be included) or the query text of a Parse. It
// splits q on semicolons outside literals, comments and quoted identifiers
// and ORs the effects of the statements. Statements are not checked for
// validity: one PostgreSQL rejects may still be reported.
//
// It allocates only to return a parameter name it does not know, and reads
// each byte a bounded number of times.
func classifySQL(q []byte) stmtEffect {
	var e stmtEffect
	if i := bytes.IndexByte(q[:min(len(q), maxClassify+1)], 0); i >= 0 {
		q = q[:i]
	}
	if len(q) > maxClassify {
		q = q[:maxClassify]
		e.eff |= effUnknown
	}
	// With standard_conforming_strings off a backslash escapes the next
	// character in '...' too, which moves where a literal ends. The
	// setting is the session's, not known here; a query with a backslash
	// in such a literal is read both ways and the effects are joined.
	l := sqlLexer{b: q}
	classifyStmts(&l, &e)
	if l.sawBackslash {
		l = sqlLexer{b: q, backslash: true}
		classifyStmts(&l, &e)
	}
	return e
}

func classifyStmts(l *sqlLexer, e *stmtEffect) {
	for {
		t := l.next()
		switch t.kind {
		case tokEOF:
			return
		case tokSemi:
			continue
		}
		classifyStmt(l, t, e)
	}
}

// Statement kinds that scanStmt looks further into.
const (
	stmtOther   = iota
	stmtSelect  // SELECT ... INTO TEMP makes a temporary table
	stmtCreate  // CREATE ... pg_temp.x, ON COMMIT DROP
	stmtDeclare // DECLARE ... WITH HOLD FOR
)

// classifyStmt reads one statement, whose first token is t, up to and
// including its semicolon.
func classifyStmt(l *sqlLexer, t token, e *stmtEffect) {
	// EXPLAIN ANALYZE runs its statement (CREATE TEMP TABLE AS included):
	// look past EXPLAIN and its options. Plain EXPLAIN is read the same way,
	// which can only over-report.
	for l.isWord(t, "explain") {
		t = l.next()
		if t.kind == tokLParen {
			for depth := 1; depth > 0; {
				t = l.next()
				switch t.kind {
				case tokLParen:
					depth++
				case tokRParen:
					depth--
				case tokSemi, tokEOF:
					return
				}
			}
			t = l.next()
		}
		for l.isWord(t, "analyze") || l.isWord(t, "analyse") || l.isWord(t, "verbose") {
			t = l.next()
		}
	}
	kind := stmtOther
	temp := false
	switch {
	case t.kind == tokSemi || t.kind == tokEOF:
		return
	case t.kind == tokLParen, l.isWord(t, "select"), l.isWord(t, "with"):
		kind = stmtSelect
	case l.isWord(t, "set"):
		classifySet(*l, e)
	case l.isWord(t, "reset"):
		classifyReset(*l, e)
	case l.isWord(t, "prepare"):
		// PREPARE TRANSACTION 'gid' ends a two-phase transaction; a
		// statement may still be named transaction.
		p := *l
		if !p.isWord(p.next(), "transaction") || p.next().kind != tokString {
			e.eff |= effPrepare
		} else {
			e.commits = true
		}
	case l.isWord(t, "commit"), l.isWord(t, "end"):
		e.commits = true
	case l.isWord(t, "deallocate"), l.isWord(t, "discard"):
		e.eff |= effDeallocate
	case l.isWord(t, "listen"):
		e.eff |= effListen
	case l.isWord(t, "load"):
		e.eff |= effLoad
	case l.isWord(t, "declare"):
		kind = stmtDeclare
	case l.isWord(t, "create"):
		kind = stmtCreate
		// CREATE [OR REPLACE] [GLOBAL | LOCAL] {TEMP | TEMPORARY} ...
		p := *l
		w := p.next()
		if p.isWord(w, "or") {
			if w = p.next(); p.isWord(w, "replace") {
				w = p.next()
			}
		}
		if p.isWord(w, "global") || p.isWord(w, "local") {
			w = p.next()
		}
		temp = p.isWord(w, "temp") || p.isWord(w, "temporary")
	}
	scanStmt(l, t, kind, temp, e)
}

// classifySet reads the words after SET from a copy of the lexer.
func classifySet(p sqlLexer, e *stmtEffect) {
	t := p.next()
	if p.isWord(t, "local") {
		return
	}
	if p.isWord(t, "session") {
		q := p
		switch u := q.next(); {
		case q.isWord(u, "authorization"):
			e.addParam("session_authorization", false)
			return
		case q.isWord(u, "characteristics"):
			e.addParam("session_characteristics", false)
			return
		}
		t = p.next()
	}
	// The special forms of SET, and the names they stand for. NAMES, SCHEMA,
	// TIME and XML followed by = or TO are ordinary (if unknown) names.
	special := func(kw, next, name string) bool {
		if !p.isWord(t, kw) {
			return false
		}
		q := p
		u := q.next()
		if next == "" {
			if u.kind == tokOp && p.b[u.start] == '=' || q.isWord(u, "to") {
				return false
			}
		} else if !q.isWord(u, next) {
			return false
		}
		e.addParam(name, false)
		return true
	}
	switch {
	case p.isWord(t, "transaction"), p.isWord(t, "constraints"):
		// The current transaction only.
	case special("time", "zone", "timezone"),
		special("names", "", "client_encoding"),
		special("schema", "", "search_path"),
		special("xml", "option", "xmloption"):
	default:
		e.addParam(p.paramName(t), false)
	}
}

// classifyReset reads the words after RESET from a copy of the lexer.
func classifyReset(p sqlLexer, e *stmtEffect) {
	t := p.next()
	q := p
	u := q.next()
	switch {
	case p.isWord(t, "all"):
		e.addParam("all", true)
	case p.isWord(t, "time") && q.isWord(u, "zone"):
		e.addParam("timezone", true)
	case p.isWord(t, "session") && q.isWord(u, "authorization"):
		e.addParam("session_authorization", true)
	case p.isWord(t, "transaction") && q.isWord(u, "isolation"):
		// The current transaction only.
	default:
		e.addParam(p.paramName(t), true)
	}
}

// paramName reads a parameter name starting at t (a word or quoted
// identifier, then .part for custom parameters) and returns it in lower
// case, or "" when t does not start a name.
func (l *sqlLexer) paramName(t token) string {
	var buf [64]byte
	n := buf[:0]
	for {
		switch {
		case t.kind == tokWord:
			n = appendLower(n, l.b[t.start:t.end])
		case t.kind == tokIdent && !t.esc:
			n = appendLower(n, l.b[t.start:t.end])
		case t.kind == tokIdent:
			for i := t.start; i < t.end; i++ {
				if l.b[i] == '"' {
					i++ // "" stands for "
				}
				n = appendLower(n, l.b[i:i+1])
			}
		default:
			return ""
		}
		p := *l
		if p.next().kind != tokDot {
			return internName(n)
		}
		n = append(n, '.')
		t = p.next()
		*l = p
	}
}

func appendLower(dst, s []byte) []byte {
	for _, c := range s {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// knownNames are returned without allocating.
var knownNames = [...]string{
	"search_path", "client_encoding", "datestyle", "timezone", "intervalstyle",
	"standard_conforming_strings", "application_name", "role",
	"session_authorization", "statement_timeout", "lock_timeout",
	"idle_in_transaction_session_timeout", "work_mem", "xmloption",
	"default_transaction_isolation", "default_transaction_read_only",
}

func internName(b []byte) string {
	for _, k := range knownNames {
		if string(b) == k {
			return k
		}
	}
	return string(b)
}

// setConfigCall follows the arguments of one set_config( call.
type setConfigCall struct {
	depth int // paren depth of its argument list
	arg   int // argument being read
	// first argument: tokens, and the first one
	nameToks int
	name     token
	// third argument: tokens, and whether they still spell a literal true
	// (true, 't', 'on' ..., optionally ::bool or ::boolean)
	localToks int
	local     bool
}

func (c *setConfigCall) feed(l *sqlLexer, t token, depth int) {
	if depth == c.depth && t.kind == tokComma {
		c.arg++
		return
	}
	switch c.arg {
	case 0:
		if c.nameToks == 0 {
			c.name = t
		}
		c.nameToks++
	case 2:
		switch c.localToks {
		case 0:
			c.local = l.isTrue(t)
		case 1, 2:
			c.local = c.local && t.kind == tokOp && l.b[t.start] == ':'
		case 3:
			c.local = c.local && (l.isWord(t, "bool") || l.isWord(t, "boolean"))
		default:
			c.local = false
		}
		if depth != c.depth {
			c.local = false
		}
		c.localToks++
	}
}

// done reports the call's effect once its argument list has closed, or at
// the end of the statement for one left open.
func (c *setConfigCall) done(l *sqlLexer, e *stmtEffect) {
	if c.arg == 2 && c.local && (c.localToks == 1 || c.localToks == 4) {
		return
	}
	name := ""
	if c.nameToks == 1 && c.name.kind == tokString && !c.name.esc {
		var buf [64]byte
		name = internName(appendLower(buf[:0], l.b[c.name.start:c.name.end]))
	}
	e.addParam(name, false)
}

// isTrue: a literal PostgreSQL reads as boolean true (parse_bool; prefixes
// other than t and y are left out, they only make a call look
// session-level).
func (l *sqlLexer) isTrue(t token) bool {
	if t.kind == tokWord {
		return l.isWord(t, "true")
	}
	if t.kind != tokString || t.esc {
		return false
	}
	s := l.b[t.start:t.end]
	for _, w := range [...]string{"t", "true", "y", "yes", "on", "1"} {
		if len(s) == len(w) {
			if _, ok := matchWord(s, 0, w); ok {
				return true
			}
		}
	}
	return false
}

// advisoryLocks are the session-level advisory lock functions (the xact
// ones end with the transaction; the unlock ones only remove state).
var advisoryLocks = [...]string{
	"pg_advisory_lock", "pg_advisory_lock_shared",
	"pg_try_advisory_lock", "pg_try_advisory_lock_shared",
}

// scanStmt reads the rest of a statement, from its first token t to its
// semicolon, for function calls and for what kind asks for.
func scanStmt(l *sqlLexer, t token, kind int, temp bool, e *stmtEffect) {
	var (
		prev, prev2  token
		depth        int
		calls        [4]setConfigCall // set_config calls being read, innermost last
		ncalls       int
		inDeclare    = kind == stmtDeclare // before FOR
		onCommitDrop bool
	)
	for ; t.kind != tokSemi && t.kind != tokEOF; prev2, prev, t = prev, t, l.next() {
		if ncalls > 0 && depth >= calls[ncalls-1].depth && !(t.kind == tokRParen && depth == calls[ncalls-1].depth) {
			calls[ncalls-1].feed(l, t, depth)
		}
		switch t.kind {
		case tokLParen:
			if l.isName(prev, "set_config") {
				if ncalls == len(calls) {
					// Too deep to follow: report it unread.
					e.addParam("", false)
				} else {
					calls[ncalls] = setConfigCall{depth: depth + 1}
					ncalls++
				}
			} else {
				for _, f := range advisoryLocks {
					if l.isName(prev, f) {
						e.eff |= effAdvisoryLock
					}
				}
			}
			depth++
		case tokRParen:
			if ncalls > 0 && depth == calls[ncalls-1].depth {
				ncalls--
				calls[ncalls].done(l, e)
			}
			depth--
		case tokWord:
			switch kind {
			case stmtSelect:
				if l.isWord(prev, "into") && (l.isWord(t, "temp") || l.isWord(t, "temporary")) {
					e.eff |= effTemp
				}
			case stmtCreate:
				if l.isWord(prev2, "on") && l.isWord(prev, "commit") && l.isWord(t, "drop") {
					onCommitDrop = true
				}
			case stmtDeclare:
				if inDeclare && l.isWord(prev, "with") && l.isWord(t, "hold") {
					e.eff |= effHoldCursor
				}
				inDeclare = inDeclare && !l.isWord(t, "for")
			}
		case tokDot:
			// CREATE TABLE pg_temp.t, CREATE FUNCTION pg_temp.f().
			if kind == stmtCreate && l.isPgTemp(prev) {
				temp = true
			}
		}
	}
	for ncalls > 0 {
		ncalls--
		calls[ncalls].done(l, e)
	}
	if temp && !onCommitDrop {
		e.eff |= effTemp
	}
}

// isPgTemp matches the word pg_temp or pg_temp_N.
func (l *sqlLexer) isPgTemp(t token) bool {
	if t.kind != tokWord || t.end-t.start < 7 {
		return false
	}
	if _, ok := matchWord(l.b[t.start:t.end], 0, "pg_temp"); !ok {
		return false
	}
	s := l.b[t.start+7 : t.end]
	if len(s) == 0 {
		return true
	}
	if len(s) < 2 || s[0] != '_' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// The lexer: PostgreSQL's token boundaries, without the tokens' meaning.

type tokKind uint8

const (
	tokEOF    tokKind = iota
	tokSemi           // ;
	tokWord           // keyword or unquoted identifier
	tokIdent          // "quoted identifier" (start:end is inside the quotes)
	tokString         // any string literal (start:end is its body)
	tokLParen         // (
	tokRParen         // )
	tokComma          // ,
	tokDot            // .
	tokOp             // one byte of an operator or other punctuation
	tokOther          // number, $n parameter
)

type token struct {
	kind       tokKind
	esc        bool // tokString, tokIdent: the body holds escapes ('' "" \)
	start, end int
}

type sqlLexer struct {
	b []byte
	i int
	// backslash: a backslash escapes in '...' (standard_conforming_strings
	// off). sawBackslash: a '...' held one, so it would read differently.
	backslash, sawBackslash bool
}

// isWord matches the word w (lower case), ignoring ASCII case.
func (l *sqlLexer) isWord(t token, w string) bool {
	if t.kind != tokWord || t.end-t.start != len(w) {
		return false
	}
	_, ok := matchWord(l.b, t.start, w)
	return ok
}

// isName matches a function name f (lower case) as a word or as the same
// identifier quoted ("pg_advisory_lock" is pg_advisory_lock).
func (l *sqlLexer) isName(t token, f string) bool {
	if t.kind == tokIdent {
		return !t.esc && string(l.b[t.start:t.end]) == f
	}
	return l.isWord(t, f)
}

func isIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentByte(c byte) bool {
	return isIdentStart(c) || '0' <= c && c <= '9' || c == '$'
}

func (l *sqlLexer) next() token {
	b, i := l.b, l.i
	for {
		i = skipSpace(b, i)
		if i+1 >= len(b) {
			break
		}
		if b[i] == '-' && b[i+1] == '-' {
			for i += 2; i < len(b) && b[i] != '\n' && b[i] != '\r'; i++ {
			}
			continue
		}
		if b[i] == '/' && b[i+1] == '*' {
			i = skipComment(b, i+2)
			continue
		}
		break
	}
	t := token{start: i, end: i}
	if i >= len(b) {
		l.i = i
		return t
	}
	c := b[i]
	switch {
	case c == ';':
		t.kind, i = tokSemi, i+1
	case c == '(':
		t.kind, i = tokLParen, i+1
	case c == ')':
		t.kind, i = tokRParen, i+1
	case c == ',':
		t.kind, i = tokComma, i+1
	case c == '.' && (i+1 == len(b) || b[i+1] < '0' || b[i+1] > '9'):
		t.kind, i = tokDot, i+1
	case c == '\'':
		t, i = l.quoted(i+1, '\'', l.backslash, true)
	case c == '"':
		t, i = l.quoted(i+1, '"', false, false)
	case c == '$':
		t, i = l.dollar(i)
	case isIdentStart(c):
		j := i + 1
		for j < len(b) && isIdentByte(b[j]) {
			j++
		}
		t = token{kind: tokWord, start: i, end: j}
		i = j
		// Prefixed literals: E'...', N'...', B'...', X'...', U&'...', U&"...".
		if j-t.start == 1 && j < len(b) {
			switch c | 0x20 {
			case 'e':
				if b[j] == '\'' {
					t, i = l.quoted(j+1, '\'', true, false)
					t.esc = true
				}
			case 'n', 'b', 'x':
				if b[j] == '\'' {
					t, i = l.quoted(j+1, '\'', l.backslash, true)
				}
			case 'u':
				if j+1 < len(b) && b[j] == '&' && (b[j+1] == '\'' || b[j+1] == '"') {
					t, i = l.quoted(j+2, b[j+1], false, false)
					t.esc = true
				}
			}
		}
	case '0' <= c && c <= '9' || c == '.':
		j := i + 1
		for j < len(b) && (isIdentByte(b[j]) || b[j] == '.') && b[j] != '$' {
			j++
		}
		t.kind, i = tokOther, j
	default:
		t.kind, i = tokOp, i+1
	}
	if t.kind != tokString && t.kind != tokIdent {
		t.end = i
	}
	l.i = i
	return t
}

// skipComment skips the rest of a /* comment, which nests.
func skipComment(b []byte, i int) int {
	for depth := 1; i < len(b); {
		switch {
		case i+1 < len(b) && b[i] == '/' && b[i+1] == '*':
			depth++
			i += 2
		case i+1 < len(b) && b[i] == '*' && b[i+1] == '/':
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return len(b)
}

// quoted reads a literal or quoted identifier whose body starts at i and
// ends at an undoubled q. backslash: \ escapes the next byte. plain: a
// '...' literal, whose backslashes depend on standard_conforming_strings.
// An unterminated one runs to the end.
func (l *sqlLexer) quoted(i int, q byte, backslash, plain bool) (token, int) {
	b := l.b
	t := token{kind: tokString, start: i}
	if q == '"' {
		t.kind = tokIdent
	}
	for i < len(b) {
		switch b[i] {
		case '\\':
			if plain {
				l.sawBackslash = true
			}
			if backslash {
				t.esc = true
				i += 2
				continue
			}
		case q:
			if i+1 < len(b) && b[i+1] == q {
				t.esc = true
				i += 2
				continue
			}
			t.end = i
			return t, i + 1
		}
		i++
	}
	t.end = len(b)
	return t, len(b)
}

// dollar reads what starts with $ at i: a $n parameter, a dollar-quoted
// string ($$...$$, $tag$...$tag$) or a lone $.
func (l *sqlLexer) dollar(i int) (token, int) {
	b := l.b
	j := i + 1
	if j < len(b) && '0' <= b[j] && b[j] <= '9' {
		for j < len(b) && '0' <= b[j] && b[j] <= '9' {
			j++
		}
		return token{kind: tokOther, start: i, end: j}, j
	}
	for j < len(b) && isIdentByte(b[j]) && b[j] != '$' {
		j++
	}
	if j == len(b) || b[j] != '$' {
		return token{kind: tokOp, start: i, end: i + 1}, i + 1
	}
	delim := b[i : j+1]
	body := j + 1
	k := bytes.Index(b[body:], delim)
	if k < 0 {
		return token{kind: tokString, start: body, end: len(b)}, len(b)
	}
	return token{kind: tokString, start: body, end: body + k}, body + k + len(delim)
}
