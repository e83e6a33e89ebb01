package router

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"sync"
	"time"

	"pgwrt/router/wire"
)

// sessions maps pgwrt's own BackendKeyData to live sessions, so a
// CancelRequest can be sent on to the backend the client uses right now.
type sessions struct {
	mu sync.Mutex
	m  map[uint32]*session
}

func newSessions() *sessions { return &sessions{m: make(map[uint32]*session)} }

// add registers s under a fresh random key.
func (ss *sessions) add(s *session) {
	var b [8]byte
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for {
		rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) &^ (1 << 31) // positive, like a real PID
		if _, dup := ss.m[pid]; pid != 0 && !dup {
			s.pid, s.secret = pid, binary.BigEndian.Uint32(b[4:])
			ss.m[pid] = s
			return
		}
	}
}

func (ss *sessions) remove(s *session) {
	ss.mu.Lock()
	if ss.m[s.pid] == s {
		delete(ss.m, s.pid)
	}
	ss.mu.Unlock()
}

func (ss *sessions) all() []*session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	out := make([]*session, 0, len(ss.m))
	for _, s := range ss.m {
		out = append(out, s)
	}
	return out
}

func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

// cancel forwards a CancelRequest. Like PostgreSQL, it answers nothing.
func (r *Router) cancel(pid, secret uint32) {
	r.sessions.mu.Lock()
	s := r.sessions.m[pid]
	r.sessions.mu.Unlock()
	if s == nil {
		return
	}
	var a, b [4]byte
	binary.BigEndian.PutUint32(a[:], s.secret)
	binary.BigEndian.PutUint32(b[:], secret)
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		r.log.Warn("cancel request with a wrong secret", "pid", pid)
		return
	}
	s.mu.Lock()
	be := s.be
	s.mu.Unlock()
	if be == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialContext(ctx, r.config(), be.addr)
	if err != nil {
		r.log.Warn("cancel: cannot reach backend", "node", be.node, "error", err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(wire.AppendCancel(nil, be.pid, be.secret))
	r.metrics.cancels.Inc()
	// PostgreSQL closes the connection when done; wait briefly so the
	// request is not cut off.
	var x [1]byte
	c.Read(x[:])
}
