package patronilab

import (
	"context"
	"errors"
	"os"
	"testing"
)

// StartT starts a lab for a test. It skips the test when Patroni, etcd or
// PostgreSQL is missing and stops the lab when the test ends, printing the
// logs' tails if the test failed. The base directory is removed unless
// $PATRONILAB_KEEP is set.
func StartT(t testing.TB, o Options) *Cluster {
	t.Helper()
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	check := o.withDefaults()
	if err := check.resolveBinaries(); err != nil {
		t.Skipf("patronilab: %v", err)
	}
	if o.BaseDir == "" {
		dir, err := os.MkdirTemp("", "patronilab-")
		if err != nil {
			t.Fatal(err)
		}
		o.BaseDir = dir
		t.Cleanup(func() {
			if os.Getenv("PATRONILAB_KEEP") != "" {
				t.Logf("patronilab: keeping %s", dir)
				return
			}
			_ = os.RemoveAll(dir)
		})
	}
	c, err := Start(context.Background(), o)
	if errors.Is(err, ErrMissingBinary) {
		t.Skipf("patronilab: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("patronilab: logs in %s\n%s", c.BaseDir, c.LogTails(40))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("patronilab: stop: %v", err)
		}
	})
	return c
}
