# pgwrt — see README.md.
#   make build      ./pgwrt for this machine
#   make test       installs what the tests need (Debian packages) and runs them
#   make bench      pgbench direct vs through pgwrt and PgBouncer (session and
#                   transaction mode), plus Go benchmarks
#   make demo       a local cluster, pgwrt in front, a client, a failover
#   make cross      static binaries for the OpenWrt architectures (dist/)
#   make ipk        .ipk packages for opkg (dist/)

GO ?= go
export GOFLAGS ?= -buildvcs=false

.PHONY: all build test test-short deps vet bench bench-go demo clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o pgwrt ./cmd/pgwrt

deps:
	@sh .ci/install-deps

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

# Concurrent packages run with -race; the rest plainly. Everything talks to
# real PostgreSQL (and Patroni + etcd) started by the tests on loopback.
RACE_PKGS := ./router/... ./config/... ./uci/...
test: deps vet
	$(GO) test -race -count=1 -timeout 25m $(RACE_PKGS)
	PGWRT_TEST_ENGINE=goroutines $(GO) test -race -count=1 -timeout 10m -run 'TestTransaction|TestTxn' ./router/
	$(GO) test -count=1 -timeout 25m $$($(GO) list ./... | grep -v -e '/router' -e '/config' -e '/uci')

test-short:
	$(GO) test -short -count=1 ./...

# PgBouncer (Debian's package, installed here if missing) runs beside pgwrt
# in session and in transaction mode.
bench: build
	@sh .ci/install-deps bench
	$(GO) test -run '^$$' -bench . -benchmem ./router/...
	$(GO) run ./cmd/pgwrt-lab bench -pgwrt ./pgwrt

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./router/...

demo: build deps
	$(GO) run ./cmd/pgwrt-lab demo -pgwrt ./pgwrt

clean:
	rm -rf pgwrt dist

# The failover scenarios of issue 3 on a fresh Patroni + etcd cluster, with
# pgwrt in front and ledger clients writing through it, in session mode and
# then in transaction mode (about 6 minutes each).
.PHONY: failover-report
failover-report:
	$(GO) run ./cmd/pgwrt-lab failover-report $(FAILOVER_FLAGS)
	$(GO) run ./cmd/pgwrt-lab failover-report -pool-mode transaction $(FAILOVER_FLAGS)

include openwrt/openwrt.mk
