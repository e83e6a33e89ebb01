//go:build !notoml

package main

import "pgwrt/config"

// loadTOML reads -c FILE.toml. A router build leaves TOML out with
// -tags notoml (toml_stub.go): OpenWrt configures pgwrt in UCI, and the
// TOML decoder weighs 330 KB in a mipsle binary.
func loadTOML(path string) (*config.Config, error) { return config.LoadTOML(path) }
