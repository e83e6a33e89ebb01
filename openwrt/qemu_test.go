package openwrt

import (
	"strings"
	"testing"
	"time"
)

// TestCrossBinariesRunUnderQEMU runs the router builds of ./cmd/pgwrt under
// qemu-user, each pinned to its target's CPU model (a 24Kc has no FPU), and
// checks what "pgwrt version" prints.
func TestCrossBinariesRunUnderQEMU(t *testing.T) {
	for _, name := range []string{"mipsel_24kc", "mips_24kc", "aarch64_cortex-a53"} {
		t.Run(name, func(t *testing.T) {
			p := startUnderQEMU(t, name, "version")
			if err := p.wait(t, 2*time.Minute); err != nil {
				t.Fatalf("pgwrt version under %s: %v\n%s", p.Arch.QEMU, err, p.Output)
			}
			out := strings.TrimSpace(p.Output.String())
			want := "pgwrt " + p.Bin.version
			if p.Bin.version == "" { // a binary from PGWRT_CROSS_DIST
				if !strings.HasPrefix(out, "pgwrt ") {
					t.Errorf("output %q, want pgwrt <version>", out)
				}
			} else if out != want {
				t.Errorf("output %q, want %q", out, want)
			}
			if err := p.Arch.CheckELF(p.Bin.path); err != nil {
				t.Error(err)
			}
		})
	}
}
