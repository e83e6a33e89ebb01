package router

import (
	"strconv"
	"time"

	"pgwrt/router/wire"
)

// poolNodesColumns are pgpool-II's SHOW POOL_NODES columns where pgwrt has
// the same fact, plus last_status_change.
var poolNodesColumns = []string{"node_id", "hostname", "port", "status", "role", "replication_lag", "last_status_change"}

// showPoolNodes answers SHOW POOL_NODES on the client's connection, ending
// with ReadyForQuery carrying the backend's current transaction status.
func (s *session) showPoolNodes(status byte) error {
	out := s.r.poolNodesReply(status)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err := s.conn.Write(out)
	if err != nil {
		return &clientWriteError{err}
	}
	return nil
}

// poolNodesReply builds the whole answer to SHOW POOL_NODES.
func (r *Router) poolNodesReply(status byte) []byte {
	t := r.Topology()
	out := make([]byte, 0, 512)
	out, st := wire.Begin(out, 'T')
	out = append(out, 0, byte(len(poolNodesColumns)))
	for _, c := range poolNodesColumns {
		out = wire.AppendString(out, c)
		out = append(out, 0, 0, 0, 0, 0, 0) // table oid, column
		out = append(out, 0, 0, 0, 25)      // type oid: text
		out = append(out, 0xff, 0xff)       // typlen -1
		out = append(out, 0xff, 0xff, 0xff, 0xff, 0, 0)
	}
	out = wire.Finish(out, st)
	for i := range t.Nodes {
		n := &t.Nodes[i]
		up := "down"
		if n.Up {
			up = "up"
		}
		role := n.Role.String()
		if n.Up && n.Role == RolePrimary && i != t.Primary {
			role = "primary (not chosen)"
		}
		lag := ""
		if n.LagBytes >= 0 {
			lag = strconv.FormatInt(n.LagBytes, 10)
		}
		change := ""
		if !n.LastChange.IsZero() {
			change = n.LastChange.Format(time.DateTime)
		}
		vals := []string{strconv.Itoa(i), n.Host, strconv.Itoa(n.Port), up, role, lag, change}
		out, st = wire.Begin(out, 'D')
		out = append(out, 0, byte(len(vals)))
		for _, v := range vals {
			out = append(out, byte(len(v)>>24), byte(len(v)>>16), byte(len(v)>>8), byte(len(v)))
			out = append(out, v...)
		}
		out = wire.Finish(out, st)
	}
	out, st = wire.Begin(out, 'C')
	out = wire.AppendString(out, "SHOW")
	out = wire.Finish(out, st)
	if status == 0 {
		status = 'I'
	}
	return wire.AppendReadyForQuery(out, status)
}
