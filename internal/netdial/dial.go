// Package netdial is the TCP dialer Skiff's connections to the API server
// use: keepalive probes and, on Linux, TCP_USER_TIMEOUT, so a dead server
// or a silent partition is found in seconds, not minutes.
package netdial

import (
	"net"
	"time"
)

// Dialer returns the TCP dialer client.Tune installs and informer watch
// streams use: keepalive probes after idle
// of keepAlive, then every keepAlive/3, 3 of them; and, where the platform
// has it, TCP_USER_TIMEOUT of 2×keepAlive, so data left unacknowledged
// that long drops the connection (Linux otherwise retransmits for ~15
// minutes). A dead API server, or a silent network partition, is then
// found in about 30s with the default 15s.
func Dialer(keepAlive time.Duration) *net.Dialer {
	return &net.Dialer{
		Timeout: 30 * time.Second,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable:   true,
			Idle:     keepAlive,
			Interval: keepAlive / 3,
			Count:    3,
		},
		Control: userTimeout(2 * keepAlive),
	}
}
