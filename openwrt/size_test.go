package openwrt

import (
	"os"
	"testing"
)

// maxRouterBinary is the most the mipsel_24kc binary may weigh. Typical
// targets have 16 MB of flash (8 MB on the smallest); the binary is not
// compressed on the overlay. It was 7.8 MB with net/http's server, 5.3 MB
// since the status server is a small responder and the router build
// leaves out systemd and TOML (RouterTags).
const maxRouterBinary = 6 << 20

// TestRouterBinarySize builds the mipsel_24kc binary the way "make cross"
// does and fails when it grows past maxRouterBinary.
func TestRouterBinarySize(t *testing.T) {
	bin := crossBinary(t, "mipsel_24kc")
	st, err := os.Stat(bin.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mipsel_24kc pgwrt: %d bytes (%.2f MiB, limit %d MiB)", st.Size(), float64(st.Size())/(1<<20), maxRouterBinary>>20)
	if st.Size() > maxRouterBinary {
		t.Errorf("mipsel_24kc pgwrt is %d bytes, over the %d-byte limit: look at what a new import pulls in (go tool nm -size -sort size on an unstripped build)", st.Size(), maxRouterBinary)
	}
}
