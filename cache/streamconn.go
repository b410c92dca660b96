package cache

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
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
// the cold start's client CPU fell by ~20% and the server's by ~25%.
//
// So watch streams ask for HTTP/1.1 in their TLS handshake (ALPN), on a
// connection of their own, while every other request shares the config's
// HTTP/2 connection: the protobuf streams of TypedSource and
// WithProtoWatch, and the JSON or CBOR streams of custom resources
// (CustomSourceFor, WithWatchConfig). The cost is one TCP+TLS connection
// per running watch (one per informer) instead of one stream on a shared
// connection, and one HTTP transport per informer (its idle connection,
// if any, closes after client-go's 90 s idle timeout).
//
// Finding a dead server. HTTP/2's health ping travels inside the TLS
// session, so it reaches the API server itself; HTTP/1.1 has none. So:
//   - unless the config brings its own dialer (client.Tune's does the
//     same), stream connections use the dialer of internal/netdial:
//     keepalive probes and TCP_USER_TIMEOUT find a dead peer within
//     ~30 s, sooner than the ping's 45 s;
//   - through a proxy (cfg.Proxy, or HTTPS_PROXY and friends for the
//     server's host) the TCP peer is the proxy, not the server, so those
//     streams stay on HTTP/2 and keep the ping;
//   - every stream, whatever its protocol, ends at the latest streamSlack
//     (30 s; for timeouts under 30 s, the timeout again) after the
//     timeoutSeconds it asked the server for (the reflector asks 5–10
//     minutes, Options.WatchTimeout): a path that died silently behind a
//     tunnel costs at most that much staleness before the informer
//     watches again.
//
// The caller keeps control: a config whose TLSClientConfig.NextProtos is
// set (e.g. []string{"h2", "http/1.1"} to stay on HTTP/2) or that brings
// its own Transport is used as given. Stream clients never time out as a
// whole (cfg.Timeout would cut every watch): the deadline above bounds
// them.

// streamKeepAlive is the keepalive idle time of stream connections.
const streamKeepAlive = 15 * time.Second

// streamSlack is how long past its timeoutSeconds a watch may last before
// the client ends it.
const streamSlack = 30 * time.Second

// streamConfig returns a copy of cfg for watch streams (see above).
func streamConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Timeout = 0
	if c.Transport != nil || len(c.TLSClientConfig.NextProtos) > 0 || proxied(c) {
		return c
	}
	c.TLSClientConfig.NextProtos = []string{"http/1.1"}
	if c.Dial == nil {
		c.Dial = netdial.Dialer(streamKeepAlive).DialContext
	}
	return c
}

// proxied reports whether requests of c go through a proxy: c.Proxy says
// so, or (c.Proxy unset) the environment does for c's host, as client-go
// would route them.
func proxied(c *rest.Config) bool {
	host := c.Host
	if !strings.Contains(host, "://") {
		host = "https://" + host
	}
	u, err := url.Parse(host)
	if err != nil || u.Host == "" {
		return false // client-go refuses such a host anyway
	}
	req := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}
	proxy := c.Proxy
	if proxy == nil {
		proxy = http.ProxyFromEnvironment
	}
	p, err := proxy(req)
	return err != nil || p != nil
}

// withStreamDeadline returns ctx bounded by timeoutSeconds (if set) plus
// the lesser of timeoutSeconds and streamSlack, and its cancel function.
func withStreamDeadline(ctx context.Context, timeoutSeconds *int64) (context.Context, context.CancelFunc) {
	if timeoutSeconds == nil || *timeoutSeconds <= 0 {
		return context.WithCancel(ctx)
	}
	t := time.Duration(*timeoutSeconds) * time.Second
	return context.WithTimeout(ctx, t+min(t, streamSlack))
}

// cancelOnClose is a response body whose Close also releases its
// request's deadline.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
