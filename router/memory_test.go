package router

import (
	"net"
	"runtime"
	"testing"
	"time"

	"pgwrt/internal/pglab"
	"pgwrt/router/wire"
)

// rawLogin logs in through pgwrt with a bare socket and leaves the session
// idle at ReadyForQuery.
func rawLogin(tb testing.TB, addr string) net.Conn {
	tb.Helper()
	c, err := pglab.RawLogin(addr)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func heapAndStacks() uint64 {
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// BenchmarkMemoryPerSession measures what one connected, idle client costs
// pgwrt beyond its preallocated slot buffers (goroutines, session state,
// the backend connection's state), and what one idle cached backend
// connection costs. Reported as custom metrics; b.N is not used.
func BenchmarkMemoryPerSession(b *testing.B) {
	c := shared(b)
	cfg := labConfig(c)
	cfg.MaxClients = 64
	cfg.MaxPool = 64
	tr := startRouter(b, cfg)
	const n = 40
	// warm up: first logins fill caches (SCRAM keys, password verification)
	for i := 0; i < 2; i++ {
		rawLogin(b, tr.addr).Close()
	}
	time.Sleep(200 * time.Millisecond)
	tr.closeIdle(nil)
	base := heapAndStacks()
	var conns []net.Conn
	for i := 0; i < n; i++ {
		conns = append(conns, rawLogin(b, tr.addr))
	}
	time.Sleep(200 * time.Millisecond)
	withSessions := heapAndStacks()
	for _, cn := range conns {
		cn.Write(wire.AppendTerminate(nil))
		cn.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for tr.pools.stats().Idle < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	withIdle := heapAndStacks()
	tr.closeIdle(nil)
	time.Sleep(100 * time.Millisecond)
	after := heapAndStacks()
	perSession := float64(int64(withSessions)-int64(base)) / n
	perIdle := float64(int64(withIdle)-int64(after)) / n
	b.ReportMetric(perSession, "B/session")
	b.ReportMetric(perIdle, "B/idle-backend")
	b.ReportMetric(float64(2*cfg.BufferSize), "B/slot-buffers")
	b.Logf("per connected session (beyond slot buffers): %.0f B; per idle cached backend: %.0f B; slot buffers: %d B", perSession, perIdle, 2*cfg.BufferSize)
}

// BenchmarkMemoryIdleTransactionClients measures what a connected client
// that sits between transactions costs in transaction mode: no buffers (they
// go with links), no backend; its session and its parked goroutine. 1000
// such clients share a pool of 20. Reported as custom metrics; b.N is not
// used.
func BenchmarkMemoryIdleTransactionClients(b *testing.B) {
	c := shared(b)
	cfg := txnConfig(c, 20, 20)
	cfg.MaxClients = 1100
	tr := startRouter(b, cfg)
	for i := 0; i < 2; i++ {
		rawLogin(b, tr.addr).Close()
	}
	time.Sleep(200 * time.Millisecond)
	base := heapAndStacks()
	const n = 1000
	conns := make([]net.Conn, 0, n)
	for i := 0; i < n; i++ {
		conns = append(conns, rawLogin(b, tr.addr))
	}
	time.Sleep(200 * time.Millisecond)
	with := heapAndStacks()
	st := tr.pools.stats()
	for _, cn := range conns {
		cn.Close()
	}
	per := float64(int64(with)-int64(base)) / n
	b.ReportMetric(per, "B/idle-client")
	b.ReportMetric(float64(st.Open), "backends")
	b.Logf("%d idle clients in transaction mode: %.0f B each (heap and stacks), %d backends open", n, per, st.Open)
}
