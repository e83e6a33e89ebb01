package router

import (
	"github.com/VictoriaMetrics/metrics"
)

// routerMetrics are one Router's counters, in its own metrics.Set.
type routerMetrics struct {
	set            *metrics.Set
	clientsTotal   *metrics.Counter
	clientsRefused *metrics.Counter
	protocolErrors *metrics.Counter
	held           *metrics.Counter
	dialed         *metrics.Counter
	reused         *metrics.Counter
	cancels        *metrics.Counter
	killed         *metrics.Counter
	failovers      *metrics.Counter
	pinned         *metrics.Counter
}

func newMetrics(r *Router) *routerMetrics {
	s := metrics.NewSet()
	m := &routerMetrics{
		set:            s,
		clientsTotal:   s.NewCounter("pgwrt_clients_total"),
		clientsRefused: s.NewCounter(`pgwrt_clients_refused_total{reason="no_slot"}`),
		protocolErrors: s.NewCounter("pgwrt_protocol_errors_total"),
		held:           s.NewCounter("pgwrt_clients_held_total"),
		dialed:         s.NewCounter("pgwrt_backend_connects_total"),
		reused:         s.NewCounter("pgwrt_backend_reuses_total"),
		cancels:        s.NewCounter("pgwrt_cancel_requests_total"),
		killed:         s.NewCounter("pgwrt_sessions_killed_total"),
		failovers:      s.NewCounter("pgwrt_primary_changes_total"),
		pinned:         s.NewCounter("pgwrt_clients_pinned_total"),
	}
	s.NewGauge("pgwrt_slots_in_use", func() float64 { return float64(r.slots.inUse()) })
	s.NewGauge("pgwrt_backend_connections", func() float64 { return float64(r.pools.stats().Open) })
	s.NewGauge("pgwrt_backend_connections_idle", func() float64 { return float64(r.pools.stats().Idle) })
	s.NewGauge("pgwrt_topology_epoch", func() float64 { return float64(r.Topology().Epoch) })
	s.NewGauge("pgwrt_primary_known", func() float64 {
		if r.Topology().Primary >= 0 {
			return 1
		}
		return 0
	})
	return m
}
