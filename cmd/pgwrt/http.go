package main

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"

	"pgwrt/config"
	"pgwrt/router"
)

// startHTTP serves /status (JSON), /metrics (Prometheus) and /healthz on
// http_listen, if set.
func startHTTP(cfg *config.Config, r *router.Router, log *slog.Logger) *http.Server {
	if cfg.HTTPListen == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		r.Metrics().WritePrometheus(w)
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(r.Status())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if r.Topology().Primary < 0 {
			http.Error(w, "no primary", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	ln, err := net.Listen("tcp", cfg.HTTPListen)
	if err != nil {
		log.Error("cannot listen for http", "http_listen", cfg.HTTPListen, "error", err)
		return nil
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	return hs
}
