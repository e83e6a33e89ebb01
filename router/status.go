package router

import "time"

// Status is the daemon's state for /status, `pgwrt status` and LuCI.
type Status struct {
	Epoch        uint64       `json:"epoch"`
	Primary      string       `json:"primary"`
	Alarm        string       `json:"alarm,omitempty"`
	Nodes        []NodeStatus `json:"nodes"`
	SlotsInUse   int          `json:"slots_in_use"`
	MaxClients   int          `json:"max_clients"`
	Sessions     int          `json:"sessions"`
	BackendsOpen int          `json:"backends_open"`
	BackendsIdle int          `json:"backends_idle"`
}

// NodeStatus is one node in Status.
type NodeStatus struct {
	Name       string    `json:"name"`
	Host       string    `json:"host"`
	Port       int       `json:"port"`
	Up         bool      `json:"up"`
	Role       string    `json:"role"`
	LagBytes   int64     `json:"replication_lag_bytes"`
	Timeline   int       `json:"timeline"`
	LastChange time.Time `json:"last_status_change"`
	LastError  string    `json:"last_error,omitempty"`
	// Suspect: a backend connection to it just broke; new sessions wait
	// for the next check.
	Suspect bool `json:"suspect,omitempty"`
}

// Status reports the current state.
func (r *Router) Status() Status {
	t := r.Topology()
	ps := r.pools.stats()
	st := Status{Epoch: t.Epoch, Alarm: t.Alarm, SlotsInUse: r.slots.inUse(), MaxClients: r.slots.size(),
		Sessions: r.sessions.count(), BackendsOpen: ps.Open, BackendsIdle: ps.Idle}
	if p := t.PrimaryNode(); p != nil {
		st.Primary = p.Name
	}
	for _, n := range t.Nodes {
		st.Nodes = append(st.Nodes, NodeStatus{Name: n.Name, Host: n.Host, Port: n.Port, Up: n.Up, Role: n.Role.String(),
			LagBytes: n.LagBytes, Timeline: n.Timeline, LastChange: n.LastChange, LastError: n.LastError, Suspect: n.Suspect})
	}
	return st
}
