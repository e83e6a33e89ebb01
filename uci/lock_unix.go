//go:build unix

package uci

import (
	"errors"
	"os"
	"syscall"
)

// lock takes a flock on f, as libuci does on config files: shared to read,
// exclusive to write. It is released when f is closed.
func lock(f *os.File, exclusive bool) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if errors.Is(err, syscall.ENOSYS) {
			return nil // libuci too goes on without locks where there are none
		}
		return err
	}
}
