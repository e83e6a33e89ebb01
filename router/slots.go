package router

import (
	"sync"
	"time"
)

// slot is one client's reserved memory: the two forwarding buffers. There
// are max_clients of them, allocated once; a client holds one from login to
// goodbye, so pgwrt's memory does not grow with clients or message sizes.
type slot struct {
	cbuf []byte // client → server
	sbuf []byte // server → client
}

type slots struct {
	free chan *slot
	mu   sync.Mutex
	n    int // slots that exist (in use or free)
	drop int // slots to drop as they are released (after a shrink)
}

// maxSlots bounds the channel; max_clients can grow up to it on reload.
const maxSlots = 4096

func newSlots(n, bufSize int) *slots {
	s := &slots{free: make(chan *slot, maxSlots), n: n}
	mem := make([]byte, 2*n*bufSize) // one allocation for all
	for i := 0; i < n; i++ {
		b := mem[2*i*bufSize : 2*(i+1)*bufSize]
		s.free <- &slot{cbuf: b[:bufSize:bufSize], sbuf: b[bufSize:]}
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

func (s *slots) release(sl *slot) {
	s.mu.Lock()
	if s.drop > 0 {
		s.drop--
		s.n--
		s.mu.Unlock()
		return // its buffers go to the garbage collector
	}
	s.mu.Unlock()
	s.free <- sl
}

// resize changes the number of slots: new ones are allocated now; extra
// ones are taken out as they come free, so no client is cut off.
func (s *slots) resize(n, bufSize int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n = min(n, maxSlots)
	target := s.n - s.drop
	switch {
	case n > target:
		add := n - target
		cancel := min(add, s.drop)
		s.drop -= cancel
		add -= cancel
		for i := 0; i < add; i++ {
			s.free <- &slot{cbuf: make([]byte, bufSize), sbuf: make([]byte, bufSize)}
			s.n++
		}
	case n < target:
		less := target - n
		for less > 0 {
			select {
			case <-s.free:
				s.n--
				less--
				continue
			default:
			}
			break
		}
		s.drop += less
	}
}

func (s *slots) inUse() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n - len(s.free)
}

func (s *slots) size() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n - s.drop
}
