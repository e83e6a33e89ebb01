package openwrt

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestArchTable(t *testing.T) {
	names := Names()
	if !slices.IsSorted(names) || len(names) != len(Arches) {
		t.Errorf("Names() = %v", names)
	}
	mipsel, _ := Lookup("mipsel_24kc")
	if got, want := mipsel.Env(), []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=mipsle", "GOMIPS=softfloat"}; !slices.Equal(got, want) {
		t.Errorf("mipsel_24kc Env() = %v, want %v", got, want)
	}
	x86, _ := Lookup("x86_64")
	if got, want := x86.Env(), []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOAMD64=v1"}; !slices.Equal(got, want) {
		t.Errorf("x86_64 Env() = %v, want %v", got, want)
	}
	if _, ok := Lookup("mipsel"); ok {
		t.Error("Lookup accepts a name that is not an OpenWrt package arch")
	}
}

// TestCheckELFOfTestBinary uses the running test binary, a host ELF file,
// so it needs no cross build.
func TestCheckELFOfTestBinary(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("needs a linux/amd64 host")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	x86, _ := Lookup("x86_64")
	if err := x86.CheckELF(exe); err != nil {
		t.Errorf("x86_64: %v", err)
	}
	for name, want := range map[string]string{
		"mipsel_24kc":              "machine is EM_X86_64",
		"arm_cortex-a7_neon-vfpv4": "class is ELFCLASS64",
		"mips_24kc":                "byte order",
	} {
		a, _ := Lookup(name)
		if err := a.CheckELF(exe); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: CheckELF(amd64 binary) = %v, want an error about %q", name, err, want)
		}
	}
	a, _ := Lookup("mipsel_24kc")
	if err := a.CheckELF(filepath.Join(repoRoot, "init.d", "pgwrt")); err == nil {
		t.Error("CheckELF accepts a shell script")
	}
}

// TestCheckELFRefusesHardFloat flips the floating point ABI of a real
// soft-float build to "hard float, double precision" and expects CheckELF
// to notice: such a binary installs fine and dies with SIGILL on a 24Kc.
func TestCheckELFRefusesHardFloat(t *testing.T) {
	bin := crossBinary(t, "mipsel_24kc")
	a, _ := Lookup("mipsel_24kc")
	if err := a.CheckELF(bin.path); err != nil {
		t.Fatalf("soft-float build: %v", err)
	}
	b, err := os.ReadFile(bin.path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(mipsABIFlagsSection)
	if s == nil {
		t.Fatalf("no %s section", mipsABIFlagsSection)
	}
	hard := filepath.Join(t.TempDir(), "pgwrt-hardfloat")
	b[s.Offset+mipsFPABIOffset] = 1 // Val_GNU_MIPS_ABI_FP_DOUBLE
	if err := os.WriteFile(hard, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := a.CheckELF(hard); err == nil || !strings.Contains(err.Error(), "soft float") {
		t.Errorf("CheckELF(hard-float binary) = %v, want an error about soft float", err)
	}
}

// TestIPKOfCrossBinary packs the real mipsel_24kc build with cmd/pgwrt-ipk,
// unpacks it with tar and checks that what lands in /usr/sbin is a
// soft-float little-endian MIPS program, next to the repository's init
// script and default config.
func TestIPKOfCrossBinary(t *testing.T) {
	for _, tool := range []string{"tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	bin := crossBinary(t, "mipsel_24kc")
	dir := t.TempDir()
	tool := filepath.Join(dir, "pgwrt-ipk")
	build := exec.Command("go", "build", "-o", tool, "./cmd/pgwrt-ipk")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/pgwrt-ipk: %v\n%s", err, out)
	}
	pack := func(arch, out string) ([]byte, error) {
		cmd := exec.Command(tool, "-bin", bin.path, "-arch", arch, "-version", "0.0.0+test-r1", "-out", out, "-mtime", "1700000000")
		cmd.Dir = repoRoot
		return cmd.CombinedOutput()
	}

	out1, out2 := filepath.Join(dir, "1"), filepath.Join(dir, "2")
	for _, out := range []string{out1, out2} {
		if b, err := pack("mipsel_24kc", out); err != nil {
			t.Fatalf("pgwrt-ipk: %v\n%s", err, b)
		}
	}
	const name = "pgwrt_0.0.0+test-r1_mipsel_24kc.ipk"
	ipk1, err := os.ReadFile(filepath.Join(out1, name))
	if err != nil {
		t.Fatal(err)
	}
	ipk2, err := os.ReadFile(filepath.Join(out2, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ipk1, ipk2) {
		t.Error("two packs of the same binary differ")
	}
	st, _ := os.Stat(bin.path)
	t.Logf("%s: %d bytes (binary %d bytes)", name, len(ipk1), st.Size())

	root := filepath.Join(dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	untar := func(dir, archive string, extra ...string) {
		t.Helper()
		cmd := exec.Command("tar", append([]string{"-xzf", archive}, extra...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tar -xzf %s: %v\n%s", archive, err, out)
		}
	}
	untar(out1, name)
	untar(out1, "data.tar.gz", "-C", root)

	a, _ := Lookup("mipsel_24kc")
	installed := filepath.Join(root, "usr", "sbin", "pgwrt")
	if err := a.CheckELF(installed); err != nil {
		t.Errorf("/usr/sbin/pgwrt from the ipk: %v", err)
	}
	for _, other := range []string{"mips_24kc", "aarch64_cortex-a53", "x86_64"} {
		o, _ := Lookup(other)
		if err := o.CheckELF(installed); err == nil {
			t.Errorf("the mipsel_24kc binary passes as %s", other)
		}
	}
	for src, dst := range map[string]string{
		bin.path: "usr/sbin/pgwrt",
		filepath.Join(repoRoot, "init.d", "pgwrt"):                  "etc/init.d/pgwrt",
		filepath.Join(repoRoot, "openwrt", "files", "pgwrt.config"): "etc/config/pgwrt",
	} {
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, dst))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("/%s in the ipk differs from %s (%v)", dst, src, err)
		}
	}

	// The wrong -arch is refused before anything is written.
	wrong := filepath.Join(dir, "wrong")
	if b, err := pack("mips_24kc", wrong); err == nil || !strings.Contains(string(b), "byte order") {
		t.Errorf("packing a mipsel binary as mips_24kc: %v\n%s", err, b)
	}
	if _, err := os.Stat(wrong); err == nil {
		t.Error("a refused pack left an output directory")
	}
}
