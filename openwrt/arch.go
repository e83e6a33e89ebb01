// Package openwrt knows what pgwrt needs about OpenWrt targets: which Go
// settings build a binary for an OpenWrt package architecture, how to tell
// from the ELF header that a binary really is one, and how to run it under
// qemu-user on a development machine.
//
// The packaging itself lives next to this file: files/ (the default
// /etc/config/pgwrt), pgwrt/ (the SDK feed Makefile), openwrt.mk (make cross,
// make ipk), ipk/ (the .ipk writer used by cmd/pgwrt-ipk) and
// luci-app-pgwrt/ (the LuCI status page and its rpcd plugin, built with the
// luci feed). The procd init script is ../init.d/pgwrt.
package openwrt

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os/exec"
	"sort"
)

// RouterTags are the build tags of every OpenWrt build of ./cmd/pgwrt
// (openwrt.mk's OPENWRT_TAGS and the feed Makefile's GO_PKG_TAGS; tests
// keep them in step): nosystemd drops the systemd integration, notoml the
// TOML config reader. Together with the small HTTP status server they
// take the mipsel_24kc binary from 7.8 MB to 5.3 MB. cmd/pgwrt's
// deps_test.go guards what such a build may link.
const RouterTags = "nosystemd,notoml"

// Arch is one OpenWrt package architecture (the Architecture: field of an
// .ipk and the name opkg matches against its arch list) and the Go settings
// that build for it.
type Arch struct {
	// Name is the OpenWrt package architecture, e.g. "mipsel_24kc".
	Name string
	// GOARCH and the variant variables; empty ones are not set.
	GOARCH  string
	GOMIPS  string
	GOARM   string
	GOAMD64 string
	GO386   string

	// Machine, Class and ByteOrder are what the ELF header of a binary for
	// this architecture says.
	Machine   elf.Machine
	Class     elf.Class
	ByteOrder binary.ByteOrder

	// QEMU is the qemu-user binary that runs it, QEMUCPU the -cpu model
	// that matches the target's core (a 24Kc has no FPU, so a hard-float
	// build dies there exactly as it would on the router).
	QEMU    string
	QEMUCPU string
}

// Arches are the architectures `make cross` builds, the common router SoCs
// first. openwrt.mk lists the same set; a test keeps the two in step.
var Arches = []Arch{
	{Name: "mipsel_24kc", GOARCH: "mipsle", GOMIPS: "softfloat",
		Machine: elf.EM_MIPS, Class: elf.ELFCLASS32, ByteOrder: binary.LittleEndian,
		QEMU: "qemu-mipsel-static", QEMUCPU: "24Kc"},
	{Name: "mips_24kc", GOARCH: "mips", GOMIPS: "softfloat",
		Machine: elf.EM_MIPS, Class: elf.ELFCLASS32, ByteOrder: binary.BigEndian,
		QEMU: "qemu-mips-static", QEMUCPU: "24Kc"},
	{Name: "arm_cortex-a7_neon-vfpv4", GOARCH: "arm", GOARM: "7",
		Machine: elf.EM_ARM, Class: elf.ELFCLASS32, ByteOrder: binary.LittleEndian,
		QEMU: "qemu-arm-static", QEMUCPU: "cortex-a7"},
	{Name: "aarch64_cortex-a53", GOARCH: "arm64",
		Machine: elf.EM_AARCH64, Class: elf.ELFCLASS64, ByteOrder: binary.LittleEndian,
		QEMU: "qemu-aarch64-static", QEMUCPU: "cortex-a53"},
	{Name: "x86_64", GOARCH: "amd64", GOAMD64: "v1",
		Machine: elf.EM_X86_64, Class: elf.ELFCLASS64, ByteOrder: binary.LittleEndian,
		QEMU: "qemu-x86_64-static"},
}

// Lookup returns the Arch called name.
func Lookup(name string) (Arch, bool) {
	for _, a := range Arches {
		if a.Name == name {
			return a, true
		}
	}
	return Arch{}, false
}

// Names returns the names of all known architectures, sorted.
func Names() []string {
	var n []string
	for _, a := range Arches {
		n = append(n, a.Name)
	}
	sort.Strings(n)
	return n
}

// Env returns the environment variables of a static cross build for a:
// CGO_ENABLED=0, GOOS=linux, GOARCH and whichever variant variable applies.
func (a Arch) Env() []string {
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + a.GOARCH}
	for _, kv := range [][2]string{
		{"GOMIPS", a.GOMIPS}, {"GOARM", a.GOARM}, {"GOAMD64", a.GOAMD64}, {"GO386", a.GO386},
	} {
		if kv[1] != "" {
			env = append(env, kv[0]+"="+kv[1])
		}
	}
	return env
}

// MIPS ABI flags (.MIPS.abiflags, struct Elf_MIPS_ABIFlags_v0): byte 7 is
// fp_abi, and Val_GNU_MIPS_ABI_FP_SOFT says "no FPU instructions".
const (
	mipsABIFlagsSection = ".MIPS.abiflags"
	mipsFPABIOffset     = 7
	mipsFPABISoft       = 3
)

// CheckELF reports whether the file at path is a Linux executable for a: the
// ELF machine, class and byte order must match, and for the soft-float MIPS
// targets the MIPS ABI flags must say soft float — a hard-float binary
// installs fine and then dies with "Illegal instruction" on a 24Kc.
func (a Arch) CheckELF(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	var problems []error
	if f.Machine != a.Machine {
		problems = append(problems, fmt.Errorf("machine is %v, %s needs %v", f.Machine, a.Name, a.Machine))
	}
	if f.Class != a.Class {
		problems = append(problems, fmt.Errorf("class is %v, %s needs %v", f.Class, a.Name, a.Class))
	}
	if f.ByteOrder != a.ByteOrder {
		problems = append(problems, fmt.Errorf("byte order is %v, %s needs %v", f.ByteOrder, a.Name, a.ByteOrder))
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		problems = append(problems, fmt.Errorf("type is %v, not an executable", f.Type))
	}
	if a.GOMIPS == "softfloat" && len(problems) == 0 {
		if err := checkMIPSSoftFloat(f); err != nil {
			problems = append(problems, err)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s: %w", path, errors.Join(problems...))
	}
	return nil
}

func checkMIPSSoftFloat(f *elf.File) error {
	s := f.Section(mipsABIFlagsSection)
	if s == nil {
		return fmt.Errorf("no %s section: cannot tell soft from hard float", mipsABIFlagsSection)
	}
	b, err := s.Data()
	if err != nil {
		return fmt.Errorf("%s: %w", mipsABIFlagsSection, err)
	}
	if len(b) <= mipsFPABIOffset {
		return fmt.Errorf("%s is %d bytes, too short", mipsABIFlagsSection, len(b))
	}
	if fp := b[mipsFPABIOffset]; fp != mipsFPABISoft {
		return fmt.Errorf("floating point ABI is %d, not soft float (%d): build with GOMIPS=softfloat", fp, mipsFPABISoft)
	}
	return nil
}

// QEMUPath returns the path of a's qemu-user binary, or an error when it is
// not installed.
func (a Arch) QEMUPath() (string, error) {
	if a.QEMU == "" {
		return "", fmt.Errorf("%s: no qemu-user binary known", a.Name)
	}
	p, err := exec.LookPath(a.QEMU)
	if err != nil {
		return "", fmt.Errorf("%s: not installed (Debian package qemu-user-static)", a.QEMU)
	}
	return p, nil
}

// QEMUArgs returns the argv that runs bin with args under qemu-user for a,
// pinned to the target's CPU model.
func (a Arch) QEMUArgs(qemu, bin string, args ...string) []string {
	argv := []string{qemu}
	if a.QEMUCPU != "" {
		argv = append(argv, "-cpu", a.QEMUCPU)
	}
	argv = append(argv, bin)
	return append(argv, args...)
}
