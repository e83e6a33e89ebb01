package router

import (
	"sync"
	"time"
)

// slots bound the connected clients: max_clients of them, each holding a
// slot from login to goodbye. A slot is only a place; the memory a client
// forwards through goes with its link (bufs below), so an idle client in
// transaction mode costs its socket and its session, not buffers.
type slot struct{}

type slots struct {
	free chan *slot
	mu   sync.Mutex
	n    int // slots that exist (in use or free)
	drop int // slots to drop as they are released (after a shrink)
}

// maxSlots bounds the channel; max_clients can grow up to it on reload.
const maxSlots = 65536

func newSlots(n int) *slots {
	s := &slots{free: make(chan *slot, maxSlots), n: n}
	for i := 0; i < n; i++ {
		s.free <- &slot{}
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
		return
	}
	s.mu.Unlock()
	s.free <- sl
}

// resize changes the number of slots: new ones are made now; extra ones
// are taken out as they come free, so no client is cut off.
func (s *slots) resize(n int) {
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
			s.free <- &slot{}
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

// bufs are the links' forwarding buffers: a pair of buffer_size each
// (client → server, server → client), taken when a client is linked to a
// backend and given back when the link ends. A link holds a backend, so
// there are never more in use than backend connections (and, in session
// mode, than clients); the ones that can be in use at once under the
// configured caps are allocated up front in one piece, and the free list
// keeps whatever was given back. Memory does not grow with message sizes.
type bufs struct {
	mu   sync.Mutex
	size int // of each buffer of a pair
	free [][]byte
}

func newBufs(n, size int) *bufs {
	b := &bufs{size: size}
	mem := make([]byte, 2*n*size)
	for i := 0; i < n; i++ {
		b.free = append(b.free, mem[2*i*size:2*(i+1)*size:2*(i+1)*size])
	}
	return b
}

// get returns a pair, one allocation of 2 × size: split returns its
// halves.
func (b *bufs) get() []byte {
	b.mu.Lock()
	var p []byte
	if n := len(b.free); n > 0 {
		p = b.free[n-1]
		b.free[n-1] = nil
		b.free = b.free[:n-1]
	}
	b.mu.Unlock()
	if p == nil {
		p = make([]byte, 2*b.size)
	}
	return p
}

// split returns a pair's client → server and server → client halves.
func (b *bufs) split(p []byte) (c, s []byte) { return p[:b.size:b.size], p[b.size:] }

// put gives back a pair that get returned.
func (b *bufs) put(p []byte) {
	b.mu.Lock()
	b.free = append(b.free, p)
	b.mu.Unlock()
}
