// Package wire is pgwrt's boundary with the PostgreSQL frontend/backend
// protocol 3.0: reading startup packets and whole small messages, and
// building the few messages pgwrt itself sends. The hot forwarding path does
// not use it beyond Header; it frames, it does not parse.
//
// github.com/jackc/pgproto3/v2 is used only in this package (and only for
// decoding where it fits), so moving to pgx/v5/pgproto3 is one edit.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgproto3/v2"
)

// Special startup codes (protocol version field of the startup packet).
const (
	ProtocolVersion3 = 3<<16 | 0
	CodeCancel       = 80877102
	CodeSSL          = 80877103
	CodeGSSENC       = 80877104
)

// MaxStartupLen bounds a startup packet, as PostgreSQL does (MAX_STARTUP_PACKET_LENGTH).
const MaxStartupLen = 10000

// ErrMalformed marks input that breaks the protocol.
var ErrMalformed = errors.New("malformed message")

// Startup is a parsed startup-phase packet.
type Startup struct {
	Code   uint32            // ProtocolVersion3, CodeSSL, CodeGSSENC or CodeCancel
	Params map[string]string // for ProtocolVersion3
	// Keys keeps the order the client sent the parameters in.
	Keys []string
	// For CodeCancel.
	PID, Secret uint32
}

// ReadStartup reads one startup-phase packet (startup, SSLRequest,
// GSSENCRequest or CancelRequest).
func ReadStartup(r io.Reader) (*Startup, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:4]))
	if n < 8 || n > MaxStartupLen {
		return nil, fmt.Errorf("%w: startup packet length %d", ErrMalformed, n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	code := binary.BigEndian.Uint32(body[:4])
	s := &Startup{Code: code}
	switch code {
	case CodeSSL, CodeGSSENC:
		if n != 8 {
			return nil, fmt.Errorf("%w: bad length %d for request %d", ErrMalformed, n, code)
		}
		return s, nil
	case CodeCancel:
		if n != 16 {
			return nil, fmt.Errorf("%w: bad cancel request length %d", ErrMalformed, n)
		}
		s.PID = binary.BigEndian.Uint32(body[4:8])
		s.Secret = binary.BigEndian.Uint32(body[8:12])
		return s, nil
	}
	if code>>16 != 3 {
		return nil, fmt.Errorf("%w: unsupported protocol version %d.%d", ErrMalformed, code>>16, code&0xffff)
	}
	var m pgproto3.StartupMessage
	if err := m.Decode(body); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	s.Params = m.Parameters
	// pgproto3 gives a map; recover the order from the raw bytes so that
	// the backend sees what the client sent.
	rest := body[4:]
	for len(rest) > 1 {
		i := indexZero(rest)
		if i <= 0 {
			break
		}
		k := string(rest[:i])
		rest = rest[i+1:]
		j := indexZero(rest)
		if j < 0 {
			break
		}
		rest = rest[j+1:]
		s.Keys = append(s.Keys, k)
	}
	if s.Params["user"] == "" {
		return nil, fmt.Errorf("%w: no user name in startup packet", ErrMalformed)
	}
	return s, nil
}

func indexZero(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// AppendStartup encodes a protocol 3.0 startup packet with the parameters in
// the given order.
func AppendStartup(dst []byte, keys []string, params map[string]string) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, ProtocolVersion3)
	for _, k := range keys {
		dst = append(dst, k...)
		dst = append(dst, 0)
		dst = append(dst, params[k]...)
		dst = append(dst, 0)
	}
	dst = append(dst, 0)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start))
	return dst
}

// AppendCancel encodes a CancelRequest.
func AppendCancel(dst []byte, pid, secret uint32) []byte {
	dst = binary.BigEndian.AppendUint32(dst, 16)
	dst = binary.BigEndian.AppendUint32(dst, CodeCancel)
	dst = binary.BigEndian.AppendUint32(dst, pid)
	return binary.BigEndian.AppendUint32(dst, secret)
}

// Begin starts a typed message; Finish fills in its length.
func Begin(dst []byte, typ byte) ([]byte, int) {
	start := len(dst)
	return append(dst, typ, 0, 0, 0, 0), start
}

// Finish writes the length of the message begun at start.
func Finish(dst []byte, start int) []byte {
	binary.BigEndian.PutUint32(dst[start+1:], uint32(len(dst)-start-1))
	return dst
}

// AppendString appends a NUL-terminated string.
func AppendString(dst []byte, s string) []byte {
	return append(append(dst, s...), 0)
}

// AppendReadyForQuery appends ReadyForQuery with status I, T or E.
func AppendReadyForQuery(dst []byte, status byte) []byte {
	return append(dst, 'Z', 0, 0, 0, 5, status)
}

// AppendAuthOK appends AuthenticationOk.
func AppendAuthOK(dst []byte) []byte {
	return append(dst, 'R', 0, 0, 0, 8, 0, 0, 0, 0)
}

// AppendAuthCleartext appends AuthenticationCleartextPassword.
func AppendAuthCleartext(dst []byte) []byte {
	return append(dst, 'R', 0, 0, 0, 8, 0, 0, 0, 3)
}

// AppendParameterStatus appends ParameterStatus.
func AppendParameterStatus(dst []byte, name, value string) []byte {
	dst, s := Begin(dst, 'S')
	dst = AppendString(dst, name)
	dst = AppendString(dst, value)
	return Finish(dst, s)
}

// AppendBackendKeyData appends BackendKeyData.
func AppendBackendKeyData(dst []byte, pid, secret uint32) []byte {
	dst = append(dst, 'K', 0, 0, 0, 12)
	dst = binary.BigEndian.AppendUint32(dst, pid)
	return binary.BigEndian.AppendUint32(dst, secret)
}

// AppendQuery appends a simple Query.
func AppendQuery(dst []byte, sql string) []byte {
	dst, s := Begin(dst, 'Q')
	dst = AppendString(dst, sql)
	return Finish(dst, s)
}

// AppendTerminate appends Terminate.
func AppendTerminate(dst []byte) []byte { return append(dst, 'X', 0, 0, 0, 4) }

// Error is a PostgreSQL error or notice as pgwrt sends or receives it.
type Error struct {
	Severity string // ERROR, FATAL, PANIC (or WARNING, NOTICE … for notices)
	Code     string // SQLSTATE
	Message  string
	Detail   string
	Hint     string
}

func (e *Error) Error() string {
	s := e.Severity + ": " + e.Message + " (SQLSTATE " + e.Code + ")"
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// AppendError appends an ErrorResponse for e.
func AppendError(dst []byte, e *Error) []byte {
	dst, s := Begin(dst, 'E')
	dst = append(dst, 'S')
	dst = AppendString(dst, e.Severity)
	dst = append(dst, 'V')
	dst = AppendString(dst, e.Severity)
	dst = append(dst, 'C')
	dst = AppendString(dst, e.Code)
	dst = append(dst, 'M')
	dst = AppendString(dst, e.Message)
	if e.Detail != "" {
		dst = append(dst, 'D')
		dst = AppendString(dst, e.Detail)
	}
	if e.Hint != "" {
		dst = append(dst, 'H')
		dst = AppendString(dst, e.Hint)
	}
	dst = append(dst, 0)
	return Finish(dst, s)
}

// ParseError decodes the body of an ErrorResponse or NoticeResponse.
func ParseError(body []byte) *Error {
	var m pgproto3.ErrorResponse
	if err := m.Decode(body); err != nil {
		return &Error{Severity: "ERROR", Code: "XX000", Message: "unreadable error from server"}
	}
	sev := m.SeverityUnlocalized
	if sev == "" {
		sev = m.Severity
	}
	return &Error{Severity: sev, Code: m.Code, Message: m.Message, Detail: m.Detail, Hint: m.Hint}
}

// Msg is one whole message read by a Reader.
type Msg struct {
	Type byte
	Body []byte // valid until the next Read
}

// Reader reads whole messages from a stream; it is for the control paths
// (login, health checks, reset), not for forwarding. Bodies larger than
// Max are refused.
//
// A Read cut short by a deadline (a poke, or the end of a wait) keeps what it
// had read, and the next Read on the same Reader carries on from there: a
// half-read message never leaves the stream out of step, so its body is never
// taken for the next header.
type Reader struct {
	R   io.Reader
	Max int
	hdr [5]byte
	buf []byte
	got int // bytes of the current message read so far (header, then body)
}

// Read reads the next message.
func (r *Reader) Read() (Msg, error) {
	if r.got < len(r.hdr) {
		n, err := io.ReadFull(r.R, r.hdr[r.got:])
		r.got += n
		if err != nil {
			return Msg{}, err
		}
	}
	n := int(binary.BigEndian.Uint32(r.hdr[1:])) - 4
	max := r.Max
	if max == 0 {
		max = 1 << 20
	}
	if n < 0 || n > max {
		r.got = 0
		return Msg{}, fmt.Errorf("%w: message %q with length %d", ErrMalformed, r.hdr[0], n+4)
	}
	if cap(r.buf) < n {
		b := make([]byte, n)
		copy(b, r.buf[:r.got-len(r.hdr)])
		r.buf = b
	}
	b := r.buf[:n]
	k, err := io.ReadFull(r.R, b[r.got-len(r.hdr):])
	r.got += k
	if err != nil {
		return Msg{}, err
	}
	r.got = 0
	return Msg{Type: r.hdr[0], Body: b}, nil
}

// CString splits a NUL-terminated string off b.
func CString(b []byte) (string, []byte, bool) {
	i := indexZero(b)
	if i < 0 {
		return "", nil, false
	}
	return string(b[:i]), b[i+1:], true
}
