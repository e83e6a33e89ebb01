package router

import (
	"time"
)

// slot is one client's reserved memory: the two forwarding buffers. There
// are max_clients of them, allocated once; a client holds one from login to
// goodbye, so pgwrt's memory does not grow with clients or message sizes.
type slot struct {
	id   int
	cbuf []byte // client → server
	sbuf []byte // server → client
}

type slots struct {
	free chan *slot
	n    int
}

func newSlots(n, bufSize int) *slots {
	s := &slots{free: make(chan *slot, n), n: n}
	mem := make([]byte, 2*n*bufSize) // one allocation for all
	for i := 0; i < n; i++ {
		b := mem[2*i*bufSize : 2*(i+1)*bufSize]
		s.free <- &slot{id: i, cbuf: b[:bufSize:bufSize], sbuf: b[bufSize:]}
	}
	return s
}

// acquire waits up to wait for a free slot; nil when none came free, or when
// stop is closed.
func (s *slots) acquire(wait time.Duration, stop <-chan struct{}) *slot {
	select {
	case sl := <-s.free:
		return sl
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case sl := <-s.free:
		return sl
	case <-t.C:
		return nil
	case <-stop:
		return nil
	}
}

func (s *slots) release(sl *slot) { s.free <- sl }

func (s *slots) inUse() int { return s.n - len(s.free) }
