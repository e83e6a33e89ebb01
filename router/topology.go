package router

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Role is what a node says it is.
type Role int

const (
	RoleUnknown Role = iota
	RolePrimary
	RoleStandby
)

func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleStandby:
		return "standby"
	}
	return "unknown"
}

// NodeState is what the monitor last learned about one node.
type NodeState struct {
	Name       string
	Host       string
	Port       int
	Up         bool
	Role       Role
	LSN        uint64 // primary: current WAL LSN; standby: last replayed LSN
	ReceiveLSN uint64 // standby: last received LSN
	Timeline   int
	// Upstream is the sender a standby's WAL receiver streams from (host, port).
	UpstreamHost string
	UpstreamPort int
	LagBytes     int64 // standby: primary LSN - replayed LSN (-1 unknown)
	LastCheck    time.Time
	LastChange   time.Time // last change of Up or Role
	LastError    string
	// Suspect: a backend connection to this node just broke. New sessions
	// are held (not routed to it) until a check that started after that
	// answers; existing sessions are left alone (one pg_terminate_backend
	// must not end them all).
	Suspect   bool
	suspectAt time.Time
	// seenHost and seenPort are the sender this node was last seen
	// streaming from as a standby, at seenAt. They outlive a failed check
	// or a WAL receiver that is reconnecting for evidenceGrace, so one
	// missed answer from a standby does not hand the choice between two
	// writable nodes to the timeline rule. reportUp sets them and forgets
	// them when the node answers as a primary, so they are empty on one.
	seenHost string
	seenPort int
	seenAt   time.Time
}

// evidenceGrace is how long a standby's last seen upstream still counts as
// evidence while the standby cannot be asked (its check failed) or shows no
// WAL receiver (reconnecting): one timed out check and two periods.
func evidenceGrace(timeout, period time.Duration) time.Duration { return timeout + 2*period }

// Addr is host:port.
func (n *NodeState) Addr() string { return net.JoinHostPort(n.Host, strconv.Itoa(n.Port)) }

// hasAddr reports whether addr is n.Addr(), without building a string
// (every checkout asks).
func (n *NodeState) hasAddr(addr string) bool {
	var a [64]byte
	b := a[:0]
	if strings.IndexByte(n.Host, ':') >= 0 {
		b = append(append(append(b, '['), n.Host...), ']')
	} else {
		b = append(b, n.Host...)
	}
	b = strconv.AppendInt(append(b, ':'), int64(n.Port), 10)
	return string(b) == addr
}

// Topology is an immutable snapshot of the cluster as pgwrt sees it. Routing
// reads it lock-free through an atomic pointer; a new snapshot replaces it
// whenever anything changes, and Epoch bumps whenever the chosen primary
// changes (including to or from "none").
type Topology struct {
	Epoch   uint64
	Primary int // index into Nodes, -1 when no primary is known
	Nodes   []NodeState
	Alarm   string    // set when pgwrt refuses to choose (e.g. two primaries)
	Since   time.Time // when Primary last changed
	// changed is closed when this snapshot is replaced.
	changed chan struct{}
}

// PrimaryNode returns the chosen primary, or nil.
func (t *Topology) PrimaryNode() *NodeState {
	if t.Primary < 0 || t.Primary >= len(t.Nodes) {
		return nil
	}
	return &t.Nodes[t.Primary]
}

// Changed returns a channel closed when this snapshot is superseded.
func (t *Topology) Changed() <-chan struct{} { return t.changed }

// choosePrimary applies the failover contract (design §5) to a set of node
// states: the only node that is up and not in recovery; among several, the
// one the standbys stream from; otherwise the one on the newest timeline;
// otherwise nobody, with an alarm. why says which rule chose.
//
// A standby's evidence is what it says now. A standby that is down, or up
// with no WAL receiver, still counts for the sender it was last seen
// streaming from until grace has passed since then; anything it says that
// names another sender, or its own promotion, ends that at once.
func choosePrimary(nodes []NodeState, now time.Time, grace time.Duration) (prim int, alarm, why string) {
	var cands []int
	for i := range nodes {
		if nodes[i].Up && nodes[i].Role == RolePrimary {
			cands = append(cands, i)
		}
	}
	switch len(cands) {
	case 0:
		return -1, "", "no node accepts writes"
	case 1:
		return cands[0], "", "the only node that accepts writes"
	}
	// Several nodes accept writes. Standby evidence first.
	best, bestN, bestOld, tie := -1, 0, 0, false
	for _, c := range cands {
		n, old := 0, 0
		for i := range nodes {
			switch streamsFrom(&nodes[i], &nodes[c], now, grace) {
			case evidenceNow:
				n++
			case evidenceSeen:
				n++
				old++
			}
		}
		switch {
		case n > bestN:
			best, bestN, bestOld, tie = c, n, old, false
		case n == bestN && n > 0:
			tie = true
		}
	}
	if best >= 0 && !tie {
		why := fmt.Sprintf("standbys streaming from it: %d", bestN)
		if bestOld > 0 {
			why += fmt.Sprintf(" (%d as last seen, within %s)", bestOld, grace)
		}
		return best, "", why
	}
	// Then the newest timeline.
	best, tie = -1, false
	for _, c := range cands {
		switch {
		case best < 0 || nodes[c].Timeline > nodes[best].Timeline:
			best, tie = c, false
		case nodes[c].Timeline == nodes[best].Timeline:
			tie = true
		}
	}
	if !tie && nodes[best].Timeline > 0 {
		return best, "", fmt.Sprintf("several accept writes, no standby evidence; newest timeline (%d)", nodes[best].Timeline)
	}
	names := ""
	for i, c := range cands {
		if i > 0 {
			names += ", "
		}
		names += nodes[c].Name
	}
	return -1, fmt.Sprintf("several nodes accept writes (%s) and neither standby streams nor timelines single one out; holding clients", names), "no rule singles one out"
}

// evidence is what one node says about a writable node.
type evidence int

const (
	evidenceNone evidence = iota
	evidenceNow           // a standby streaming from it now
	evidenceSeen          // last seen streaming from it, within the grace
)

// streamsFrom says whether node s is evidence for primary.
func streamsFrom(s, primary *NodeState, now time.Time, grace time.Duration) evidence {
	switch {
	case s.Up && s.Role == RoleStandby && s.UpstreamHost != "":
		if sameSender(s.UpstreamHost, s.UpstreamPort, primary) {
			return evidenceNow
		}
	case s.seenHost != "" && now.Sub(s.seenAt) <= grace:
		if sameSender(s.seenHost, s.seenPort, primary) {
			return evidenceSeen
		}
	}
	return evidenceNone
}

// nodesText is the evidence choosePrimary saw, for the log: each node's
// state, timeline and the sender its WAL receiver streams from.
func nodesText(nodes []NodeState, now time.Time) string {
	var b []byte
	for i := range nodes {
		n := &nodes[i]
		if i > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%s=", n.Name)
		if !n.Up {
			b = append(b, "down"...)
		} else {
			b = fmt.Appendf(b, "%s/tl%d", n.Role, n.Timeline)
		}
		switch {
		case n.Up && n.UpstreamHost != "":
			b = fmt.Appendf(b, "<-%s:%d", n.UpstreamHost, n.UpstreamPort)
		case n.seenHost != "":
			b = fmt.Appendf(b, "(was<-%s:%d %s ago)", n.seenHost, n.seenPort, now.Sub(n.seenAt).Round(time.Millisecond))
		}
	}
	return string(b)
}

// sameSender says whether a WAL receiver's sender (host, port) is primary.
func sameSender(host string, port int, primary *NodeState) bool {
	if host == "" || port != primary.Port {
		return false
	}
	if host == primary.Host {
		return true
	}
	a, b := net.ParseIP(host), net.ParseIP(primary.Host)
	if a != nil && b != nil {
		return a.Equal(b)
	}
	return isLoopbackName(host) && isLoopbackName(primary.Host)
}

func isLoopbackName(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// reportUp records a successful check.
func (r *Router) reportUp(name string, st NodeState, began time.Time) {
	r.topoMu.Lock()
	defer r.topoMu.Unlock()
	n := r.nodeLocked(name)
	if n == nil {
		return // removed by a reload
	}
	now := time.Now()
	if !n.Up || n.Role != st.Role {
		r.log.Info("node state changed", "node", n.Name, "up", true, "role", st.Role.String(), "was_up", n.Up, "was_role", n.Role.String())
		n.LastChange = now
	}
	n.Up, n.Role = true, st.Role
	n.LSN, n.ReceiveLSN, n.Timeline = st.LSN, st.ReceiveLSN, st.Timeline
	n.UpstreamHost, n.UpstreamPort = st.UpstreamHost, st.UpstreamPort
	switch {
	case st.Role == RoleStandby && st.UpstreamHost != "":
		n.seenHost, n.seenPort, n.seenAt = st.UpstreamHost, st.UpstreamPort, now
	case st.Role == RolePrimary:
		n.seenHost, n.seenPort = "", 0
	}
	n.LastCheck = now
	n.LastError = ""
	if n.Suspect && began.After(n.suspectAt) {
		n.Suspect = false
	}
	r.publishLocked()
}

// suspect marks a node whose backend connection just broke; see
// NodeState.Suspect.
func (r *Router) suspect(name string) {
	r.topoMu.Lock()
	if n := r.nodeLocked(name); n != nil && n.Up {
		n.Suspect = true
		n.suspectAt = time.Now()
		r.publishLocked()
	}
	r.topoMu.Unlock()
}

// reportDown records a failed check; down says whether the node now counts as
// down (definitive failure or retries used up).
func (r *Router) reportDown(name string, err error, down bool) {
	r.topoMu.Lock()
	defer r.topoMu.Unlock()
	n := r.nodeLocked(name)
	if n == nil {
		return
	}
	n.LastCheck = time.Now()
	n.LastError = err.Error()
	if down && n.Up {
		r.log.Warn("node down", "node", n.Name, "role", n.Role.String(), "error", err)
		n.Up = false
		n.Suspect = false
		n.Role = RoleUnknown
		n.LastChange = time.Now()
	} else if !down {
		r.log.Info("health check failed", "node", n.Name, "error", err)
	}
	r.publishLocked()
}

func (r *Router) nodeLocked(name string) *NodeState {
	for i := range r.nodes {
		if r.nodes[i].Name == name {
			return &r.nodes[i]
		}
	}
	return nil
}

// publishLocked builds and swaps in a new snapshot. Caller holds topoMu.
func (r *Router) publishLocked() {
	old := r.topo.Load()
	nodes := make([]NodeState, len(r.nodes))
	copy(nodes, r.nodes)
	var plsn uint64
	cfg := r.config()
	now := time.Now()
	prim, alarm, why := choosePrimary(nodes, now, evidenceGrace(cfg.HealthCheckTimeout.D(), cfg.HealthCheckPeriod.D()))
	if prim >= 0 {
		plsn = nodes[prim].LSN
	}
	for i := range nodes {
		nodes[i].LagBytes = -1
		if prim >= 0 && nodes[i].Up && nodes[i].Role == RoleStandby && plsn >= nodes[i].LSN {
			nodes[i].LagBytes = int64(plsn - nodes[i].LSN)
		}
		if i == prim {
			nodes[i].LagBytes = 0
		}
	}
	t := &Topology{Epoch: old.Epoch, Primary: prim, Nodes: nodes, Alarm: alarm, Since: old.Since, changed: make(chan struct{})}
	oldName := ""
	if p := old.PrimaryNode(); p != nil {
		oldName = p.Name
	}
	newName := ""
	if p := t.PrimaryNode(); p != nil {
		newName = p.Name
	}
	moved := oldName != newName
	if moved {
		t.Epoch++
		if oldName != "" && newName == "" {
			r.holdStart = now
		}
		t.Since = now
	}
	if alarm != "" && alarm != old.Alarm {
		r.log.Error("primary alarm", "alarm", alarm)
	}
	r.topo.Store(t)
	close(old.changed)
	if moved {
		attrs := []any{"epoch", t.Epoch, "old", oldName, "new", newName, "why", why, "nodes", nodesText(nodes, now)}
		if newName != "" && !r.holdStart.IsZero() {
			attrs = append(attrs, "no_primary_for", time.Since(r.holdStart).Round(time.Millisecond).String())
			r.holdStart = time.Time{}
		}
		r.log.Info("primary changed", attrs...)
		go r.onPrimaryChange(oldName)
	}
}
