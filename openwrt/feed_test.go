package openwrt

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A stand-in OpenWrt build tree, just enough to evaluate the feed
// Makefile: rules.mk, package.mk and golang-package.mk define the
// variables and functions openwrt/pgwrt/Makefile uses, and BuildPackage
// turns the package into test-* targets that run its install recipe and
// print its metadata.
var fakeTree = map[string]string{
	"rules.mk": `INCLUDE_DIR:=$(TOPDIR)/include
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_DATA:=install -m0644
INSTALL_CONF:=install -m0600
`,
	"include/package.mk": `PKG_BUILD_DIR:=$(if $(USE_SOURCE_DIR),$(USE_SOURCE_DIR),$(TOPDIR)/build_dir/$(PKG_NAME)-$(PKG_VERSION))
define Build/Prepare
	@echo prepare-default
endef
define BuildPackage
.PHONY: test-install test-info test-prepare
test-install:
	$$(call Package/$(1)/install,$$(DEST))
test-info:
	@echo 'section=$$(strip $$(SECTION)) category=$$(strip $$(CATEGORY))'
	@echo 'conffiles=$$(strip $$(Package/$(1)/conffiles))'
	@echo 'go_pkg=$$(GO_PKG) build_pkg=$$(GO_PKG_BUILD_PKG) ldflags_x=$$(GO_PKG_LDFLAGS_X)'
	@echo 'tags=$$(GO_PKG_TAGS)'
	@echo 'proto=$$(PKG_SOURCE_PROTO) url=$$(PKG_SOURCE_URL) version=$$(PKG_SOURCE_VERSION)'
test-prepare:
	$$(Build/Prepare)
$$(eval $$(Package/$(1)))
endef
`,
	"feeds/packages/lang/golang/golang-package.mk": `GO_ARCH_DEPENDS:=@(mipsel||mips||arm||aarch64||x86_64)
define GoPackage/Package/Install/Bin
	$(INSTALL_DIR) $(1)$(GO_PKG_INSTALL_BIN_PATH)
	$(INSTALL_BIN) $(FAKE_GO_BIN) $(1)$(GO_PKG_INSTALL_BIN_PATH)/pgwrt
endef
define GoBinPackage
endef
`,
}

func feedMake(t *testing.T, vars []string, target string) (string, error) {
	t.Helper()
	top := t.TempDir()
	for name, text := range fakeTree {
		p := filepath.Join(top, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk, err := filepath.Abs(filepath.Join(repoRoot, "openwrt", "pgwrt", "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-s", "-f", mk, "TOPDIR=" + top}, vars...)
	cmd := exec.Command("make", append(args, target)...)
	cmd.Dir = top
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestFeedMakefileInstall(t *testing.T) {
	needMake(t)
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	fakeBin := filepath.Join(t.TempDir(), "pgwrt")
	if err := os.WriteFile(fakeBin, []byte("\x7fELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := feedMake(t, []string{"USE_SOURCE_DIR=" + root, "DEST=" + dest, "FAKE_GO_BIN=" + fakeBin}, "test-install")
	if err != nil {
		t.Fatalf("install recipe: %v\n%s", err, out)
	}
	for path, mode := range map[string]os.FileMode{
		"usr/sbin/pgwrt":   0o755,
		"etc/init.d/pgwrt": 0o755,
		"etc/config/pgwrt": 0o600,
		"etc/init.d":       0o755 | os.ModeDir,
		"etc/config":       0o755 | os.ModeDir,
		"usr/sbin":         0o755 | os.ModeDir,
	} {
		st, err := os.Stat(filepath.Join(dest, path))
		if err != nil {
			t.Errorf("/%s not installed: %v", path, err)
			continue
		}
		if st.Mode()&(os.ModeDir|os.ModePerm) != mode {
			t.Errorf("/%s: mode %v, want %v", path, st.Mode(), mode)
		}
	}

	info, err := feedMake(t, []string{"USE_SOURCE_DIR=" + root}, "test-info")
	if err != nil {
		t.Fatalf("test-info: %v\n%s", err, info)
	}
	for _, want := range []string{
		"section=net category=Network",
		"conffiles=/etc/config/pgwrt",
		"go_pkg=pgwrt build_pkg=pgwrt/cmd/pgwrt ldflags_x=main.version=0.1.0-r1",
		"proto= url= version=", // a local tree: nothing to download
		"tags=" + RouterTags,
	} {
		if !strings.Contains(info, want+"\n") {
			t.Errorf("feed Makefile info lacks %q:\n%s", want, info)
		}
	}
}

func TestFeedMakefileSource(t *testing.T) {
	needMake(t)
	// No source given: prepare stops with a message saying how to give one.
	out, err := feedMake(t, nil, "test-prepare")
	if err == nil || !strings.Contains(out, "USE_SOURCE_DIR=") {
		t.Errorf("prepare without a source: %v\n%s", err, out)
	}
	// A local tree: package.mk's own prepare.
	if out, err := feedMake(t, []string{"USE_SOURCE_DIR=/src/pgwrt"}, "test-prepare"); err != nil || out != "prepare-default\n" {
		t.Errorf("prepare with USE_SOURCE_DIR: %v\n%s", err, out)
	}
	// A git server.
	out, err = feedMake(t, []string{"PGWRT_GIT_URL=https://git.example.invalid/pgwrt.git", "PGWRT_GIT_REF=0123abcd"}, "test-info")
	if err != nil || !strings.Contains(out, "proto=git url=https://git.example.invalid/pgwrt.git version=0123abcd\n") {
		t.Errorf("PGWRT_GIT_URL: %v\n%s", err, out)
	}
}
