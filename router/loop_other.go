//go:build !linux

package router

// Without Linux's epoll and io_uring, links forward with two goroutines
// each.

type evloops struct{ engine string }

func (*evloops) pick(*Router) engine { return nil }

func (*evloops) close() {}

func (*evloops) engineName() string { return EngineGoroutines }
