// Package router is everything between a client socket and a backend
// socket: pgwrt's slots, sessions, pools, monitors and topology.
//
// # Layers
//
//   - listener (router.go): accept loop with backoff; one goroutine per
//     client connection, which owns it to the end.
//   - slots (slots.go): max_clients preallocated pairs of buffers; a client
//     holds one from login to goodbye. Memory does not grow with clients
//     beyond the slots, nor with message sizes.
//   - session (client.go): startup, hba, authentication, binding to a
//     backend, handover, and the end of the session.
//   - forwarding (evloop_linux.go, uring_linux.go, forward.go): on Linux,
//     event loops (one per two CPUs) pump bytes between many sessions'
//     sockets through the slot buffers: on an io_uring ring (a receive kept
//     posted on each socket, one io_uring_enter per turn) where the kernel
//     allows it, else waiting in epoll_wait (each loop's thread asks
//     for a short scheduler slice while many sessions are busy on it:
//     sched_linux.go); elsewhere, two copier
//     goroutines per session. All follow message boundaries (framer)
//     without decoding bodies; io_engine picks one.
//   - backend (backend.go, tcp.go): dial with keepalive and
//     TCP_USER_TIMEOUT, login (SCRAM-SHA-256, md5, password), simple queries
//     for reset and health checks.
//   - pool (pool.go): a pool per (database, user) with its idle and active
//     backends and its waiting clients; an idle backend goes only to a
//     client with the same startup options. A global LRU and a global cap
//     span the pools. Checkout does not block: a client that finds no room
//     waits in its pool, and a released backend or a freed place is granted
//     to the oldest waiter. Backends are checked against the topology on
//     the way out and on the way back.
//   - monitor and topology (monitor.go, topology.go): one monitor per node
//     keeps a connection open and asks it for its role; the chosen primary
//     is published as an immutable snapshot with an epoch.
//   - cancel (cancel.go), admin (admin.go), reload (reload.go), status and
//     metrics.
//
// # A client connection's life
//
//  1. Accept. Read the startup packet with a deadline; answer SSLRequest
//     and GSSENCRequest with 'N'; a CancelRequest is looked up by pgwrt's
//     own key and sent to the backend that client uses now.
//  2. Take a slot, waiting up to client_wait_timeout (then 53300).
//  3. Match hba: trust, password (the client's clear-text password, used to
//     log in to the backend) or reject.
//  4. Acquire a backend: read the topology; while there is no primary, hold
//     (up to failover_wait, then 57P03). Take an idle backend of the same
//     key that is on the primary and alive, or dial one; a dial to a node
//     that stops being the primary is abandoned.
//  5. Hand over: AuthenticationOk, the backend's ParameterStatus set,
//     pgwrt's BackendKeyData, ReadyForQuery.
//  6. Forward until one side ends. The session's two sockets leave Go's
//     netpoller (dup, then close the net.Conns) and join an event loop; the
//     session goroutine sleeps until the loop hands them back. The loop
//     takes what a side sent and passes it to the other: with io_uring a
//     receive stays posted on each side and the sends of a whole turn go to
//     the kernel in one call; with epoll it reads whichever side is ready
//     (two reads and two writes per query, no wasted read). A side whose
//     peer cannot take more is not read until the backlog is written. The server side records the
//     last ReadyForQuery status and notices FATALs; the client side stops at
//     Terminate and answers SHOW POOL_NODES itself when the backend is idle.
//     A kill (primary moved, shutdown) is posted to the loop, which ends the
//     session (cancelling what it has in flight on a ring, and waiting for
//     those to finish before the buffers and sockets go back); the client
//     hears why if its stream is at a message boundary.
//  7. Release. If the backend ended on a clean boundary it becomes a
//     net.Conn again, is rolled back, reset (server_reset_query) and cached;
//     otherwise closed.
//
// # Failover
//
// When the epoch bumps (the chosen primary changed, to another node or to
// none), onPrimaryChange closes idle backends to other nodes and ends every
// session bound to one with FATAL 57P01: nothing stays open that points at a
// node that is not the primary. A backend failure pokes all monitors for an
// immediate check; while no primary is known they check every
// health_check_fast_period.
package router
