//go:build !linux

package router

// Without Linux's epoll and io_uring, sessions forward with two goroutines
// each.

type evloops struct{ engine string }

func (*evloops) close() {}

func (*evloops) engineName() string { return EngineGoroutines }

type pipe struct{}

func (s *session) forwardLoop(be *backend) (reusable bool, status byte, handled bool) {
	return false, 0, false
}

func (s *session) killPipe(err error) bool { return false }
