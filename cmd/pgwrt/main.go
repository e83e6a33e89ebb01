// Command pgwrt is a PostgreSQL pooler and router: it finds the primary of a
// streaming-replication (Patroni) cluster with SQL and forwards clients to
// it through memory-bounded slots.
//
//	pgwrt run   -c /etc/pgwrt/pgwrt.toml | --uci /etc/config/pgwrt
//	pgwrt check -c FILE | --uci FILE
//	pgwrt version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"pgwrt/config"
	"pgwrt/router"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `usage:
  pgwrt run   (-c FILE.toml | --uci FILE)   run the pooler
  pgwrt check (-c FILE.toml | --uci FILE)   validate a config and exit
  pgwrt version                             print the version
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
	case "run", "check":
	default:
		fmt.Fprintf(stderr, "pgwrt: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("pgwrt "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	tomlPath := fs.String("c", "", "TOML config file")
	uciPath := fs.String("uci", "", "UCI config file (OpenWrt)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	load := func() (*config.Config, error) {
		switch {
		case *tomlPath != "" && *uciPath != "":
			return nil, errors.New("give -c or --uci, not both")
		case *uciPath != "":
			return config.LoadUCI(*uciPath)
		case *tomlPath != "":
			return config.LoadTOML(*tomlPath)
		}
		return nil, errors.New("no config file: give -c FILE.toml or --uci FILE")
	}
	cfg, err := load()
	if err != nil {
		fmt.Fprintln(stderr, strings.TrimSpace(err.Error()))
		return 1
	}
	if cmd == "check" {
		fmt.Fprintf(stdout, "%s: ok (%d backends)\n", cfg.Source, len(cfg.Backends))
		return 0
	}
	log := newLogger(stderr, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ln, err := router.Listen(cfg)
	if err != nil {
		log.Error("cannot listen", "listen", cfg.Listen, "error", err)
		return 1
	}
	r := router.New(cfg, log)
	r.Start()
	log.Info("pgwrt started", "version", version, "listen", ln.Addr().String(), "backends", len(cfg.Backends), "max_clients", cfg.MaxClients)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			ncfg, err := load()
			if err != nil {
				log.Error("reload failed; keeping the running config", "error", strings.ReplaceAll(err.Error(), "\n", "; "))
				continue
			}
			if err := r.Reload(ncfg); err != nil {
				log.Error("reload failed; keeping the running config", "error", err)
				continue
			}
			nl := newLogger(stderr, ncfg.LogLevel)
			_ = nl
		}
	}()
	if hs := startHTTP(cfg, r, log); hs != nil {
		defer hs.Close()
	}
	err = r.Serve(ctx, ln)
	r.Close()
	if err != nil {
		log.Error("listener failed", "error", err)
		return 1
	}
	log.Info("pgwrt stopped")
	return 0
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
