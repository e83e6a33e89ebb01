//go:build !linux

package router

// Without Linux's epoll, sessions forward with two goroutines each.

type evloops struct{}

func (*evloops) close() {}

type pipe struct{}

func (s *session) forwardLoop(be *backend) (reusable bool, status byte, handled bool) {
	return false, 0, false
}

func (s *session) killPipe(err error) bool { return false }
