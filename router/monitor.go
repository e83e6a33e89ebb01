package router

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"pgwrt/config"
	"pgwrt/router/wire"
)

// checkSQL asks a node for its role and the facts the failover contract
// needs: WAL position, timeline, and which sender a standby streams from.
const checkSQL = `SELECT pg_is_in_recovery(),
 CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
 pg_last_wal_receive_lsn(),
 CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver)
      ELSE ('x'||substr(pg_walfile_name(pg_current_wal_lsn()),1,8))::bit(32)::int END,
 (SELECT sender_host FROM pg_stat_wal_receiver),
 (SELECT sender_port FROM pg_stat_wal_receiver)`

// monitor keeps one persistent connection to one node and reports what it
// learns. Between checks it keeps reading the connection, so a promotion
// (PostgreSQL 14+ reports in_hot_standby=off as ParameterStatus) or an
// administrator shutdown (FATAL 57P01) is heard at once.
type monitor struct {
	r    *Router
	name string
	addr string

	mu   sync.Mutex
	conn *backend
	// rd reads conn, both while waiting between checks and during a
	// check, and keeps its place when a poke cuts a read short.
	rd      wire.Reader
	waiting bool // in waitNext: a poke may interrupt the read
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newMonitor(r *Router, b config.Backend) *monitor {
	return &monitor{r: r, name: b.ID(), addr: b.Addr(), wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// poke asks for an immediate check.
func (m *monitor) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
	// Interrupt the wait between checks, never a check in progress: a
	// check cut short would read as a timeout and mark a healthy node down.
	m.mu.Lock()
	if m.conn != nil && m.waiting {
		m.conn.conn.SetReadDeadline(time.Now())
	}
	m.mu.Unlock()
}

func (m *monitor) close() {
	close(m.stop)
	m.poke()
	<-m.done
}

func (m *monitor) run() {
	defer close(m.done)
	defer func() {
		m.mu.Lock()
		if m.conn != nil {
			m.conn.close()
			m.conn = nil
		}
		m.mu.Unlock()
	}()
	failures := 0
	for {
		select {
		case <-m.stop:
			return
		default:
		}
		cfg := m.r.config()
		began := time.Now()
		st, class, err := m.check(cfg)
		if err != nil {
			failures++
			// No answer in time, or a node that refuses or is shutting
			// down, is down now: a frozen primary must not hold clients.
			// Other errors (a reset, too many connections) are retried
			// every fast period before they count.
			down := class != checkTransient || failures > cfg.HealthCheckMaxRetries
			m.r.reportDown(m.name, err, down)
		} else {
			failures = 0
			m.r.reportUp(m.name, st, began)
		}
		m.waitNext(cfg, failures > 0)
	}
}

// checkClass sorts failed checks.
type checkClass int

const (
	checkTransient  checkClass = iota // retried before the node is marked down
	checkTimeout                      // no answer within health_check_timeout
	checkDefinitive                   // refused, shutting down, starting up, bad login
)

func classify(err error) checkClass {
	var ne interface{ Timeout() bool }
	if errors.As(err, &ne) && ne.Timeout() {
		return checkTimeout
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return checkDefinitive
	}
	var we *wire.Error
	if errors.As(err, &we) {
		switch {
		case we.Code == "53300": // too many connections: the node serves
			return checkTransient
		case strings.HasPrefix(we.Code, "57P"), strings.HasPrefix(we.Code, "28"), we.Code == "3D000":
			return checkDefinitive
		}
	}
	return checkTransient
}

// waitNext waits one period, or less when no primary is known, while
// listening on the check connection for pushed news.
func (m *monitor) waitNext(cfg *config.Config, failing bool) {
	period := cfg.HealthCheckPeriod.D()
	if fast := cfg.HealthCheckFastPeriod.D(); (failing || m.r.Topology().Primary < 0) && period > fast {
		period = fast
	}
	until := time.Now().Add(period)
	select {
	case <-m.wake:
		return
	default:
	}
	m.mu.Lock()
	b := m.conn
	m.mu.Unlock()
	if b == nil {
		t := time.NewTimer(period)
		defer t.Stop()
		select {
		case <-t.C:
		case <-m.wake:
		case <-m.stop:
		}
		return
	}
	defer func() {
		m.mu.Lock()
		m.waiting = false
		m.mu.Unlock()
	}()
	for time.Now().Before(until) {
		m.mu.Lock()
		select {
		case <-m.wake:
			m.mu.Unlock()
			return
		default:
		}
		m.waiting = true
		b.conn.SetReadDeadline(until)
		m.mu.Unlock()
		msg, err := m.rd.Read()
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return // period over, or poked
			}
			m.dropConn()
			return
		}
		switch msg.Type {
		case 'S':
			k, rest, _ := wire.CString(msg.Body)
			v, _, _ := wire.CString(rest)
			if k == "in_hot_standby" {
				m.r.log.Info("node reports in_hot_standby", "node", m.name, "value", v)
				return // check now
			}
		case 'E':
			e := wire.ParseError(msg.Body)
			m.r.log.Info("node closed the health check connection", "node", m.name, "error", e.Message, "sqlstate", e.Code)
			m.dropConn()
			if strings.HasPrefix(e.Code, "57P") {
				// Shutting down (fast shutdown, switchover) or crashed:
				// down now, not after a re-dial has been refused.
				m.r.reportDown(m.name, e, true)
			}
			return
		}
	}
}

func (m *monitor) dropConn() {
	m.mu.Lock()
	if m.conn != nil {
		m.conn.conn.Close()
		m.conn = nil
	}
	m.mu.Unlock()
}

// check runs one health check on the persistent connection, opening it if
// needed.
func (m *monitor) check(cfg *config.Config) (NodeState, checkClass, error) {
	m.mu.Lock()
	b := m.conn
	m.mu.Unlock()
	timeout := cfg.HealthCheckTimeout.D()
	if b == nil {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c := *cfg
		c.ServerConnectTimeout = config.Duration(timeout)
		lp := loginParams{
			keys:     []string{"user", "database", "application_name"},
			params:   map[string]string{"user": cfg.HealthCheckUser, "database": cfg.HealthCheckDatabase, "application_name": "pgwrt-health"},
			password: cfg.HealthCheckPassword,
			havePW:   true,
		}
		nb, err := dialBackend(ctx, &c, m.r.scram, m.name, m.addr, lp)
		if err != nil {
			return NodeState{}, classify(err), err
		}
		m.mu.Lock()
		m.conn = nb
		m.mu.Unlock()
		m.rd = wire.Reader{R: nb.conn, Max: 1 << 20}
		b = nb
	}
	row, _, err := b.execOn(&m.rd, checkSQL, timeout)
	if err != nil {
		var we *wire.Error
		if !errors.As(err, &we) {
			m.dropConn() // state unknown: a late answer must not be read as the next one
		}
		return NodeState{}, classify(err), err
	}
	if len(row) < 6 || row[0] == nil {
		return NodeState{}, checkTransient, fmt.Errorf("unexpected health check result")
	}
	var st NodeState
	if *row[0] == "t" {
		st.Role = RoleStandby
	} else {
		st.Role = RolePrimary
	}
	st.LSN = parseLSN(row[1])
	st.ReceiveLSN = parseLSN(row[2])
	if row[3] != nil {
		st.Timeline, _ = strconv.Atoi(*row[3])
	}
	if row[4] != nil {
		st.UpstreamHost = *row[4]
	}
	if row[5] != nil {
		st.UpstreamPort, _ = strconv.Atoi(*row[5])
	}
	return st, checkTransient, nil
}

// parseLSN parses "16/B374D848".
func parseLSN(s *string) uint64 {
	if s == nil {
		return 0
	}
	hi, lo, ok := strings.Cut(*s, "/")
	if !ok {
		return 0
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0
	}
	return h<<32 | l
}
