package pglab

import (
	"fmt"
	"net"
	"time"

	"pgwrt/router/wire"
)

// RawLogin logs in to addr as the app user with a bare socket (no client
// library, so a memory measurement sees only the server's side; cleartext
// or no password, as pgwrt's hba "password" and "trust" ask) and returns
// the connection idle at ReadyForQuery.
func RawLogin(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write(wire.AppendStartup(nil, []string{"user", "database"}, map[string]string{"user": AppUser, "database": AppDatabase}))
	rd := wire.Reader{R: c}
	for {
		m, err := rd.Read()
		if err != nil {
			c.Close()
			return nil, err
		}
		switch m.Type {
		case 'R':
			if len(m.Body) >= 4 && m.Body[3] == 3 {
				p, s := wire.Begin(nil, 'p')
				p = wire.AppendString(p, AppPassword)
				c.Write(wire.Finish(p, s))
			}
		case 'E':
			c.Close()
			return nil, wire.ParseError(m.Body)
		case 'Z':
			c.SetDeadline(time.Time{})
			return c, nil
		}
	}
}

// RawQuery runs a simple query on a connection RawLogin made, up to its
// ReadyForQuery.
func RawQuery(c net.Conn, sql string) error {
	c.SetDeadline(time.Now().Add(20 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write(wire.AppendQuery(nil, sql)); err != nil {
		return err
	}
	rd := wire.Reader{R: c}
	var qerr error
	for {
		m, err := rd.Read()
		if err != nil {
			return err
		}
		switch m.Type {
		case 'E':
			qerr = wire.ParseError(m.Body)
		case 'Z':
			if qerr != nil {
				return fmt.Errorf("%s: %w", sql, qerr)
			}
			return nil
		}
	}
}
