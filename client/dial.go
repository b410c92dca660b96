package client

import (
	"net"
	"time"
)

// dialer returns the TCP dialer Tune installs: keepalive probes after idle
// of keepAlive, then every keepAlive/3, 3 of them; and, where the platform
// has it, TCP_USER_TIMEOUT of 2×keepAlive, so data left unacknowledged
// that long drops the connection (Linux otherwise retransmits for ~15
// minutes). A dead API server, or a silent network partition, is then
// found in about 30s with the default 15s.
func dialer(keepAlive time.Duration) *net.Dialer {
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
