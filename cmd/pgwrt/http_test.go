package main

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"pgwrt/config"
	"pgwrt/router"
)

// testRouter is a started router whose one backend refuses connections.
func testRouter(t *testing.T) *router.Router {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Backends = []config.Backend{{Name: "pg1", Host: "127.0.0.1", Port: 1}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	r := router.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	r.Start()
	t.Cleanup(r.Close)
	return r
}

func testHTTP(t *testing.T, r *router.Router) *httpServer {
	t.Helper()
	hs := startHTTP("127.0.0.1:0", r, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if hs == nil {
		t.Fatal("startHTTP failed")
	}
	t.Cleanup(hs.close)
	return hs
}

// rawHTTP sends req as is and returns the whole response.
func rawHTTP(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	return string(b)
}

// TestHTTPServer asks the status server what curl, Prometheus and the
// LuCI plugin ask, through net/http's client, and some things they do not.
func TestHTTPServer(t *testing.T) {
	r := testRouter(t)
	hs := testHTTP(t, r)
	base := "http://" + hs.ln.Addr().String()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	resp, body := get("/status?x=1")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("/status: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var st router.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/status: %v\n%s", err, body)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].Name != "pg1" || st.Nodes[0].Port != 1 || st.MaxClients != 32 {
		t.Errorf("/status: %+v", st)
	}

	resp, body = get("/metrics")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
		!strings.Contains(body, "pgwrt_clients_total 0") || !strings.Contains(body, "pgwrt_primary_known 0") {
		t.Errorf("/metrics: %s %q\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if resp, body = get("/healthz"); resp.StatusCode != 503 || body != "no primary\n" {
		t.Errorf("/healthz without a primary: %s %q", resp.Status, body)
	}
	if resp, _ = get("/nope"); resp.StatusCode != 404 {
		t.Errorf("/nope: %s", resp.Status)
	}
	resp, err := http.Post(base+"/status", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /status: %s, Allow %q", resp.Status, resp.Header.Get("Allow"))
	}

	head := rawHTTP(t, hs.ln.Addr().String(), "HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.0 200 OK\r\n") || !strings.HasSuffix(head, "\r\n\r\n") || !strings.Contains(head, "Connection: close\r\n") {
		t.Errorf("HEAD /status: %q", head)
	}
	for _, bad := range []string{
		"hello\r\n\r\n",
		"GET /status\r\n\r\n", // HTTP/0.9
		"GET status HTTP/1.1\r\n\r\n",
		"GET /status HTTP/1.1\r\nX: " + strings.Repeat("a", httpMaxRequest) + "\r\n\r\n",
	} {
		if got := rawHTTP(t, hs.ln.Addr().String(), bad); !strings.HasPrefix(got, "HTTP/1.0 400 Bad Request\r\n") {
			t.Errorf("%.40q: %.60q, want 400", bad, got)
		}
	}
}

// TestHTTPBusy: while httpMaxConns slow clients hold the server, the
// next one waits (no goroutine of its own) and is answered once they go.
func TestHTTPBusy(t *testing.T) {
	hs := testHTTP(t, testRouter(t))
	addr := hs.ln.Addr().String()
	var slow []net.Conn
	for range httpMaxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /status HTTP/1.0\r\n") // and never the end of it
		slow = append(slow, c)
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /healthz HTTP/1.0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("with %d slow clients, the next one got %d bytes, %v; want to wait", httpMaxConns, n, err)
	}
	slow[0].Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if !strings.HasPrefix(string(b), "HTTP/1.0 503 Service Unavailable\r\n") {
		t.Errorf("once a slow client left: %.60q, %v", b, err)
	}
}

// TestHTTPMove: a reload that changes http_listen moves the server; one
// that does not keeps it.
func TestHTTPMove(t *testing.T) {
	r := testRouter(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	hs := testHTTP(t, r)
	old := hs.ln.Addr().String()
	if same := hs.moveTo(hs.addr, r, log); same != hs {
		t.Fatal("moveTo the same address restarted the server")
	}
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free.Close()
	moved := hs.moveTo(free.Addr().String(), r, log)
	if moved == hs {
		t.Fatal("moveTo a new address kept the old server")
	}
	defer moved.close()
	if _, err := net.DialTimeout("tcp", old, time.Second); err == nil {
		t.Error("the old address still answers")
	}
	resp := rawHTTP(t, moved.ln.Addr().String(), "GET /healthz HTTP/1.0\r\n\r\n")
	if line, _, _ := strings.Cut(resp, "\r\n"); line != "HTTP/1.0 503 Service Unavailable" {
		t.Errorf("moved server: %q", line)
	}
	if off := moved.moveTo("", r, log); off != nil {
		t.Error("moveTo \"\" left a server running")
	}
	var none *httpServer
	none.close()
}
