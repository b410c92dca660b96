//go:build !linux

package netdial

import (
	"syscall"
	"time"
)

// userTimeout does nothing where TCP_USER_TIMEOUT is not available; the
// keepalive probes still find a dead idle connection.
func userTimeout(time.Duration) func(network, address string, c syscall.RawConn) error {
	return nil
}
