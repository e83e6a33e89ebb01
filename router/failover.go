package router

// Failover: what happens to pgwrt's own connections when the topology's
// epoch bumps (design §5), and how a broken backend connection hurries the
// monitors. Topology itself (what the nodes are, which is primary) is
// written in topology.go.

// pokeMonitors asks every monitor for an immediate check.
func (r *Router) pokeMonitors() {
	r.topoMu.Lock()
	ms := append([]*monitor(nil), r.monitors...)
	r.topoMu.Unlock()
	for _, m := range ms {
		m.poke()
	}
}

// backendFailed is told when a session's backend connection broke: the node
// may be gone, so the monitors look again now instead of at the next period.
func (r *Router) backendFailed(be *backend, err error) {
	r.log.Info("backend connection failed", "node", be.node, "error", err)
	// Its siblings in the cache may be about to fail too (a shutdown ends
	// backends one by one): do not hand them out; new logins will tell.
	r.closeIdle(func(b *backend) bool { return b.node == be.node })
	// Hold new sessions until the node has answered a check again: in a
	// shutdown, sessions hear of it before the monitor does.
	r.suspect(be.node)
	r.pokeMonitors()
}

// onPrimaryChange enforces "nothing stays open that points at a node that is
// not the primary": idle backends to other nodes are closed, and sessions
// bound to them get 57P01 and are closed so their pools reconnect; in
// transaction mode only the transaction on the old node ends.
func (r *Router) onPrimaryChange(oldName string) {
	// Changes can come in quick succession (primary → none → new primary);
	// these run one at a time and act on the topology as it is now, so a
	// late run for "none" cannot end sessions already on the new primary.
	r.changeMu.Lock()
	defer r.changeMu.Unlock()
	r.metrics.failovers.Inc()
	newName := ""
	if p := r.Topology().PrimaryNode(); p != nil {
		newName = p.Name
	}
	n := r.closeIdle(func(b *backend) bool { return b.node != newName })
	killed := 0
	for _, s := range r.sessions.all() {
		s.mu.Lock()
		be := s.be
		s.mu.Unlock()
		if be == nil || be.node == newName {
			continue
		}
		why := "primary " + be.node + " is no longer available"
		if newName != "" {
			why = "primary moved from " + be.node + " to " + newName
		}
		killed++
		if s.txnMode.Load() {
			// The client's session is pgwrt's: only the transaction
			// on the old primary ends (txnlost.go).
			s.loseBackend(be, why)
			continue
		}
		s.kill(errorf(codePrimaryMoved, "pgwrt: %s; reconnect", why))
	}
	r.metrics.killed.Add(killed)
	if n > 0 || killed > 0 {
		r.log.Info("closed connections to the old primary", "old", oldName, "idle_closed", n, "sessions_closed", killed)
	}
}
