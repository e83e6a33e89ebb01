//go:build !linux

package router

import (
	"net"
	"time"
)

func setUserTimeout(fd uintptr, d time.Duration) error { return nil }
func setFreeBind(fd uintptr) error                     { return nil }
func peekDead(c net.Conn) bool                         { return false }
