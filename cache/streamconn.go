package cache

import (
	"time"

	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/internal/netdial"
)

// Watch streams over HTTP/1.1. An informer's watch (and its watch-list,
// the initial state streamed as events) is one long response of many
// small frames. Over HTTP/2 both ends pay for the framing on every write
// and read: the server's handler hands each write to the connection's
// serving goroutine, the client's read loop copies each DATA frame into a
// stream buffer that the reader copies again, and both exchange flow
// control updates. Over HTTP/1.1 the response is plain chunked bytes on
// its own TLS connection. Measured at 2000 pods (bench/README.md, I1):
// the cold start's client CPU fell by ~15% and the server's by ~15%.
//
// So watch streams ask for HTTP/1.1 in their TLS handshake (ALPN), on a
// connection of their own, while every other request shares the config's
// HTTP/2 connection: the protobuf streams of TypedSource and
// WithProtoWatch, and the JSON or CBOR streams of custom resources
// (CustomSourceFor, WithWatchConfig). The cost is one TCP+TLS connection
// per running watch (one per informer) instead of one stream on a shared
// connection.
//
// HTTP/2's health ping (what finds a dead server on an idle connection)
// does not exist on HTTP/1.1, so unless the config brings its own dialer
// (client.Tune's does the same), stream connections use the dialer of
// internal/netdial: keepalive probes and TCP_USER_TIMEOUT find a dead
// server within ~30 s, sooner than the ping's 45 s.
//
// The caller keeps control: a config whose TLSClientConfig.NextProtos is
// set (e.g. []string{"h2", "http/1.1"} to stay on HTTP/2) or that brings
// its own Transport is used as given.

// streamKeepAlive is the keepalive idle time of stream connections.
const streamKeepAlive = 15 * time.Second

// streamConfig returns a copy of cfg for watch streams (see above).
func streamConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	if c.Transport != nil || len(c.TLSClientConfig.NextProtos) > 0 {
		return c
	}
	c.TLSClientConfig.NextProtos = []string{"http/1.1"}
	if c.Dial == nil {
		c.Dial = netdial.Dialer(streamKeepAlive).DialContext
	}
	return c
}
