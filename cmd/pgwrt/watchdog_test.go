package main

import (
	"net"
	"testing"
	"time"
)

// TestAcceptWatch: a loop waiting in Accept is alive however long it waits;
// one that left Accept and does not come back is dead after grace; one
// whose Serve returned is dead.
func TestAcceptWatch(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w := newAcceptWatch(ln)
	const grace = 100 * time.Millisecond

	accepted := make(chan net.Conn)
	go func() {
		c, _ := w.Accept()
		accepted <- c
	}()
	time.Sleep(3 * grace)
	if !w.alive(grace) {
		t.Fatal("dead while waiting in Accept")
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	(<-accepted).Close()
	if !w.alive(grace) {
		t.Error("dead right after Accept returned")
	}
	time.Sleep(2 * grace)
	if w.alive(grace) {
		t.Error("alive though Accept was not called again for 2*grace")
	}
	w.exited.Store(true)
	if w.alive(time.Hour) {
		t.Error("alive after Serve returned")
	}
}
