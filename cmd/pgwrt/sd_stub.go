//go:build nosystemd

package main

// Built with -tags nosystemd (the OpenWrt builds): no systemd integration,
// no go-systemd in the binary. procd needs none of it.

import (
	"context"
	"log/slog"
	"net"
	"time"
)

func sdReady(string)                                                     {}
func sdReloading()                                                       {}
func sdStopping()                                                        {}
func sdWatchdog(context.Context, *slog.Logger, func(time.Duration) bool) {}
func sdListeners() ([]net.Listener, error)                               { return nil, nil }
