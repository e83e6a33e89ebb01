package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgwrt/internal/pglab"
)

// nodeClient readies testdata/node (node-postgres, installed with npm on
// first use) and returns the node program; it skips the test where Node.js
// is not installed.
func nodeClient(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("Node.js not installed")
	}
	dir, _ := filepath.Abs(filepath.Join("testdata", "node"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pg")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			t.Skip("npm not installed")
		}
		cmd := exec.Command(npm, "install", "--no-audit", "--no-fund", "--no-package-lock")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm install (node-postgres): %v\n%s", err, out)
		}
	}
	return node
}

// TestNodePostgresSwitchover: node-postgres's pg.Pool keeps eight idle
// connections through pgwrt in transaction mode while the primary stops and
// a standby is promoted. The app sees nothing: no query error and no "idle
// client error", and every query afterwards runs on the new primary.
func TestNodePostgresSwitchover(t *testing.T) {
	node := nodeClient(t)
	c := pglab.StartT(t, pglab.Options{})
	p := startPgwrt(t, labConfig(c, txnConfig))
	old, next := c.Nodes[0], c.Nodes[1]

	cmd := exec.Command(node, filepath.Join("testdata", "node", "idle_switchover.js"))
	cmd.Env = append(os.Environ(), "PGWRT_DSN="+p.DSN())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	read := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("node ended: %s", stderr.String())
			}
			return l
		case <-time.After(60 * time.Second):
			t.Fatalf("node said nothing for a minute: %s", stderr.String())
		}
		return ""
	}
	ready := read()
	if want := fmt.Sprint(old.Port); !strings.HasPrefix(ready, "ready [") || strings.Count(ready, want) != 8 {
		t.Fatalf("before the switchover: %q (want eight connections on port %s)", ready, want)
	}
	if err := old.StopFast(); err != nil {
		t.Fatal(err)
	}
	if err := next.Promote(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, "go")
	var res struct {
		Before, After      []int
		Errors, IdleErrors []string
		Total              int
		Fatal              string
	}
	line := read()
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		t.Fatalf("node's answer %q: %v", line, err)
	}
	if res.Fatal != "" {
		t.Fatalf("node: %s", res.Fatal)
	}
	if len(res.Errors) > 0 || len(res.IdleErrors) > 0 {
		t.Fatalf("the app saw the switchover: query errors %q, idle client errors %q", res.Errors, res.IdleErrors)
	}
	for _, port := range res.After {
		if port != next.Port {
			t.Fatalf("a query after the switchover ran on port %d, not the new primary's %d", port, next.Port)
		}
	}
	if len(res.After) != 40 {
		t.Fatalf("%d answers after the switchover, want 40", len(res.After))
	}
	t.Logf("node-postgres pg.Pool (%d connections, idle at the switchover): 0 errors, 0 idle client errors, %d queries on the new primary", res.Total, len(res.After))
	stdin.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("node did not exit after its pool ended")
	}
}
