package router

// Client authentication: hba decides the method; the method decides what
// pgwrt knows when it logs in to a backend for this client (a password, or
// nothing, in which case the backend's own challenge is relayed to the
// client), and whether the client may take an idle backend that someone
// else logged in.

import (
	"crypto/sha256"
	"errors"
	"time"

	"pgwrt/config"
	"pgwrt/router/wire"
)

// authenticate applies the first matching hba rule to the client. It
// returns how to log in to a backend for it, and whether it may take an
// idle pooled backend (only with a password a backend accepted before).
func (s *session) authenticate(cfg *config.Config) (lp loginParams, allowIdle bool, err error) {
	r := s.r
	method := "reject"
	for _, rule := range cfg.EffectiveHBA() {
		if rule.Matches(s.db, s.user, s.remote) {
			method = rule.Method
			break
		}
	}
	lp = loginParams{keys: s.st.Keys, params: s.st.Params, key: makePoolKey(s.st.Params)}
	allowIdle = true
	switch method {
	case "reject":
		r.log.Info("client rejected by hba", "remote", s.remote.String(), "user", s.user, "database", s.db)
		return lp, false, errorf(codeAuthRejected, "pgwrt: no hba rule allows host %q, user %q, database %q", s.remote.String(), s.user, s.db)
	case "password":
		pw, err := s.askPassword()
		if err != nil {
			return lp, false, err
		}
		lp.password, lp.havePW, lp.fromClient = pw, true, true
		allowIdle = r.verifiedPassword(s.user, pw)
	case "trust":
		for _, u := range cfg.Users {
			// A [[user]] may only set pool options: without a
			// password, the server's own challenge goes to the client.
			if u.Name == s.user && u.Password != "" {
				lp.password, lp.havePW = u.Password, true
			}
		}
		if !lp.havePW {
			lp.relay = s.relayAuth
		}
	}
	return lp, allowIdle, nil
}

func (s *session) askPassword() (string, error) {
	if _, err := s.conn.Write(wire.AppendAuthCleartext(nil)); err != nil {
		return "", err
	}
	rd := wire.Reader{R: s.conn, Max: 1024}
	m, err := rd.Read()
	if err != nil {
		if errors.Is(err, wire.ErrMalformed) {
			return "", errorf(codeProtocol, "pgwrt: invalid password packet")
		}
		return "", err
	}
	if m.Type != 'p' {
		return "", errorf(codeProtocol, "pgwrt: expected a password message")
	}
	pw, _, ok := wire.CString(m.Body)
	if !ok || pw == "" {
		return "", errorf(codeAuthFailed, "pgwrt: empty password for user %q", s.user)
	}
	return pw, nil
}

// relayAuth passes a backend's authentication request to the client and
// returns its answer (method trust without a stored password).
func (s *session) relayAuth(typ byte, body []byte) ([]byte, error) {
	s.conn.SetDeadline(time.Now().Add(clientLoginTimeout))
	defer s.conn.SetDeadline(time.Time{})
	msg, st := wire.Begin(nil, typ)
	msg = append(msg, body...)
	if _, err := s.conn.Write(wire.Finish(msg, st)); err != nil {
		return nil, err
	}
	if len(body) >= 4 && body[3] == 12 { // SASLFinal expects no answer
		return nil, nil
	}
	rd := wire.Reader{R: s.conn, Max: 8192}
	m, err := rd.Read()
	if err != nil {
		return nil, err
	}
	if m.Type != 'p' {
		return nil, errorf(codeProtocol, "pgwrt: expected an authentication response")
	}
	return append([]byte(nil), m.Body...), nil
}

// Password verification for reuse of pooled connections: a client may take
// an idle backend logged in by someone else only if its password is one the
// backend accepted for that user. Only a salted hash is kept.
func (r *Router) passwordHash(user, pw string) [32]byte {
	h := sha256.New()
	h.Write(r.pepper[:])
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(pw))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

const verifiedTTL = time.Hour

type verified struct {
	hash [32]byte
	at   time.Time
}

func (r *Router) verifiedPassword(user, pw string) bool {
	h := r.passwordHash(user, pw)
	r.vmu.Lock()
	defer r.vmu.Unlock()
	v, ok := r.verified[user]
	return ok && v.hash == h && time.Since(v.at) < verifiedTTL
}

func (r *Router) rememberPassword(user, pw string) {
	h := r.passwordHash(user, pw)
	r.vmu.Lock()
	r.verified[user] = verified{hash: h, at: time.Now()}
	r.vmu.Unlock()
}
