package router

import (
	"errors"

	"pgwrt/config"
)

// Reload swaps in a new, validated config. Timeouts, hba, users and pool
// sizes apply to the next use. Changes that need a restart are refused, so
// the old config keeps running.
func (r *Router) Reload(cfg *config.Config) error {
	old := r.config()
	if cfg.Listen != old.Listen || cfg.MaxClients != old.MaxClients || cfg.BufferSize != old.BufferSize {
		return errors.New("listen, max_clients and buffer_size need a restart")
	}
	if len(cfg.Backends) != len(old.Backends) {
		return errors.New("changing the backend list needs a restart (not supported by reload yet)")
	}
	for i := range cfg.Backends {
		if cfg.Backends[i].Addr() != old.Backends[i].Addr() || cfg.Backends[i].Name != old.Backends[i].Name {
			return errors.New("changing the backend list needs a restart (not supported by reload yet)")
		}
	}
	r.cfg.Store(cfg)
	r.log.Info("config reloaded", "source", cfg.Source)
	return nil
}
