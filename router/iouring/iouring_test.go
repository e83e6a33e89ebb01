//go:build linux

package iouring

import (
	"runtime"
	"testing"
)

// TestRingBacklog: entries made while the queue is full wait in the
// backlog and go in, in the order they were made, as the kernel takes
// room; completions beyond the completion queue's size are kept (no-drop)
// and arrive too.
func TestRingBacklog(t *testing.T) {
	runtime.LockOSThread() // a single-issuer ring takes submissions from one thread
	defer runtime.UnlockOSThread()
	var r Ring
	if err := r.Setup(4); err != nil {
		t.Skip("io_uring unavailable:", err)
	}
	defer r.Close()
	const n = 50 // the completion queue has room for 8
	for i := 0; i < n; i++ {
		e := r.Get()
		e.Opcode = OpNop
		e.UserData = uint64(i)
	}
	if r.Backlog() != n-4 {
		t.Fatalf("backlog %d, want %d", r.Backlog(), n-4)
	}
	var got []uint64
	for tries := 0; len(got) < n && tries < 1000; tries++ {
		if err := r.Enter(0); err != nil && !Transient(err) {
			t.Fatal(err)
		}
		r.Reap(func(ud uint64, res int32) { got = append(got, ud) })
	}
	if len(got) != n || r.Backlog() != 0 {
		t.Fatalf("%d completions (backlog %d), want %d", len(got), r.Backlog(), n)
	}
	for i, ud := range got {
		if ud != uint64(i) {
			t.Fatalf("completion %d is entry %d: order lost", i, ud)
		}
	}
}
