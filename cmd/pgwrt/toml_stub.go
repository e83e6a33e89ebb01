//go:build notoml

package main

import (
	"errors"

	"pgwrt/config"
)

// loadTOML refuses: this build (-tags notoml, the OpenWrt one) reads UCI
// only.
func loadTOML(string) (*config.Config, error) {
	return nil, errors.New("this pgwrt is built without TOML support (-tags notoml): give the config in UCI, --uci FILE")
}
