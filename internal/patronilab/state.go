package patronilab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// StateFile is the name of the state file in the base directory.
const StateFile = "state.json"

func (c *Cluster) statePath() string { return filepath.Join(c.BaseDir, StateFile) }

// Save writes the cluster (ports, directories, pids, options) to the state
// file, so another process can Load it and act on the lab.
func (c *Cluster) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saveLocked()
}

func (c *Cluster) saveLocked() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	tmp := c.statePath() + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, c.statePath())
}

// Load reads the state file of a lab started by another process. The
// returned Cluster signals its processes by pid, and only while their
// command lines still name the lab's directories. logf may be nil.
func Load(baseDir string, logf func(string, ...any)) (*Cluster, error) {
	b, err := os.ReadFile(filepath.Join(baseDir, StateFile))
	if err != nil {
		return nil, err
	}
	var c Cluster
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("patronilab: %s: %w", StateFile, err)
	}
	if c.ra, err = lookupRunAs(); err != nil {
		return nil, err
	}
	c.Options.Logf = logf
	for _, m := range c.Etcd {
		m.proc = adopt(m.Pid, m.DataDir)
	}
	for _, n := range c.Nodes {
		n.proc = adopt(n.Pid, n.ConfigPath)
		n.pgBinDir = c.Options.PGBinDir
	}
	return &c, nil
}
