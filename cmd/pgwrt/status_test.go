package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgwrt/router"
)

var testStatus = router.Status{
	Epoch: 7, Primary: "pg2", SlotsInUse: 3, MaxClients: 32, Sessions: 3, BackendsOpen: 4, BackendsIdle: 1,
	Nodes: []router.NodeStatus{
		{Name: "pg1", Host: "192.168.9.11", Port: 5432, Up: false, Role: "unknown", LagBytes: -1,
			LastChange: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), LastError: "dial tcp 192.168.9.11:5432:\n connection refused"},
		{Name: "pg2", Host: "192.168.9.12", Port: 5432, Up: true, Role: "primary", LagBytes: -1, Timeline: 3,
			LastChange: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		{Name: "pg3", Host: "fd00::13", Port: 6432, Up: true, Role: "standby", LagBytes: 3 << 20, Timeline: 3,
			LastChange: time.Date(2026, 1, 2, 3, 0, 5, 0, time.UTC)},
	},
}

func TestPrintStatus(t *testing.T) {
	var b bytes.Buffer
	printStatus(&b, testStatus, time.Date(2026, 1, 2, 3, 5, 5, 0, time.UTC))
	want := `primary:  pg2 (topology epoch 7)
clients:  3 sessions, 3 of 32 slots in use
backends: 4 connections, 1 idle

NODE  ADDRESS            UP   ROLE     LAG      TIMELINE  SINCE     ERROR
pg1   192.168.9.11:5432  no   unknown  -        -         1m5s ago  dial tcp 192.168.9.11:5432: connection refused
pg2   192.168.9.12:5432  yes  primary  -        3         1m0s ago  -
pg3   [fd00::13]:6432    yes  standby  3.0 MiB  3         5m0s ago  -
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// fakeStatusServer answers /status with code and body, and /status.txt
// with code and the table of body (when it is a status).
func fakeStatusServer(t *testing.T, code int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "GET" {
			http.NotFound(w, r)
			return
		}
		switch r.URL.Path {
		case "/status":
			w.WriteHeader(code)
			fmt.Fprint(w, body)
		case "/status.txt":
			var st router.Status
			if json.Unmarshal([]byte(body), &st) != nil {
				w.WriteHeader(code)
				fmt.Fprint(w, body)
				return
			}
			w.WriteHeader(code)
			printStatus(w, st, time.Now())
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func runStatus(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(append([]string{"status"}, args...), &o, &e)
	return code, o.String(), e.String()
}

func TestStatusCommand(t *testing.T) {
	js, err := json.MarshalIndent(testStatus, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	addr := fakeStatusServer(t, 200, string(js))
	_, port, _ := net.SplitHostPort(addr)

	code, out, errs := runStatus("--json", "--http", addr)
	if code != 0 || out != string(js) || errs != "" {
		t.Errorf("--json: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, _ = runStatus("--http", addr)
	if code != 0 || !strings.HasPrefix(out, "primary:  pg2 (topology epoch 7)\n") || !strings.Contains(out, "\npg3   [fd00::13]:6432 ") {
		t.Errorf("table: exit %d:\n%s", code, out)
	}

	// http_listen from the config; 0.0.0.0 is dialled as 127.0.0.1.
	dir := t.TempDir()
	uci := filepath.Join(dir, "pgwrt")
	write := func(httpListen string) {
		t.Helper()
		cfg := fmt.Sprintf("config pgwrt 'main'\n\toption http_listen '%s'\n\toption nofile '64'\nconfig backend 'pg1'\n\toption host '127.0.0.1'\n", httpListen)
		if err := os.WriteFile(uci, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("0.0.0.0:" + port)
	if code, out, errs = runStatus("--uci", uci); code != 0 || !strings.Contains(out, "pg2") {
		t.Errorf("--uci with http_listen 0.0.0.0:%s: exit %d\n%s%s", port, code, out, errs)
	}
	// And from the default file when no flag says where.
	defer func(u, tm string) { defaultUCIPath, defaultTOMLPath = u, tm }(defaultUCIPath, defaultTOMLPath)
	defaultUCIPath, defaultTOMLPath = uci, filepath.Join(dir, "none.toml")
	if code, out, errs = runStatus("--json"); code != 0 || out != string(js) {
		t.Errorf("default config: exit %d\n%s%s", code, out, errs)
	}
	write("")
	if code, out, errs = runStatus(); code != 1 || !strings.Contains(errs, "http_listen is not set") || out != "" {
		t.Errorf("no http_listen: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	defaultUCIPath = filepath.Join(dir, "none")
	if code, _, errs = runStatus(); code != 1 || !strings.Contains(errs, "give --http HOST:PORT") {
		t.Errorf("no config at all: exit %d, stderr %q", code, errs)
	}
}

// TestStatusErrors: every failure exits 1; with --json stdout still holds
// a JSON object, {"error": "..."}, for the LuCI plugin to pass on.
func TestStatusErrors(t *testing.T) {
	refused, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused.Close()
	for _, tc := range []struct {
		name, addr, want string
	}{
		{"refused", refused.Addr().String(), "cannot reach pgwrt at " + refused.Addr().String()},
		{"503", fakeStatusServer(t, 503, "no primary\n"), "503 Service Unavailable: no primary"},
		{"not json", fakeStatusServer(t, 200, "<html>"), "not a pgwrt status"},
		{"404", fakeStatusServer(t, 404, "not found"), "404 Not Found: not found"},
		{"bad addr", "localhost", `"localhost" is not HOST:PORT`},
	} {
		code, out, errs := runStatus("--json", "--http", tc.addr)
		var obj map[string]string
		if code != 1 || json.Unmarshal([]byte(out), &obj) != nil || !strings.Contains(obj["error"], tc.want) || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.name, code, out, errs, tc.want)
		}
	}
	if code, _, _ := runStatus("--http", "127.0.0.1:1", "extra"); code != 2 {
		t.Errorf("extra argument: exit %d, want 2", code)
	}
}

// TestStatusAgainstServer: the command and the daemon's own status
// server understand each other.
func TestStatusAgainstServer(t *testing.T) {
	hs := testHTTP(t, testRouter(t))
	code, out, errs := runStatus("--http", hs.ln.Addr().String())
	if code != 0 || !strings.HasPrefix(out, "primary:  none") || !strings.Contains(out, "\npg1   127.0.0.1:1  no ") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runStatus("--json", "--http", hs.ln.Addr().String())
	var st router.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Nodes) != 1 || st.Nodes[0].Name != "pg1" {
		t.Errorf("--json: exit %d\n%s%s", code, out, errs)
	}
}
