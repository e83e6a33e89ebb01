package router

import "time"

// janitor closes idle backends past server_idle_timeout or server_lifetime.
func (r *Router) janitor() {
	defer r.wg.Done()
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		select {
		case <-r.stopping:
			return
		case <-tk.C:
		}
		cfg := r.config()
		now := time.Now()
		r.closeIdle(func(b *backend) bool {
			idle := cfg.ServerIdleTimeout > 0 && now.Sub(b.lastUsed) > cfg.ServerIdleTimeout.D()
			return idle || b.expired(cfg, now)
		})
	}
}
