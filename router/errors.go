package router

import (
	"errors"
	"fmt"

	"pgwrt/router/wire"
)

// code is an internal error code. Each maps to exactly one SQLSTATE in
// toWire; clients never see internal detail beyond the message chosen here.
type code int

const (
	codeTooManyClients  code = iota + 1 // no slot free within client_wait_timeout
	codeNoPrimary                       // no primary known within failover_wait
	codeBackendLost                     // the backend connection broke
	codePrimaryMoved                    // epoch bump: this session's node is no longer the primary
	codeAuthRejected                    // hba said reject
	codeAuthFailed                      // client gave no/wrong password (pgwrt-side)
	codeProtocol                        // client broke the protocol
	codeBackendConnect                  // could not reach or log in to the primary
	codeShutdown                        // pgwrt is stopping
	codeTooManyBackends                 // max_backend_connections reached
	codeTxnUnknown                      // a transaction's backend was lost with its COMMIT unanswered
)

// pgwrtError is an error pgwrt itself raises towards a client.
type pgwrtError struct {
	code code
	msg  string
}

func (e *pgwrtError) Error() string { return e.msg }

func errorf(c code, format string, args ...any) error {
	return &pgwrtError{code: c, msg: fmt.Sprintf(format, args...)}
}

var sqlstate = map[code]string{
	codeTooManyClients:  "53300",
	codeTooManyBackends: "53300",
	codeNoPrimary:       "57P03",
	codeBackendLost:     "08006",
	codePrimaryMoved:    "57P01",
	codeAuthRejected:    "28000",
	codeAuthFailed:      "28P01",
	codeProtocol:        "08P01",
	codeBackendConnect:  "08006",
	codeShutdown:        "57P01",
	codeTxnUnknown:      "08007",
}

// toWire turns any error into the ErrorResponse a client may see. Errors that
// came from PostgreSQL pass through as they were; pgwrt's own carry their
// SQLSTATE; anything else becomes a generic internal error with no detail.
func toWire(err error) *wire.Error {
	var pe *wire.Error
	if errors.As(err, &pe) {
		return pe
	}
	var we *pgwrtError
	if errors.As(err, &we) {
		return &wire.Error{Severity: "FATAL", Code: sqlstate[we.code], Message: we.msg}
	}
	return &wire.Error{Severity: "FATAL", Code: "XX000", Message: "pgwrt: internal error"}
}
