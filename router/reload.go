package router

import (
	"slices"

	"pgwrt/config"
)

// Reload swaps in a new, validated config without dropping client sessions:
//   - backends added get a monitor; backends removed lose theirs and leave
//     the topology, and sessions on them are drained (they run until the
//     client leaves; their backend is then closed, not cached);
//   - max_clients grows or shrinks the slot set (shrinking as slots free);
//   - timeouts, hba, users and pool sizes apply to the next use.
//
// listen, freebind, buffer_size and io_engine need a restart; a change to them is
// reported and the rest is applied.
func (r *Router) Reload(cfg *config.Config) error {
	old := r.config()
	var needRestart []string
	ch := config.Diff(old, cfg)
	if ch.ListenChanged {
		needRestart = append(needRestart, "listen")
		cfg.Listen, cfg.FreeBind = old.Listen, old.FreeBind
	}
	if cfg.BufferSize != old.BufferSize {
		needRestart = append(needRestart, "buffer_size")
		cfg.BufferSize = old.BufferSize
	}
	if cfg.IOEngine != old.IOEngine {
		needRestart = append(needRestart, "io_engine")
		cfg.IOEngine = old.IOEngine
	}
	r.cfg.Store(cfg)
	if cfg.MaxClients != old.MaxClients {
		r.slots.resize(cfg.MaxClients)
	}

	r.topoMu.Lock()
	var stopped []*monitor
	keep := r.monitors[:0:0]
	nodes := r.nodes[:0:0]
	for i, m := range r.monitors {
		if slices.Contains(ch.BackendsRemoved, m.name) {
			stopped = append(stopped, m)
			continue
		}
		keep = append(keep, m)
		nodes = append(nodes, r.nodes[i])
	}
	for _, b := range cfg.Backends {
		if !slices.Contains(ch.BackendsAdded, b.ID()) {
			continue
		}
		m := newMonitor(r, b)
		keep = append(keep, m)
		nodes = append(nodes, NodeState{Name: b.ID(), Host: b.Host, Port: b.Port, LagBytes: -1})
		go m.run()
	}
	// Keep config order, so SHOW POOL_NODES reads like the file.
	order := make(map[string]int, len(cfg.Backends))
	for i, b := range cfg.Backends {
		order[b.ID()] = i
	}
	idx := make([]int, len(nodes))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return order[nodes[a].Name] - order[nodes[b].Name] })
	r.monitors = make([]*monitor, len(idx))
	r.nodes = make([]NodeState, len(idx))
	for j, i := range idx {
		r.monitors[j] = keep[i]
		r.nodes[j] = nodes[i]
	}
	r.publishLocked()
	r.topoMu.Unlock()
	for _, m := range stopped {
		m.close()
	}
	if len(stopped) > 0 {
		// Idle connections to removed nodes go now; busy ones drain.
		r.closeIdle(func(b *backend) bool { return slices.Contains(ch.BackendsRemoved, b.node) })
	}
	r.log.Info("config reloaded", "source", cfg.Source, "added", ch.BackendsAdded, "removed", ch.BackendsRemoved, "changed", ch.Options)
	if len(needRestart) > 0 {
		r.log.Warn("some changes need a restart to take effect", "options", needRestart)
	}
	return nil
}
