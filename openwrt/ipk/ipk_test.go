package ipk

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func testPackage() *Package {
	return &Package{
		Name:         "pgwrt",
		Version:      "0.1.0-r1",
		Architecture: "mipsel_24kc",
		Depends:      []string{"libc"},
		Source:       "openwrt/pgwrt",
		SourceName:   "pgwrt",
		Section:      "net",
		Maintainer:   "pgwrt developers",
		Description:  "PostgreSQL pooler\nfinds the primary itself.\n\nsecond paragraph",
		Files: []File{
			{Path: "/usr/sbin/pgwrt", Mode: 0o755, Data: []byte("\x7fELF not really a program\n")},
			{Path: "/etc/init.d/pgwrt", Mode: 0o755, Data: []byte("#!/bin/sh /etc/rc.common\n")},
			{Path: "/etc/config/pgwrt", Mode: 0o600, Data: []byte("config pgwrt 'main'\n")},
		},
		Conffiles: []string{"/etc/config/pgwrt"},
		ModTime:   testTime.Add(300 * time.Millisecond),
	}
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
}

func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// member is one line of `tar -tv --numeric-owner`.
type member struct {
	mode, owner, name string
	size              int64
	mtime             string
}

func list(t *testing.T, dir, archive string) []member {
	t.Helper()
	out := run(t, dir, "tar", "--numeric-owner", "--full-time", "-tvzf", archive)
	var ms []member
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		// -rw-r--r-- 0/0         4 2024-05-06 07:08:09 ./debian-binary
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("unexpected tar listing line %q", line)
		}
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil {
			t.Fatalf("size in %q: %v", line, err)
		}
		ms = append(ms, member{mode: f[0], owner: f[1], size: size, mtime: f[3] + " " + f[4], name: f[5]})
	}
	return ms
}

func checkMembers(t *testing.T, what string, got []member, want [][2]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d members %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i, m := range got {
		if m.name != want[i][0] || m.mode != want[i][1] {
			t.Errorf("%s member %d: %s %s, want %s %s", what, i, m.mode, m.name, want[i][1], want[i][0])
		}
		if m.owner != "0/0" {
			t.Errorf("%s %s: owner %s, want 0/0", what, m.name, m.owner)
		}
		if m.mtime != "2024-05-06 07:08:09" {
			t.Errorf("%s %s: mtime %s, want the package's ModTime in whole seconds", what, m.name, m.mtime)
		}
	}
}

func TestBuildUnpacksWithTar(t *testing.T) {
	need(t, "tar", "gzip")
	p := testPackage()
	b, err := p.Build()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	name := p.FileName()
	if name != "pgwrt_0.1.0-r1_mipsel_24kc.ipk" {
		t.Errorf("FileName = %q", name)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}

	checkGzipHeader(t, "ipk", b)
	checkMembers(t, "ipk", list(t, dir, name), [][2]string{
		{"./debian-binary", "-rw-r--r--"},
		{"./data.tar.gz", "-rw-r--r--"},
		{"./control.tar.gz", "-rw-r--r--"},
	})
	run(t, dir, "tar", "-xzf", name)
	if got, _ := os.ReadFile(filepath.Join(dir, "debian-binary")); string(got) != "2.0\n" {
		t.Errorf("debian-binary = %q", got)
	}

	// data.tar.gz: directories included, sorted like tar --sort=name.
	checkMembers(t, "data", list(t, dir, "data.tar.gz"), [][2]string{
		{"./", "drwxr-xr-x"},
		{"./etc/", "drwxr-xr-x"},
		{"./etc/config/", "drwxr-xr-x"},
		{"./etc/config/pgwrt", "-rw-------"},
		{"./etc/init.d/", "drwxr-xr-x"},
		{"./etc/init.d/pgwrt", "-rwxr-xr-x"},
		{"./usr/", "drwxr-xr-x"},
		{"./usr/sbin/", "drwxr-xr-x"},
		{"./usr/sbin/pgwrt", "-rwxr-xr-x"},
	})
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "tar", "-xzf", "data.tar.gz", "-C", root)
	for _, f := range p.Files {
		got, err := os.ReadFile(filepath.Join(root, f.Path))
		if err != nil || !bytes.Equal(got, f.Data) {
			t.Errorf("%s: %q, %v; want %q", f.Path, got, err, f.Data)
		}
	}
	dataTar := run(t, dir, "gzip", "-dc", "data.tar.gz")

	// control.tar.gz
	checkMembers(t, "control", list(t, dir, "control.tar.gz"), [][2]string{
		{"./", "drwxr-xr-x"},
		{"./conffiles", "-rw-r--r--"},
		{"./control", "-rw-r--r--"},
		{"./postinst", "-rwxr-xr-x"},
		{"./prerm", "-rwxr-xr-x"},
	})
	ctl := filepath.Join(dir, "ctl")
	if err := os.Mkdir(ctl, 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "tar", "-xzf", "control.tar.gz", "-C", ctl)
	read := func(n string) string {
		b, err := os.ReadFile(filepath.Join(ctl, n))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	wantControl := "Package: pgwrt\n" +
		"Version: 0.1.0-r1\n" +
		"Depends: libc\n" +
		"Source: openwrt/pgwrt\n" +
		"SourceName: pgwrt\n" +
		"Section: net\n" +
		"Maintainer: pgwrt developers\n" +
		"Architecture: mipsel_24kc\n" +
		"Installed-Size: " + strconv.Itoa(len(dataTar)) + "\n" +
		"Description: PostgreSQL pooler\n" +
		" finds the primary itself.\n" +
		" .\n" +
		" second paragraph\n"
	if got := read("control"); got != wantControl {
		t.Errorf("control:\n%s\nwant:\n%s", got, wantControl)
	}
	if got := read("conffiles"); got != "/etc/config/pgwrt\n" {
		t.Errorf("conffiles = %q", got)
	}
	if got := read("postinst"); got != DefaultPostinst {
		t.Errorf("postinst = %q", got)
	}
	if got := read("prerm"); got != DefaultPrerm {
		t.Errorf("prerm = %q", got)
	}
}

// checkGzipHeader checks what `gzip -n` leaves out: no name, no time.
func checkGzipHeader(t *testing.T, what string, b []byte) {
	t.Helper()
	if len(b) < 10 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("%s: not gzip", what)
	}
	if flg := b[3]; flg != 0 {
		t.Errorf("%s: gzip FLG = %#x, want 0 (no name, no comment, no extra)", what, flg)
	}
	if !bytes.Equal(b[4:8], []byte{0, 0, 0, 0}) {
		t.Errorf("%s: gzip MTIME = % x, want 0", what, b[4:8])
	}
}

// TestTarsAreGNU checks the tar format of all three archives: GNU magic,
// and no user or group names.
func TestTarsAreGNU(t *testing.T) {
	need(t, "tar", "gzip")
	b, err := testPackage().Build()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "p.ipk"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dir, "tar", "-xzf", "p.ipk")
	for _, gzName := range []string{"p.ipk", "data.tar.gz", "control.tar.gz"} {
		gzb, err := os.ReadFile(filepath.Join(dir, gzName))
		if err != nil {
			t.Fatal(err)
		}
		checkGzipHeader(t, gzName, gzb)
		tb := []byte(run(t, dir, "gzip", "-dc", gzName))
		if len(tb)%512 != 0 || len(tb) < 512 {
			t.Fatalf("%s: tar of %d bytes", gzName, len(tb))
		}
		for off := 0; off+512 <= len(tb); {
			h := tb[off : off+512]
			if bytes.Equal(h, make([]byte, 512)) {
				break // end of archive
			}
			name := string(bytes.TrimRight(h[0:100], "\x00"))
			if magic := string(h[257:265]); magic != "ustar  \x00" {
				t.Errorf("%s %s: magic %q, want GNU %q", gzName, name, magic, "ustar  \x00")
			}
			if u, g := bytes.TrimRight(h[265:297], "\x00"), bytes.TrimRight(h[297:329], "\x00"); len(u) > 0 || len(g) > 0 {
				t.Errorf("%s %s: uname %q gname %q, want none", gzName, name, u, g)
			}
			size, err := strconv.ParseInt(strings.Trim(string(h[124:136]), "\x00 "), 8, 64)
			if err != nil {
				t.Fatalf("%s %s: size field: %v", gzName, name, err)
			}
			off += 512 + int((size+511)/512*512)
		}
	}
}

func TestBuildIsReproducible(t *testing.T) {
	a, err := testPackage().Build()
	if err != nil {
		t.Fatal(err)
	}
	p := testPackage()
	slices.Reverse(p.Files) // input order must not matter
	b, err := p.Build()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two builds of the same package differ")
	}
	p.ModTime = p.ModTime.Add(time.Second)
	c, err := p.Build()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c) {
		t.Fatal("ModTime does not reach the archive")
	}
}

// TestOrderMatchesGNUTar builds the same tree on disk, lets GNU tar
// --sort=name list it, and compares with our order, with names chosen so a
// plain string sort would get it wrong.
func TestOrderMatchesGNUTar(t *testing.T) {
	need(t, "tar")
	p := testPackage()
	p.Files = []File{
		{Path: "/a-b", Mode: 0o644},
		{Path: "/a/x", Mode: 0o644},
		{Path: "/a/B/y", Mode: 0o644},
		{Path: "/a.c/z", Mode: 0o644},
		{Path: "/Z", Mode: 0o644},
	}
	p.Conffiles = nil
	dir := t.TempDir()
	for _, f := range p.Files {
		fp := filepath.Join(dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(fp), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(fp, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := run(t, dir, "sh", "-c", "tar --sort=name -cf - . | tar -tf -")
	want := strings.Fields(out)
	var got []string
	for _, e := range p.dataEntries() {
		got = append(got, e.name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("order:\n got %v\nwant %v (GNU tar --sort=name)", got, want)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(p *Package)
		want   string // substring of the error; "" = valid
	}{
		{"ok", func(p *Package) {}, ""},
		{"epoch and release", func(p *Package) { p.Version = "1:0.1.0+3.gabc1234-r2" }, ""},
		{"arch all", func(p *Package) { p.Architecture = "all" }, ""},
		{"versioned depends", func(p *Package) { p.Depends = []string{"libc", "ca-bundle (>= 2020)"} }, ""},
		{"upper-case name", func(p *Package) { p.Name = "PgWrt" }, "package name"},
		{"v prefix", func(p *Package) { p.Version = "v0.1.0" }, "version"},
		{"raw git describe", func(p *Package) { p.Version = "0.1.0-3-gabc1234" }, "version"},
		{"empty version", func(p *Package) { p.Version = "" }, "version"},
		{"arch with space", func(p *Package) { p.Architecture = "mipsel 24kc" }, "architecture"},
		{"relative path", func(p *Package) { p.Files[0].Path = "usr/sbin/pgwrt" }, "absolute"},
		{"unclean path", func(p *Package) { p.Files[0].Path = "/usr/../sbin/pgwrt" }, "absolute"},
		{"duplicate", func(p *Package) { p.Files[1].Path = p.Files[0].Path }, "twice"},
		{"file is a dir", func(p *Package) { p.Files[1].Path = "/usr/sbin" }, "directory"},
		{"setuid", func(p *Package) { p.Files[0].Mode |= 0o4000 | 1<<23 }, "mode"},
		{"stray conffile", func(p *Package) { p.Conffiles = []string{"/etc/config/other"} }, "conffile"},
		{"no files", func(p *Package) { p.Files = nil; p.Conffiles = nil }, "no files"},
		{"no description", func(p *Package) { p.Description = " \n" }, "description"},
		{"newline in field", func(p *Package) { p.Maintainer = "a\nPackage: evil" }, "Maintainer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPackage()
			tc.change(p)
			err := p.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error, want one about %q", tc.want)
			case tc.want != "" && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if err != nil {
				if _, berr := p.Build(); berr == nil {
					t.Fatal("Build accepted what Validate refuses")
				}
			}
		})
	}
}

func TestFileNameDropsEpoch(t *testing.T) {
	p := testPackage()
	p.Version = "2:1.0-r3"
	if got := p.FileName(); got != "pgwrt_1.0-r3_mipsel_24kc.ipk" {
		t.Errorf("FileName = %q", got)
	}
}
