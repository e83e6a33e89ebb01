package main

// The status server on http_listen: GET /status (JSON, what LuCI reads
// through "pgwrt status --json"), /status.txt (the table "pgwrt status"
// prints), /metrics (Prometheus text) and /healthz (200 while a primary is
// known, else 503).
//
// It is a small HTTP/1.0 responder on a plain net.Listener, not net/http:
// one request per connection, no keep-alive, no request bodies. net/http's
// server, with the crypto/tls and HTTP/2 code it brings, made up 2.3 MB of
// the 7.8 MB mipsle binary; a router has 8 to 16 MB of flash. curl,
// Prometheus and LuCI's rpcd plugin need nothing more.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"pgwrt/router"
)

const (
	// httpTimeout bounds a whole exchange, request and response.
	httpTimeout = 10 * time.Second
	// httpMaxRequest is the most a request line and headers may take.
	httpMaxRequest = 8 << 10
	// httpMaxConns is how many exchanges run at once; more wait.
	httpMaxConns = 8
)

// httpServer serves one http_listen address. A nil *httpServer is "off".
type httpServer struct {
	addr string
	ln   net.Listener
	r    *router.Router
	log  *slog.Logger
	busy chan struct{} // one token per exchange under way
}

// startHTTP starts the server on addr, or returns nil when addr is empty
// or cannot be listened on (that is logged; the pooler runs without it).
func startHTTP(addr string, r *router.Router, log *slog.Logger) *httpServer {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("cannot listen for http", "http_listen", addr, "error", err)
		return nil
	}
	hs := &httpServer{addr: addr, ln: ln, r: r, log: log, busy: make(chan struct{}, httpMaxConns)}
	go hs.serve()
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

// close stops accepting; exchanges under way end by their deadline.
func (hs *httpServer) close() {
	if hs != nil {
		hs.ln.Close()
	}
}

// serve accepts while fewer than httpMaxConns exchanges are under way;
// past that, clients wait in the listen backlog (at most httpTimeout, the
// time a slow exchange can hold its place).
func (hs *httpServer) serve() {
	var backoff time.Duration
	for {
		hs.busy <- struct{}{}
		c, err := hs.ln.Accept()
		if err != nil {
			<-hs.busy
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: back off, as the client
			// listener does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			hs.log.Warn("http accept error; retrying", "error", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		go func() {
			defer func() { <-hs.busy }()
			hs.exchange(c)
		}()
	}
}

// exchange answers one request on c and closes it.
func (hs *httpServer) exchange(c net.Conn) {
	defer lingerClose(c)
	c.SetDeadline(time.Now().Add(httpTimeout))
	method, path, err := readHTTPRequest(bufio.NewReader(io.LimitReader(c, httpMaxRequest)))
	if err != nil {
		writeHTTP(c, 400, "text/plain; charset=utf-8", []byte("bad request\n"), false)
		return
	}
	code, ctype, body := hs.route(method, path)
	writeHTTP(c, code, ctype, body, method == "HEAD")
}

// lingerClose ends the response with a FIN and reads what the client still
// sends (an unread request rest, a body) for a moment before closing:
// closing with unread input would reset the connection, and the client
// could lose the response.
func lingerClose(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
		c.SetReadDeadline(time.Now().Add(time.Second))
		io.CopyN(io.Discard, c, 256<<10)
	}
	c.Close()
}

func (hs *httpServer) route(method, path string) (code int, ctype string, body []byte) {
	const text = "text/plain; charset=utf-8"
	if method != "GET" && method != "HEAD" {
		return 405, text, []byte("only GET\n")
	}
	switch path {
	case "/status":
		b, err := json.MarshalIndent(hs.r.Status(), "", "  ")
		if err != nil {
			return 500, text, []byte(err.Error() + "\n")
		}
		return 200, "application/json", append(b, '\n')
	case "/status.txt":
		// The table of "pgwrt status", rendered here so that the command
		// needs no JSON decoder (190 KB of a mipsle binary).
		var b bytes.Buffer
		printStatus(&b, hs.r.Status(), time.Now())
		return 200, text, b.Bytes()
	case "/metrics":
		var b bytes.Buffer
		hs.r.Metrics().WritePrometheus(&b)
		return 200, "text/plain; version=0.0.4; charset=utf-8", b.Bytes()
	case "/healthz":
		if hs.r.Topology().Primary < 0 {
			return 503, text, []byte("no primary\n")
		}
		return 200, text, []byte("ok\n")
	case "/":
		return 200, text, []byte("pgwrt " + version + ": /status /status.txt /metrics /healthz\n")
	}
	return 404, text, []byte("not found\n")
}

// readHTTPRequest reads a request line and the header lines after it (an
// HTTP/1.x request without a body) and returns the method and the path
// without its query.
func readHTTPRequest(br *bufio.Reader) (method, path string, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", "", err
	}
	f := strings.Fields(line)
	if len(f) != 3 || !strings.HasPrefix(f[2], "HTTP/1.") || !strings.HasPrefix(f[1], "/") {
		return "", "", fmt.Errorf("bad request line %q", strings.TrimSpace(line))
	}
	method, path = f[0], f[1]
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return "", "", err
		}
		if strings.TrimRight(h, "\r\n") == "" {
			return method, path, nil
		}
	}
}

var httpStatusText = map[int]string{
	200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
	500: "Internal Server Error", 503: "Service Unavailable",
}

// writeHTTP writes a whole HTTP/1.0 response, the body left out for HEAD.
func writeHTTP(w io.Writer, code int, ctype string, body []byte, head bool) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.0 %d %s\r\n", code, httpStatusText[code])
	fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n", ctype, len(body))
	if code == 405 {
		b.WriteString("Allow: GET, HEAD\r\n")
	}
	b.WriteString("\r\n")
	if !head {
		b.Write(body)
	}
	_, err := w.Write(b.Bytes())
	return err
}
