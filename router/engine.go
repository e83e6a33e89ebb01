package router

// An engine moves a link's bytes between its two sockets, from the client
// through cbuf to the server and back through sbuf, until the link ends.
// It feeds the tracker what passes and asks it where to stop; it decides
// nothing about the protocol. When the flow ends it asks the link what the
// client must hear and whether the backend may serve again, and settles
// the sockets accordingly: the client told, the backend's connection kept
// as a net.Conn for reuse or closed.
//
// Three engines: an io_uring loop and an epoll loop (Linux; many links on
// one thread, loop_linux.go), and two copier goroutines per link
// (everywhere, and the fallback where a loop cannot take a connection).
// Transaction mode has its own: on Linux a client lives on an epoll
// transaction loop from login to goodbye (txnloop_linux.go); elsewhere,
// and with io_engine = "goroutines", its links take turns on its
// goroutine (engine_turns.go).
type engine interface {
	// forward runs l to its end and reports whether its backend may
	// serve again. handled is false, with nothing touched, when the
	// engine cannot take l (a connection without a descriptor).
	forward(l *link) (reusable, handled bool)
	name() string
}

// The engines, as io_engine names them.
const (
	EngineAuto       = "auto"       // io_uring where the kernel allows it, else epoll
	EngineIOUring    = "io_uring"   // io_uring; epoll (with a warning) where refused
	EngineEpoll      = "epoll"      // epoll event loops
	EngineGoroutines = "goroutines" // two goroutines per session (Go's netpoller)
)

// forward runs l on the router's engine: a loop where there is one that
// takes it, else copier goroutines.
func (s *session) forward(l *link) bool {
	if e := s.r.ev.pick(s.r); e != nil {
		if reusable, handled := e.forward(l); handled {
			return reusable
		}
	}
	reusable, _ := goroutineEngine{}.forward(l)
	return reusable
}
