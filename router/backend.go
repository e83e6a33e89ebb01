package router

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"time"

	"pgwrt/config"
	"pgwrt/router/scram"
	"pgwrt/router/wire"
)

// backend is one connection to a PostgreSQL node, logged in and at a
// ReadyForQuery boundary whenever it is not owned by a session.
type backend struct {
	conn     net.Conn
	node     string // backend name (config)
	addr     string
	key      poolKey
	pid      uint32 // the real BackendKeyData, used only to forward cancels
	secret   uint32
	params   map[string]string // ParameterStatus values as the backend last reported them
	reported paramSet          // the same, in the order reported (transaction mode compares it)
	fit      struct {          // paramsFit's memo: the client parameters last found to fit
		ok  bool
		rep uint64 // reported.ver then
		key string // the client's paramsKey
	}
	created  time.Time
	lastUsed time.Time

	pool *Pool // the pool it is active or idle in (set by pools.opened)

	// loops: the transaction loops (by index bit) whose epoll set holds
	// its socket (txnloop_linux.go).
	loops uint8

	// stmts: the protocol-level statements pgwrt prepared on it in
	// transaction mode (prepared.go); nil until the first.
	stmts *backendStmts

	// intrusive LRU list of idle backends (pools.head, pools.tail)
	prev, next *backend
}

// fitFor reports whether b may serve a session on prim now: it is
// connected to that node and not past server_lifetime.
func (b *backend) fitFor(prim *NodeState, cfg *config.Config, now time.Time) bool {
	return prim != nil && b.node == prim.Name && prim.hasAddr(b.addr) && !b.expired(cfg, now)
}

// expired: older than server_lifetime.
func (b *backend) expired(cfg *config.Config, now time.Time) bool {
	return cfg.ServerLifetime > 0 && now.Sub(b.created) > cfg.ServerLifetime.D()
}

func (b *backend) close() {
	if closeNow(b.conn) {
		return
	}
	if b.conn != nil {
		b.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		b.conn.Write(wire.AppendTerminate(nil))
		b.conn.Close()
	}
}

// authRelay lets a login hand authentication requests the pooler cannot
// answer itself to the client (pass-through): it forwards the backend's
// AuthenticationXXX message and returns the client's response body.
type authRelay func(typ byte, body []byte) (resp []byte, err error)

// loginParams describes the session a backend connection is opened for.
type loginParams struct {
	keys     []string
	params   map[string]string
	key      poolKey // makePoolKey(params), made once
	password string
	havePW   bool
	// fromClient: password is what the client typed (hba password); a
	// backend that accepts it vouches for it (rememberPassword).
	fromClient bool
	relay      authRelay // may be nil
}

// dialBackend connects to addr and logs in. Errors from PostgreSQL are
// returned as *wire.Error so they can reach the client unchanged.
func dialBackend(ctx context.Context, cfg *config.Config, cache *scram.Cache, node, addr string, lp loginParams) (*backend, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.ServerConnectTimeout.D())
	defer cancel()
	c, err := dialContext(ctx, cfg, addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// A cancelled context interrupts the login as a deadline would.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	b := &backend{conn: c, node: node, addr: addr, params: make(map[string]string), created: time.Now()}
	err = b.login(cache, lp)
	if !stop() {
		// The context ended (primary changed, or out of time): say so
		// rather than the i/o timeout it caused.
		err = ctx.Err()
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	b.lastUsed = time.Now()
	return b, nil
}

func (b *backend) write(p []byte) error {
	_, err := b.conn.Write(p)
	return err
}

func (b *backend) login(cache *scram.Cache, lp loginParams) error {
	if err := b.write(wire.AppendStartup(nil, lp.keys, lp.params)); err != nil {
		return err
	}
	rd := wire.Reader{R: b.conn, Max: 64 << 10}
	var sc *scram.Client
	user := lp.params["user"]
	for {
		m, err := rd.Read()
		if err != nil {
			return err
		}
		switch m.Type {
		case 'E':
			return wire.ParseError(m.Body)
		case 'N':
		case 'S':
			k, rest, ok := wire.CString(m.Body)
			v, _, ok2 := wire.CString(rest)
			if ok && ok2 {
				b.params[k] = v
				b.reported.set(k, v)
			}
		case 'K':
			if len(m.Body) != 8 {
				return fmt.Errorf("%w: BackendKeyData length %d", wire.ErrMalformed, len(m.Body))
			}
			b.pid = binary.BigEndian.Uint32(m.Body)
			b.secret = binary.BigEndian.Uint32(m.Body[4:])
		case 'Z':
			return nil
		case 'R':
			if len(m.Body) < 4 {
				return fmt.Errorf("%w: short authentication message", wire.ErrMalformed)
			}
			kind := binary.BigEndian.Uint32(m.Body)
			if kind == 0 {
				continue
			}
			if !lp.havePW {
				if lp.relay == nil {
					return errorf(codeAuthFailed, "pgwrt has no password to log in to the server as %q", user)
				}
				if kind == 12 { // SASLFinal: nothing to answer
					if _, err := lp.relay(m.Type, m.Body); err != nil {
						return err
					}
					continue
				}
				resp, err := lp.relay(m.Type, m.Body)
				if err != nil {
					return err
				}
				if err := b.writeMsg('p', resp); err != nil {
					return err
				}
				continue
			}
			switch kind {
			case 3: // cleartext
				if err := b.writeMsg('p', append([]byte(lp.password), 0)); err != nil {
					return err
				}
			case 5: // md5
				if len(m.Body) != 8 {
					return fmt.Errorf("%w: bad md5 salt", wire.ErrMalformed)
				}
				if err := b.writeMsg('p', append(md5Password(user, lp.password, m.Body[4:8]), 0)); err != nil {
					return err
				}
			case 10: // SASL
				if !hasMechanism(m.Body[4:], scram.Mechanism) {
					return errorf(codeBackendConnect, "server offers no SASL mechanism pgwrt supports")
				}
				sc = scram.NewClient(lp.password, cache)
				first := sc.First()
				p := append([]byte(scram.Mechanism), 0)
				p = binary.BigEndian.AppendUint32(p, uint32(len(first)))
				p = append(p, first...)
				if err := b.writeMsg('p', p); err != nil {
					return err
				}
			case 11: // SASLContinue
				if sc == nil {
					return fmt.Errorf("%w: SASLContinue before SASL", wire.ErrMalformed)
				}
				final, err := sc.Final(m.Body[4:])
				if err != nil {
					return err
				}
				if err := b.writeMsg('p', final); err != nil {
					return err
				}
			case 12: // SASLFinal
				if sc == nil {
					return fmt.Errorf("%w: SASLFinal before SASL", wire.ErrMalformed)
				}
				if err := sc.Verify(m.Body[4:]); err != nil {
					return err
				}
			default:
				return errorf(codeBackendConnect, "server asks for authentication method %d, which pgwrt does not support", kind)
			}
		default:
			return fmt.Errorf("%w: unexpected message %q during login", wire.ErrMalformed, m.Type)
		}
	}
}

func (b *backend) writeMsg(typ byte, body []byte) error {
	p, s := wire.Begin(make([]byte, 0, len(body)+5), typ)
	p = append(p, body...)
	return b.write(wire.Finish(p, s))
}

func hasMechanism(list []byte, mech string) bool {
	for len(list) > 1 {
		s, rest, ok := wire.CString(list)
		if !ok {
			return false
		}
		if s == mech {
			return true
		}
		list = rest
	}
	return false
}

func md5Password(user, password string, salt []byte) []byte {
	h := md5.Sum([]byte(password + user))
	inner := hex.EncodeToString(h[:])
	h2 := md5.Sum(append([]byte(inner), salt...))
	return []byte("md5" + hex.EncodeToString(h2[:]))
}

// exec runs a simple query and returns the first row as text (nil for
// NULLs), reading until ReadyForQuery. ParameterStatus messages update the
// backend's parameter record. A *wire.Error is returned for SQL errors, with
// the connection still usable.
func (b *backend) exec(sql string, timeout time.Duration) ([]*string, byte, error) {
	return b.execOn(&wire.Reader{R: b.conn, Max: 1 << 20}, sql, timeout)
}

// execOn is exec reading through rd, for a connection that keeps one Reader
// across reads that a deadline may cut short (the monitor's).
func (b *backend) execOn(rd *wire.Reader, sql string, timeout time.Duration) ([]*string, byte, error) {
	b.conn.SetDeadline(deadline(timeout))
	defer b.conn.SetDeadline(time.Time{})
	if err := b.write(wire.AppendQuery(nil, sql)); err != nil {
		return nil, 0, err
	}
	return b.readResult(rd)
}

func (b *backend) readResult(rd *wire.Reader) ([]*string, byte, error) {
	var row []*string
	var qerr error
	for {
		m, err := rd.Read()
		if err != nil {
			return nil, 0, err
		}
		switch m.Type {
		case 'D':
			if row == nil {
				row, err = parseDataRow(m.Body)
				if err != nil {
					return nil, 0, err
				}
			}
		case 'E':
			qerr = wire.ParseError(m.Body)
		case 'S':
			k, rest, ok := wire.CString(m.Body)
			v, _, ok2 := wire.CString(rest)
			if ok && ok2 {
				b.params[k] = v
				b.reported.set(k, v)
			}
		case 'Z':
			if len(m.Body) != 1 {
				return nil, 0, fmt.Errorf("%w: ReadyForQuery length", wire.ErrMalformed)
			}
			return row, m.Body[0], qerr
		}
	}
}

func parseDataRow(body []byte) ([]*string, error) {
	if len(body) < 2 {
		return nil, wire.ErrMalformed
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	row := make([]*string, n)
	for i := 0; i < n; i++ {
		if len(body) < 4 {
			return nil, wire.ErrMalformed
		}
		l := int(int32(binary.BigEndian.Uint32(body)))
		body = body[4:]
		if l < 0 {
			continue
		}
		if l > len(body) {
			return nil, wire.ErrMalformed
		}
		s := string(body[:l])
		row[i] = &s
		body = body[l:]
	}
	return row, nil
}
