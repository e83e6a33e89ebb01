# openwrt/openwrt.mk: static cross builds and .ipk packages for OpenWrt,
# without the OpenWrt SDK. The top-level Makefile includes it; run make from
# the repository root.
#
#   make cross        dist/<openwrt-arch>/pgwrt for every arch below
#   make ipk          dist/pgwrt_<version>_<openwrt-arch>.ipk (builds cross first)
#   make cross-mipsel_24kc, make ipk-mipsel_24kc   one arch only
#   make openwrt-version                           print VERSION and the package version
#
# VERSION (the program's, in "pgwrt version") comes from git describe,
# rewritten so that opkg orders it sensibly and it has no "-" of its own:
#   tag v1.2.3                  -> 1.2.3
#   v1.2.3, 4 commits later     -> 1.2.3+4.gabc1234
#   tag v2.0.0-rc1              -> 2.0.0~rc1   (~ sorts before 2.0.0)
#   no tag                      -> 0.1.0+gabc1234
#   no git                      -> 0.1.0
# The package version appends OpenWrt's release number: 1.2.3-r1.
# Set VERSION, OPENWRT_RELEASE, DIST or SOURCE_DATE_EPOCH to override.

GO ?= go
DIST ?= dist
OPENWRT_RELEASE ?= 1

ifeq ($(origin VERSION),undefined)
VERSION := $(shell \
	d=$$(git describe --tags --abbrev=7 --match 'v[0-9]*' 2>/dev/null) && \
		echo "$$d" | sed -e 's/^v//' -e 's/-\([0-9][0-9]*\)-g\([0-9a-f][0-9a-f]*\)$$/+\1.g\2/' -e 's/-/~/g' || \
	{ s=$$(git rev-parse --short=7 HEAD 2>/dev/null) && echo "0.1.0+g$$s"; } || \
	echo 0.1.0)
endif
IPK_VERSION := $(VERSION)-r$(OPENWRT_RELEASE)

# Every member of an .ipk gets this time stamp: the last commit's, so
# packages of the same commit are byte-identical.
ifeq ($(origin SOURCE_DATE_EPOCH),undefined)
SOURCE_DATE_EPOCH := $(shell git log -1 --format=%ct 2>/dev/null)
endif

# OpenWrt package architecture -> Go target (openwrt/arch.go has the same
# table, with the ELF checks; a test keeps them in step). mips needs soft
# float: the 24Kc has no FPU.
OPENWRT_ARCHES := mipsel_24kc mips_24kc arm_cortex-a7_neon-vfpv4 aarch64_cortex-a53 x86_64
OPENWRT_GOENV_mipsel_24kc := GOARCH=mipsle GOMIPS=softfloat
OPENWRT_GOENV_mips_24kc := GOARCH=mips GOMIPS=softfloat
OPENWRT_GOENV_arm_cortex-a7_neon-vfpv4 := GOARCH=arm GOARM=7
OPENWRT_GOENV_aarch64_cortex-a53 := GOARCH=arm64
OPENWRT_GOENV_x86_64 := GOARCH=amd64 GOAMD64=v1

OPENWRT_LDFLAGS = -s -w -X main.version=$(VERSION)
# Build tags of the router builds (openwrt.RouterTags in openwrt/arch.go;
# a test keeps them in step): no systemd integration, no TOML config.
OPENWRT_TAGS := nosystemd,notoml

OPENWRT_CROSS := $(addprefix cross-,$(OPENWRT_ARCHES))
OPENWRT_IPK := $(addprefix ipk-,$(OPENWRT_ARCHES))

.PHONY: cross ipk openwrt-version $(OPENWRT_CROSS) $(OPENWRT_IPK)

cross: $(OPENWRT_CROSS)

$(OPENWRT_CROSS): cross-%:
	@mkdir -p $(DIST)/$*
	CGO_ENABLED=0 GOOS=linux $(OPENWRT_GOENV_$*) $(GO) build -tags $(OPENWRT_TAGS) -trimpath -ldflags "$(OPENWRT_LDFLAGS)" -o $(DIST)/$*/pgwrt ./cmd/pgwrt
	@printf '%-60s %9d bytes\n' $(DIST)/$*/pgwrt $$(wc -c < $(DIST)/$*/pgwrt)

ipk: cross $(OPENWRT_IPK)

$(OPENWRT_IPK): ipk-%: cross-%
	@$(GO) run ./cmd/pgwrt-ipk -bin $(DIST)/$*/pgwrt -arch $* -version $(IPK_VERSION) -out $(DIST) \
		-initd init.d/pgwrt -config openwrt/files/pgwrt.config $(if $(SOURCE_DATE_EPOCH),-mtime $(SOURCE_DATE_EPOCH))

openwrt-version:
	@echo $(VERSION) $(IPK_VERSION)
