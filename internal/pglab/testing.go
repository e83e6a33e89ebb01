package pglab

import (
	"context"
	"testing"
	"time"
)

// StartT starts a cluster for a test and stops it (removing its files) when
// the test ends. It skips the test when PostgreSQL is not installed or
// cannot be run, and fails it when the cluster does not come up. When the
// test has failed, the end of each node's log goes to the test log.
func StartT(t testing.TB, opt Options) *Cluster {
	t.Helper()
	if _, err := PGBin(); err != nil {
		t.Skipf("pglab: PostgreSQL binaries not available: %v", err)
	}
	if _, err := runAs(); err != nil {
		t.Skipf("pglab: cannot run PostgreSQL: %v", err)
	}
	if opt.Logf == nil {
		opt.Logf = t.Logf
	}
	opt.Detach = false
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, opt)
	if err != nil {
		t.Fatalf("pglab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				t.Logf("pglab: last lines of %s:\n%s", n.LogFile, tailFile(n.LogFile, 0, 30))
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("pglab: stop: %v", err)
		}
	})
	return c
}
