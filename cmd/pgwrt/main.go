// Command pgwrt is a PostgreSQL pooler and router: it finds the primary of a
// streaming-replication (Patroni) cluster with SQL and forwards clients to
// it through memory-bounded slots.
//
//	pgwrt run    -c /etc/pgwrt/pgwrt.toml | --uci /etc/config/pgwrt
//	pgwrt check  -c FILE | --uci FILE
//	pgwrt status [--json] [--http ADDR | -c FILE | --uci FILE]
//	pgwrt version
//
// The life of "pgwrt run" (daemon.go): load and validate the config; take
// the client listener (the sockets systemd passes, or listen itself); start
// the router (monitors, janitor) and the accept loops; serve /status,
// /metrics and /healthz on http_listen (http.go); tell systemd READY=1.
// Then SIGHUP reloads (RELOADING=1 … READY=1; a bad config is logged and
// the old one keeps running), and SIGINT/SIGTERM cancel the context:
// STOPPING=1, the listeners close, sessions end with 57P01, exit 0.
//
// Under procd (OpenWrt) nothing of systemd happens: procd passes no
// sockets and sets no NOTIFY_SOCKET.
//
// Build tags for small builds (the OpenWrt packages use both, see
// routerTags in deps_test.go): nosystemd leaves out the systemd code
// (sd.go, sd_stub.go), notoml the TOML config (toml.go, toml_stub.go).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"pgwrt/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage:
  pgwrt run    (-c FILE.toml | --uci FILE)   run the pooler
  pgwrt check  (-c FILE.toml | --uci FILE)   validate a config and exit
  pgwrt status [--json] [--http HOST:PORT | -c FILE.toml | --uci FILE]
                                             show the running pooler's nodes
  pgwrt version                              print the version
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "pgwrt", version)
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	case "status":
		return status(args, stdout, stderr)
	case "run", "check":
	default:
		fmt.Fprintf(stderr, "pgwrt: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("pgwrt "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var src configSource
	src.flags(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pgwrt %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}
	cfg, err := src.load()
	if err != nil {
		fmt.Fprintln(stderr, strings.TrimSpace(err.Error()))
		return 1
	}
	if cmd == "check" {
		fmt.Fprintf(stdout, "%s: ok (%d backends)\n", cfg.Source, len(cfg.Backends))
		return 0
	}
	return runDaemon(cfg, src.load, stderr)
}

// configSource is where the config comes from: -c FILE.toml or --uci FILE.
type configSource struct {
	toml, uci string
}

func (s *configSource) flags(fs *flag.FlagSet) {
	fs.StringVar(&s.toml, "c", "", "TOML config file")
	fs.StringVar(&s.uci, "uci", "", "UCI config file (OpenWrt)")
}

func (s *configSource) given() bool { return s.toml != "" || s.uci != "" }

// load reads and validates the config; reload calls it again.
func (s *configSource) load() (*config.Config, error) {
	switch {
	case s.toml != "" && s.uci != "":
		return nil, errors.New("give -c or --uci, not both")
	case s.uci != "":
		return config.LoadUCI(s.uci)
	case s.toml != "":
		return loadTOML(s.toml)
	}
	return nil, errors.New("no config file: give -c FILE.toml or --uci FILE")
}
