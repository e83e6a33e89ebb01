package main

import (
	"encoding/json"
	"log/slog"
	"net"
	"net/http"

	"pgwrt/router"
)

// httpServer serves /status (JSON), /metrics (Prometheus) and /healthz on
// http_listen. A nil *httpServer is "off".
type httpServer struct {
	addr string
	srv  *http.Server
}

// startHTTP starts the server on addr, or returns nil when addr is empty
// or cannot be listened on (that is logged; the pooler runs without it).
func startHTTP(addr string, r *router.Router, log *slog.Logger) *httpServer {
	if addr == "" {
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
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("cannot listen for http", "http_listen", addr, "error", err)
		return nil
	}
	hs := &httpServer{addr: addr, srv: &http.Server{Handler: mux}}
	go hs.srv.Serve(ln)
	return hs
}

// moveTo restarts the server on addr after a reload changed http_listen.
func (hs *httpServer) moveTo(addr string, r *router.Router, log *slog.Logger) *httpServer {
	if hs != nil && hs.addr == addr {
		return hs
	}
	hs.close()
	return startHTTP(addr, r, log)
}

func (hs *httpServer) close() {
	if hs != nil {
		hs.srv.Close()
	}
}
