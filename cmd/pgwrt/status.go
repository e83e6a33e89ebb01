package main

// "pgwrt status": ask a running pgwrt for its /status (over its
// http_listen) and print it as a table, or as the daemon's JSON with
// --json, which is what LuCI's rpcd plugin passes on to the browser.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"pgwrt/router"
)

// The config files "pgwrt status" reads http_listen from when it is told
// neither --http nor a config: OpenWrt's first.
var (
	defaultUCIPath  = "/etc/config/pgwrt"
	defaultTOMLPath = "/etc/pgwrt/pgwrt.toml"
)

// maxStatusBody bounds what is read from /status.
const maxStatusBody = 16 << 20

func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pgwrt status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	jsonOut := fs.Bool("json", false, "print the daemon's /status JSON as it is (on failure {\"error\": …}, exit 1)")
	httpAddr := fs.String("http", "", "the daemon's http_listen, HOST:PORT (default: from the config)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	var src configSource
	src.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pgwrt status: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	fail := func(err error) int {
		msg := strings.TrimSpace(err.Error())
		if *jsonOut {
			b, _ := json.Marshal(map[string]string{"error": msg})
			fmt.Fprintf(stdout, "%s\n", b)
		}
		fmt.Fprintln(stderr, "pgwrt status:", msg)
		return 1
	}
	addr, err := statusAddr(*httpAddr, &src)
	if err != nil {
		return fail(err)
	}
	// The daemon renders the table itself (/status.txt): this command
	// then decodes no JSON, which keeps encoding/json's decoder and
	// time.Parse out of the binary.
	path := "/status.txt"
	if *jsonOut {
		path = "/status"
	}
	body, err := httpGet(addr, path, *timeout)
	if err != nil {
		return fail(err)
	}
	if *jsonOut && !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return fail(fmt.Errorf("http://%s/status: not a pgwrt status (no JSON object)", addr))
	}
	stdout.Write(body)
	return 0
}

// statusAddr is where to ask: --http, else the http_listen of the config
// given with -c/--uci, else of the default config file that exists.
func statusAddr(flagAddr string, src *configSource) (string, error) {
	if flagAddr != "" {
		return dialAddr(flagAddr)
	}
	if !src.given() {
		switch {
		case exists(defaultUCIPath):
			src.uci = defaultUCIPath
		case exists(defaultTOMLPath):
			src.toml = defaultTOMLPath
		default:
			return "", fmt.Errorf("no %s or %s: give --http HOST:PORT, -c FILE.toml or --uci FILE", defaultUCIPath, defaultTOMLPath)
		}
	}
	cfg, err := src.load()
	if err != nil {
		return "", err
	}
	if cfg.HTTPListen == "" {
		return "", fmt.Errorf("%s: http_listen is not set, so pgwrt serves no /status (set it, e.g. '127.0.0.1:5480', and reload)", cfg.Source)
	}
	return dialAddr(cfg.HTTPListen)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// dialAddr turns a listen address into one to connect to: an empty or
// unspecified host ("0.0.0.0", "::") is this machine, 127.0.0.1.
func dialAddr(listen string) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("%q is not HOST:PORT", listen)
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// httpGet fetches path from the pgwrt status server at addr with an
// HTTP/1.0 GET (the server speaks no more) and returns the body of a 200.
func httpGet(addr, path string, timeout time.Duration) ([]byte, error) {
	url := "http://" + addr + path
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, fmt.Errorf("cannot reach pgwrt at %s (is it running, with this http_listen?): %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: pgwrt/%s\r\n\r\n", path, addr, version); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	br := bufio.NewReader(io.LimitReader(c, maxStatusBody))
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("%s: no answer: %w", url, err)
	}
	proto, rest, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
	codeText, reason, _ := strings.Cut(rest, " ")
	code, err := strconv.Atoi(codeText)
	if !strings.HasPrefix(proto, "HTTP/1.") || err != nil {
		return nil, fmt.Errorf("%s: not an HTTP answer: %q", url, strings.TrimSpace(line))
	}
	length := -1
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("%s: %w", url, err)
		}
		h = strings.TrimRight(h, "\r\n")
		if h == "" {
			break
		}
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || length < 0 {
				return nil, fmt.Errorf("%s: bad Content-Length %q", url, v)
			}
		}
	}
	var body []byte
	if length >= 0 {
		body = make([]byte, length)
		_, err = io.ReadFull(br, body)
	} else {
		body, err = io.ReadAll(br)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	if code != 200 {
		first, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		return nil, fmt.Errorf("%s: %d %s: %s", url, code, reason, first)
	}
	return body, nil
}

// printStatus writes st as an operator reads it: the summary, then one
// line per node. The daemon serves it as /status.txt.
func printStatus(w io.Writer, st router.Status, now time.Time) {
	primary := st.Primary
	if primary == "" {
		primary = "none"
	}
	fmt.Fprintf(w, "primary:  %s (topology epoch %d)\n", primary, st.Epoch)
	if st.Alarm != "" {
		fmt.Fprintf(w, "alarm:    %s\n", st.Alarm)
	}
	fmt.Fprintf(w, "clients:  %d sessions, %d of %d slots in use\n", st.Sessions, st.SlotsInUse, st.MaxClients)
	fmt.Fprintf(w, "backends: %d connections, %d idle\n\n", st.BackendsOpen, st.BackendsIdle)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tUP\tROLE\tLAG\tTIMELINE\tSINCE\tERROR")
	for _, n := range st.Nodes {
		up := "no"
		if n.Up {
			up = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, net.JoinHostPort(n.Host, strconv.Itoa(n.Port)), up, n.Role,
			lagText(n.LagBytes), dash(n.Timeline), sinceText(n.LastChange, now), oneLine(n.LastError))
	}
	tw.Flush()
}

func lagText(b int64) string {
	switch {
	case b < 0:
		return "-"
	case b < 1<<10:
		return fmt.Sprintf("%d B", b)
	case b < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	case b < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
}

func dash(n int) string {
	if n <= 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// sinceText is how long ago t was, to the second ("-" for never).
func sinceText(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func oneLine(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Join(strings.Fields(s), " ")
}
