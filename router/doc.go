// Package router is everything between a client socket and a backend
// socket: pgwrt's slots, sessions, links, engines, pools, monitors and
// topology. docs/architecture.md has the picture.
//
// # Layers
//
//   - listener (router.go): accept loop with backoff; one goroutine per
//     client connection, which owns it to the end.
//   - slots (slots.go): max_clients places; a client holds one from login
//     to goodbye. The forwarding buffers (two of buffer_size) go with a
//     link, from a free list: a client between transactions holds none.
//     Memory does not grow with message sizes.
//   - session (client.go) and auth (auth.go): startup, hba,
//     authentication, getting a backend, handover, and the end of the
//     session.
//   - link (link.go): a client attached to a backend while bytes flow,
//     with the protocol tracker of both streams (proto.go). The tracker
//     sees message headers and the few bodies it must, says how far bytes
//     may pass and where to stop (Terminate, SHOW POOL_NODES, a malformed
//     length), and holds the one safe-point rule: the server has answered
//     everything the client sent and both streams are at a message
//     boundary. The link turns how the flow ended into what the client
//     hears and whether the backend may serve again.
//   - engines (engine.go): they move a link's bytes and decide nothing.
//     On Linux, event loops (one per two CPUs, loop_linux.go) pump the
//     bytes of many links: on an io_uring ring (uring_linux.go; the
//     kernel ABI is router/iouring) where the kernel allows it, else in
//     epoll_wait (epoll_linux.go); each loop's thread asks for a short
//     scheduler slice while many sessions are busy on it (sched_linux.go).
//     Elsewhere, and for connections a loop cannot take, two copier
//     goroutines per link (engine_goroutine.go). io_engine picks.
//   - backend (backend.go, tcp.go): dial with keepalive and
//     TCP_USER_TIMEOUT, login (SCRAM-SHA-256, md5, password), simple queries
//     for reset and health checks.
//   - pool (pool.go): one pool per (database, user) with its active and
//     idle backends and its waiting clients, a global LRU and a global cap
//     (and pool_size per pool in transaction mode); checkout never blocks
//     (idle backend, reservation to dial, or a place in the queue);
//     backends are checked against the topology on the way out and on the
//     way back.
//   - transaction mode (txn.go): a link per transaction, detached at the
//     safe point whose ReadyForQuery says 'I'. On Linux the client lives
//     on an epoll transaction loop (txnloop_linux.go) from login to
//     goodbye: parked with only its socket registered, linked to an idle
//     backend (or queued in its pool, woken by the release that frees
//     one) from the first bytes of a transaction to its safe point. Its
//     sockets are fdConns (fdconn_linux.go), outside Go's netpoller, so
//     its goroutine, waiting meanwhile, can still dial, hold, set
//     parameters, reset and answer a lost transaction when the loop hands
//     it back. Elsewhere the session waits for its socket without reading
//     and links take turns on its goroutine (engine_turns.go).
//   - prepared statements (prepared.go, transaction mode): clients' named
//     Parse/Bind/Describe/Close are rewritten to pgwrt's own statement
//     names, prepared on each backend as needed (an LRU per backend), with
//     a FIFO of the answers owed so that those pgwrt gives or swallows
//     keep their place in the stream.
//   - monitor and topology (monitor.go, topology.go): one monitor per node
//     keeps a connection open and asks it for its role; topology.go records
//     what they learn and publishes the chosen primary as an immutable
//     snapshot with an epoch.
//   - failover (failover.go): what an epoch bump does to idle backends and
//     linked sessions; a broken backend connection hurries the monitors.
//   - janitor (janitor.go), cancel (cancel.go), admin (admin.go), reload
//     (reload.go), status and metrics.
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
//     (up to failover_wait, then 57P03). Check out of the (database, user)
//     pool an idle backend of the same startup options that is on the
//     primary and alive; or a reservation to dial one (a dial to a node
//     that stops being the primary is abandoned); or wait in the pool's
//     queue until a release hands one over.
//  5. Hand over: AuthenticationOk, the backend's ParameterStatus set,
//     pgwrt's BackendKeyData, ReadyForQuery.
//  6. Link and forward until one side ends. On a loop the link's two
//     sockets leave Go's netpoller (dup, then close the net.Conns) and the
//     session goroutine sleeps until the loop hands them back. The loop
//     takes what a side sent and passes it to the other, as far as the
//     tracker lets it: with io_uring a receive stays posted on each side
//     and the sends of a whole turn go to the kernel in one call; with
//     epoll it reads whichever side is ready. A side whose peer cannot take
//     more is not read until the backlog is written. A kill (primary
//     moved, shutdown) is posted to the loop, which ends the link
//     (cancelling what it has in flight on a ring, and waiting for those
//     to finish before the buffers and sockets go back); the client hears
//     why if its stream is at a message boundary.
//  7. Release. If the link ended at a safe point the backend becomes a
//     net.Conn again, is rolled back, reset (server_reset_query) and goes
//     back to its pool (or straight to a waiting client); otherwise it is
//     closed. In transaction mode steps 4, 6 and 7 repeat for every
//     transaction, without the reset: the backend is handed back at the
//     safe point with status 'I', and the session waits for the client's
//     next message.
//
// # Failover
//
// When the epoch bumps (the chosen primary changed, to another node or to
// none), onPrimaryChange closes idle backends to other nodes and ends every
// session linked to one with FATAL 57P01: nothing stays open that points at
// a node that is not the primary. In transaction mode a client between
// transactions is linked to nothing, so it is not touched: its next
// transaction is held while there is no primary and runs on the new one. A backend failure pokes all monitors for
// an immediate check; while no primary is known they check every
// health_check_fast_period.
package router
