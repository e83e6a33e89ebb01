//go:build !linux

package router

import "errors"

func uringUsable() error { return errors.New("io_uring is Linux only") }
