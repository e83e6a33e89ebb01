package main

import (
	"io"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"pgwrt/config"
	"pgwrt/internal/pglab"
)

// The snippet `up` prints must be valid pgwrt configuration.
func TestConfigSnippet(t *testing.T) {
	c := &pglab.Cluster{BaseDir: "/lab", Nodes: []*pglab.Node{
		{Name: "pg0", Host: pglab.Host, Port: 40001},
		{Name: "pg1", Host: pglab.Host, Port: 40002},
	}}
	var cfg config.Config
	if _, err := toml.Decode(configSnippet(c), &cfg); err != nil {
		t.Fatalf("%v\n%s", err, configSnippet(c))
	}
	if len(cfg.Backends) != 2 || cfg.Backends[1].Name != "pg1" || cfg.Backends[1].Port != 40002 || cfg.Backends[1].Host != pglab.Host {
		t.Fatalf("backends = %+v", cfg.Backends)
	}
	if cfg.HealthCheckUser != pglab.SuperUser || cfg.HealthCheckPassword != pglab.SuperPassword {
		t.Fatalf("health check user = %q/%q", cfg.HealthCheckUser, cfg.HealthCheckPassword)
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{},
		{"bogus", "-dir", dir},
		{"promote", "-dir", dir},
	} {
		err := run(args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "usage") && !strings.Contains(err.Error(), "no lab") {
			t.Errorf("run %q = %v", args, err)
		}
	}
}
