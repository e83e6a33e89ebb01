//go:build !linux

package router

import "net"

// Without Linux's epoll and io_uring, links forward with two goroutines
// each.

type evloops struct{ engine string }

func (*evloops) pick(*Router) engine { return nil }

func (*evloops) close() {}

func (*evloops) engineName() string { return EngineGoroutines }

type txnLoops struct{}

func (*txnLoops) close() {}

type tloop struct{}

func (r *Router) txnLoop() *tloop { return nil }

func (s *session) serveOnLoop(*tloop, loginParams, **prepLink) (error, bool) { return nil, false }

func closeNow(net.Conn) bool { return false }

func backendToNet(*Router, *backend) error { return nil }
