package netdial

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"
)

// The dialer's connections carry TCP_USER_TIMEOUT of twice the keepalive
// idle time and keepalive on: read back from the socket.
func TestDialerSetsUserTimeoutAndKeepAlive(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			_, _ = c.Read(make([]byte, 1)) // until the client closes
		}
	}()
	c, err := Dialer(15*time.Second).DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var userTO, keepAlive, idle, intvl, cnt int
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		get := func(level, opt int, v *int) {
			if sockErr == nil {
				*v, sockErr = syscall.GetsockoptInt(int(fd), level, opt)
			}
		}
		get(syscall.IPPROTO_TCP, tcpUserTimeout, &userTO)
		get(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, &keepAlive)
		get(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, &idle)
		get(syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, &intvl)
		get(syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, &cnt)
	}); err != nil {
		t.Fatal(err)
	}
	if sockErr != nil {
		t.Fatal(sockErr)
	}
	if userTO != 30000 {
		t.Errorf("TCP_USER_TIMEOUT = %d ms, want 30000", userTO)
	}
	if keepAlive == 0 || idle != 15 || intvl != 5 || cnt != 3 {
		t.Errorf("keepalive on=%d idle=%ds interval=%ds count=%d, want on, 15, 5, 3", keepAlive, idle, intvl, cnt)
	}
}
