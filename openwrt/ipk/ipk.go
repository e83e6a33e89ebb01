// Package ipk writes OpenWrt .ipk packages without the SDK, byte for byte
// reproducibly.
//
// The layout is the one OpenWrt's scripts/ipkg-build produces and opkg
// (OpenWrt ≤ 24.10) reads:
//
//	pkg.ipk            gzip of a tar (not an ar archive: OpenWrt's opkg refuses those)
//	  ./debian-binary    "2.0\n"
//	  ./data.tar.gz      the files, rooted at "./", directories included
//	  ./control.tar.gz   ./conffiles ./control ./postinst ./prerm
//
// Every tar is GNU format with numeric owner 0:0 and no user or group
// names, one fixed modification time, members sorted by name the way
// `tar --sort=name` walks a tree; every gzip stream carries no file name and
// no time stamp (`gzip -n`). The same Package therefore always gives the
// same bytes.
package ipk

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultPostinst is the postinst OpenWrt's package build writes for every
// package (include/package-pack.mk): default_postinst runs the package's
// /etc/uci-defaults scripts and enables and starts its init scripts. It
// does nothing while an image is being assembled without /lib/functions.sh.
const DefaultPostinst = `#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_postinst $0 $@
`

// DefaultPrerm is OpenWrt's matching prerm: default_prerm stops and
// disables the package's init scripts.
const DefaultPrerm = `#!/bin/sh
[ -s ${IPKG_INSTROOT}/lib/functions.sh ] || exit 0
. ${IPKG_INSTROOT}/lib/functions.sh
default_prerm $0 $@
`

// File is one regular file of the package.
type File struct {
	// Path is where the file lands on the target, absolute: /usr/sbin/pgwrt.
	Path string
	// Mode holds the permission bits (0755 for programs and init scripts,
	// 0600 for configs that can hold passwords, 0644 otherwise).
	Mode fs.FileMode
	Data []byte
}

// Package is everything an .ipk holds.
type Package struct {
	Name         string   // [a-z0-9][a-z0-9_.+-]*
	Version      string   // [epoch:]upstream[-revision], e.g. 0.1.0-r1
	Architecture string   // the exact OpenWrt package arch, or "all"
	Depends      []string // e.g. libc
	Source       string   // where the package is made, e.g. feeds/packages/net/pgwrt
	SourceName   string
	License      string
	Section      string
	URL          string
	Maintainer   string
	// Description's first line is the summary; the following lines become
	// continuation lines.
	Description string

	Files []File
	// Conffiles are the Files opkg keeps when the user has changed them (a
	// new version lands next to them as <file>-opkg).
	Conffiles []string
	// Postinst and Prerm default to DefaultPostinst and DefaultPrerm.
	Postinst string
	Prerm    string

	// ModTime is every member's modification time; Build truncates it to
	// whole seconds. Use SOURCE_DATE_EPOCH or a constant.
	ModTime time.Time
}

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_.+-]*$`)
	versionRE = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~]*(-[A-Za-z0-9.+~]+)?$`)
	archRE    = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	epochRE   = regexp.MustCompile(`^[0-9]+:`)
)

// FileName is the name opkg feeds use: name_version_arch.ipk, without the
// version's epoch.
func (p *Package) FileName() string {
	return p.Name + "_" + epochRE.ReplaceAllString(p.Version, "") + "_" + p.Architecture + ".ipk"
}

// Validate reports what would make opkg refuse or misread the package.
func (p *Package) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !nameRE.MatchString(p.Name) {
		bad("package name %q: want [a-z0-9][a-z0-9_.+-]*", p.Name)
	}
	if !versionRE.MatchString(p.Version) {
		bad("version %q: want [epoch:]upstream[-revision], upstream starting with a digit and made of [A-Za-z0-9.+~]", p.Version)
	}
	if !archRE.MatchString(p.Architecture) {
		bad("architecture %q: want an OpenWrt package arch such as mipsel_24kc, or all", p.Architecture)
	}
	for _, d := range p.Depends {
		// "name" or "name (op version)"
		if f := strings.Fields(d); len(f) == 0 || !nameRE.MatchString(f[0]) || hasControl(d) {
			bad("depends %q: not a package name", d)
		}
	}
	for _, f := range []struct{ name, v string }{
		{"Source", p.Source}, {"SourceName", p.SourceName}, {"License", p.License},
		{"Section", p.Section}, {"URL", p.URL}, {"Maintainer", p.Maintainer},
	} {
		if strings.ContainsAny(f.v, "\r\n") || hasControl(f.v) {
			bad("%s %q: must be one line of printable text", f.name, f.v)
		}
	}
	if strings.TrimSpace(p.Description) == "" {
		bad("description is empty")
	} else if hasControl(strings.NewReplacer("\n", "", "\t", "").Replace(p.Description)) {
		bad("description has control characters")
	}
	seen := map[string]bool{}
	for _, f := range p.Files {
		if !validPath(f.Path) {
			bad("file %q: want an absolute, clean path", f.Path)
			continue
		}
		if seen[f.Path] {
			bad("file %q: listed twice", f.Path)
		}
		seen[f.Path] = true
		if f.Mode&^fs.ModePerm != 0 {
			bad("file %q: mode %v: only permission bits are allowed", f.Path, f.Mode)
		}
	}
	// A file that is also another file's directory cannot be written.
	for p2 := range seen {
		for d := path.Dir(p2); d != "/"; d = path.Dir(d) {
			if seen[d] {
				bad("file %q: is also the directory of %q", d, p2)
			}
		}
	}
	for _, c := range p.Conffiles {
		if !seen[c] {
			bad("conffile %q: not one of the package's files", c)
		}
	}
	if len(p.Files) == 0 {
		bad("no files")
	}
	return errors.Join(errs...)
}

func validPath(p string) bool {
	return strings.HasPrefix(p, "/") && p != "/" && path.Clean(p) == p && !hasControl(p)
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// Control returns the text of the control file for a data tree of
// installedSize bytes.
func (p *Package) Control(installedSize int64) []byte {
	var b bytes.Buffer
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	// The order of OpenWrt's include/package-pack.mk.
	field("Package", p.Name)
	field("Version", p.Version)
	field("Depends", strings.Join(p.Depends, ", "))
	field("Source", p.Source)
	field("SourceName", p.SourceName)
	field("License", p.License)
	field("Section", p.Section)
	field("URL", p.URL)
	field("Maintainer", p.Maintainer)
	field("Architecture", p.Architecture)
	field("Installed-Size", strconv.FormatInt(installedSize, 10))
	lines := strings.Split(strings.TrimSpace(p.Description), "\n")
	fmt.Fprintf(&b, "Description: %s\n", strings.TrimSpace(lines[0]))
	for _, l := range lines[1:] {
		l = strings.TrimSpace(l)
		if l == "" {
			l = "." // an empty line would end the control paragraph
		}
		fmt.Fprintf(&b, " %s\n", l)
	}
	return b.Bytes()
}

// Build returns the .ipk file.
func (p *Package) Build() ([]byte, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	mtime := time.Unix(p.ModTime.Unix(), 0).UTC()

	dataTar, err := writeTar(p.dataEntries(), mtime)
	if err != nil {
		return nil, fmt.Errorf("data.tar: %w", err)
	}
	// Installed-Size is what ipkg-build puts there: the length of the
	// uncompressed data tar, an upper bound of the bytes the files take.
	control := p.Control(int64(len(dataTar)))

	ctl := []entry{{name: "./", mode: 0o755, dir: true}}
	if len(p.Conffiles) > 0 {
		ctl = append(ctl, entry{name: "./conffiles", mode: 0o644, data: conffiles(p.Conffiles)})
	}
	ctl = append(ctl,
		entry{name: "./control", mode: 0o644, data: control},
		entry{name: "./postinst", mode: 0o755, data: []byte(orDefault(p.Postinst, DefaultPostinst))},
		entry{name: "./prerm", mode: 0o755, data: []byte(orDefault(p.Prerm, DefaultPrerm))},
	)
	controlTar, err := writeTar(ctl, mtime)
	if err != nil {
		return nil, fmt.Errorf("control.tar: %w", err)
	}

	dataGz, err := gz(dataTar)
	if err != nil {
		return nil, err
	}
	controlGz, err := gz(controlTar)
	if err != nil {
		return nil, err
	}
	// The outer order is fixed (not sorted): debian-binary, data, control,
	// as ipkg-build names them on its command line.
	outer, err := writeTar([]entry{
		{name: "./debian-binary", mode: 0o644, data: []byte("2.0\n")},
		{name: "./data.tar.gz", mode: 0o644, data: dataGz},
		{name: "./control.tar.gz", mode: 0o644, data: controlGz},
	}, mtime)
	if err != nil {
		return nil, fmt.Errorf("outer tar: %w", err)
	}
	return gz(outer)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func conffiles(list []string) []byte {
	l := slices.Clone(list)
	slices.Sort(l) // ipkg-build sorts it (LC_ALL=C sort)
	return []byte(strings.Join(slices.Compact(l), "\n") + "\n")
}

// entry is one tar member.
type entry struct {
	name string // "./usr/", "./usr/sbin/pgwrt"
	mode int64
	dir  bool
	data []byte
}

// dataEntries returns the data tree: "./", every directory on the way to a
// file, and the files, in `tar --sort=name` order.
func (p *Package) dataEntries() []entry {
	dirs := map[string]bool{}
	var es []entry
	for _, f := range p.Files {
		for d := path.Dir(f.Path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
		es = append(es, entry{name: "." + f.Path, mode: int64(f.Mode.Perm()), data: f.Data})
	}
	es = append(es, entry{name: "./", mode: 0o755, dir: true})
	for d := range dirs {
		es = append(es, entry{name: "." + d + "/", mode: 0o755, dir: true})
	}
	slices.SortFunc(es, func(a, b entry) int { return compareTarPaths(a.name, b.name) })
	return es
}

// compareTarPaths orders paths the way GNU tar --sort=name walks a tree: a
// directory right before its contents, siblings by byte order of their
// names. Comparing component by component gets this right where a plain
// string compare would not ("./a/x" belongs before "./a-b").
func compareTarPaths(a, b string) int {
	ac := strings.Split(strings.Trim(a, "/"), "/")
	bc := strings.Split(strings.Trim(b, "/"), "/")
	return slices.Compare(ac, bc)
}

func writeTar(es []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: mtime,
			Format:  tar.FormatGNU,
			// Uid, Gid 0 and empty Uname, Gname: tar --numeric-owner as root.
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// gz compresses b like `gzip -n -9`: no name, no time stamp, OS Unix.
func gz(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	zw.OS = 3 // Unix, as gzip writes it; Go's default says "unknown"
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
