// Command pgwrt-ipk packs a cross-built pgwrt binary, its procd init script
// and its default UCI config into an OpenWrt .ipk, without the OpenWrt SDK:
//
//	go run ./cmd/pgwrt-ipk -bin dist/mipsel_24kc/pgwrt -arch mipsel_24kc -version 0.1.0-r1 -out dist
//
// The output is reproducible: the same inputs and -mtime (default
// $SOURCE_DATE_EPOCH) give the same bytes. Before packing, the binary's ELF
// header is checked against -arch, so an amd64 or a hard-float MIPS build
// cannot end up in a mipsel_24kc package.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"pgwrt/openwrt"
	"pgwrt/openwrt/ipk"
)

// defaultEpoch is the modification time of every member when neither -mtime
// nor SOURCE_DATE_EPOCH is given (2024-01-01 00:00:00 UTC).
const defaultEpoch = 1704067200

const description = `PostgreSQL connection pooler and router for Patroni clusters
One small static program in front of a PostgreSQL cluster: it finds the
primary itself with SQL on every node, pools client connections, and turns
a switchover into a short wait instead of errors. Configured in
/etc/config/pgwrt, run by procd, reloaded with "uci commit pgwrt".`

// extraFiles collects repeated -file SRC:DEST[:MODE] flags.
type extraFiles []string

func (e *extraFiles) String() string     { return strings.Join(*e, ",") }
func (e *extraFiles) Set(v string) error { *e = append(*e, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pgwrt-ipk:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("pgwrt-ipk", flag.ContinueOnError)
	var (
		bin        = fl.String("bin", "", "the pgwrt binary for -arch (required)")
		arch       = fl.String("arch", "", "OpenWrt package architecture: "+strings.Join(openwrt.Names(), ", ")+" (required)")
		version    = fl.String("version", "", "package version as opkg sees it, e.g. 0.1.0-r1 (required)")
		out        = fl.String("out", "dist", "directory the .ipk is written to")
		initd      = fl.String("initd", "init.d/pgwrt", "procd init script, installed as /etc/init.d/pgwrt")
		config     = fl.String("config", "openwrt/files/pgwrt.config", "default UCI config, installed as /etc/config/pgwrt (a conffile)")
		mtime      = fl.String("mtime", "", "modification time of every member, seconds since 1970 (default $SOURCE_DATE_EPOCH, else 2024-01-01)")
		maintainer = fl.String("maintainer", "pgwrt developers", "Maintainer: field")
		license    = fl.String("license", "", "License: field (SPDX), left out when empty")
		url        = fl.String("url", "", "URL: field, left out when empty")
		checkELF   = fl.Bool("check-elf", true, "refuse a binary whose ELF header does not match -arch")
		extras     extraFiles
	)
	fl.Var(&extras, "file", "extra file SRC:DEST[:MODE] (octal MODE, default 0644); repeatable")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if fl.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if *bin == "" || *arch == "" || *version == "" {
		return errors.New("-bin, -arch and -version are required")
	}

	if *checkELF {
		a, ok := openwrt.Lookup(*arch)
		if !ok {
			return fmt.Errorf("-arch %q: unknown; known: %s (or -check-elf=false)", *arch, strings.Join(openwrt.Names(), ", "))
		}
		if err := a.CheckELF(*bin); err != nil {
			return err
		}
	}

	when, err := modTime(*mtime)
	if err != nil {
		return err
	}

	p := &ipk.Package{
		Name:         "pgwrt",
		Version:      *version,
		Architecture: *arch,
		Depends:      []string{"libc"},
		Source:       "openwrt/pgwrt",
		SourceName:   "pgwrt",
		License:      *license,
		Section:      "net",
		URL:          *url,
		Maintainer:   *maintainer,
		Description:  description,
		Conffiles:    []string{"/etc/config/pgwrt"},
		ModTime:      when,
	}
	specs := []string{
		*bin + ":/usr/sbin/pgwrt:0755",
		*initd + ":/etc/init.d/pgwrt:0755",
		// 0600 as OpenWrt's INSTALL_CONF: the file can hold passwords.
		*config + ":/etc/config/pgwrt:0600",
	}
	for _, spec := range append(specs, extras...) {
		f, err := readFile(spec)
		if err != nil {
			return err
		}
		p.Files = append(p.Files, f)
	}

	b, err := p.Build()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(*out, p.FileName())
	if err := writeAtomic(dst, b); err != nil {
		return err
	}
	fmt.Printf("%-60s %9d bytes\n", dst, len(b))
	return nil
}

// modTime picks the archive time: -mtime, else SOURCE_DATE_EPOCH, else
// defaultEpoch.
func modTime(flagValue string) (time.Time, error) {
	v, from := flagValue, "-mtime"
	if v == "" {
		v, from = os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	}
	if v == "" {
		return time.Unix(defaultEpoch, 0), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("%s %q: want seconds since 1970", from, v)
	}
	return time.Unix(n, 0), nil
}

// readFile reads SRC:DEST[:MODE].
func readFile(spec string) (ipk.File, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return ipk.File{}, fmt.Errorf("file %q: want SRC:DEST[:MODE]", spec)
	}
	mode := fs.FileMode(0o644)
	if len(parts) == 3 {
		m, err := strconv.ParseUint(parts[2], 8, 32)
		if err != nil || m > 0o777 {
			return ipk.File{}, fmt.Errorf("file %q: mode %q: want octal permission bits", spec, parts[2])
		}
		mode = fs.FileMode(m)
	}
	data, err := os.ReadFile(parts[0])
	if err != nil {
		return ipk.File{}, err
	}
	return ipk.File{Path: parts[1], Mode: mode, Data: data}, nil
}

func writeAtomic(dst string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".pgwrt-ipk-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
