package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
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
// connection.
//
// One HTTP client for many watches. Watch streams built from equal
// configs share one HTTP client (one http.Transport and its pool of
// HTTP/1.1 connections): a watch that ends leaves its connection idle in
// that pool, where the next watch of any informer of the same config
// takes it, instead of in a transport of its own that nothing else uses
// (client-go cannot share transports itself for a config with a Dial,
// and stream configs have one). Who owns the client:
//   - client.Client builds one with NewStreamClient the first time one of
//     its informers needs it and passes it to WithWatchConfigAndClient and
//     WithProtoWatchAndClient; it lives as long as the Client.
//   - TypedSource, CustomSourceFor, WithWatchConfig and WithProtoWatch
//     take it from a small process-wide table keyed by the config's
//     transport settings (sharedStreamClient): host, TLS, credentials,
//     impersonation, user agent, compression. A config with something
//     that cannot be compared — a Dial, Proxy, Transport or WrapTransport
//     function, an exec or auth-provider plugin — gets a client of its own
//     per source, as before. The table holds at most maxSharedStreamClients
//     (8) clients; past that it forgets the oldest (sources that use it
//     keep it).
//
// Either way an idle stream connection closes after client-go's 90 s
// idle timeout unless a watch takes it first, and a client's owner may
// close them sooner with CloseIdleConnections.
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

// NewStreamClient returns a new HTTP client for watch streams to cfg's
// API server: cfg as the top of this file says (HTTP/1.1 on connections
// of its own, a keepalive dialer unless cfg has a Dial, no overall
// timeout), built by client-go (credentials, certificate rotation and
// cfg's wrappers included). Pass it to WithWatchConfigAndClient and
// WithProtoWatchAndClient for every source whose watches should share its
// connections; it must be a client for the same server and credentials as
// their configs. The caller owns it: it starts nothing and holds no
// resources but its idle connections, which CloseIdleConnections closes
// (client-go's transport closes them after 90 s idle anyway).
func NewStreamClient(cfg *rest.Config) (*http.Client, error) {
	if cfg == nil {
		return nil, errors.New("cache: NewStreamClient: nil rest.Config")
	}
	hc, err := rest.HTTPClientFor(streamConfig(cfg))
	if err != nil {
		return nil, fmt.Errorf("cache: stream HTTP client for %s: %w", cfg.Host, err)
	}
	return hc, nil
}

// maxSharedStreamClients bounds the process-wide table of stream clients.
const maxSharedStreamClients = 8

// sharedStreams is the process-wide table of stream clients (see above).
var sharedStreams struct {
	sync.Mutex
	clients map[streamKey]*http.Client
	order   []streamKey // oldest first
}

// sharedStreamClient returns the stream client of cfg from the
// process-wide table, building it on first use, or a new one if cfg's
// transport cannot be compared with another's (streamKeyOf).
func sharedStreamClient(cfg *rest.Config) (*http.Client, error) {
	key, ok := streamKeyOf(cfg)
	if !ok {
		return NewStreamClient(cfg)
	}
	sharedStreams.Lock()
	defer sharedStreams.Unlock()
	if hc, ok := sharedStreams.clients[key]; ok {
		return hc, nil
	}
	hc, err := NewStreamClient(cfg)
	if err != nil {
		return nil, err
	}
	if sharedStreams.clients == nil {
		sharedStreams.clients = map[streamKey]*http.Client{}
	}
	if len(sharedStreams.order) >= maxSharedStreamClients {
		delete(sharedStreams.clients, sharedStreams.order[0])
		sharedStreams.order = slices.Delete(sharedStreams.order, 0, 1)
	}
	sharedStreams.clients[key] = hc
	sharedStreams.order = append(sharedStreams.order, key)
	return hc, nil
}

// streamKey is everything of a rest.Config that the HTTP client built
// from it depends on, for a config that has nothing that cannot be
// compared (see streamKeyOf).
type streamKey struct {
	host                                  string
	username, password                    string
	bearerToken, bearerTokenFile          string
	impersonate                           string // %q of the ImpersonationConfig's fields
	insecure                              bool
	serverName, certFile, keyFile, caFile string
	certData, keyData, caData, nextProtos string
	userAgent                             string
	disableCompression                    bool
}

// streamKeyOf returns cfg's streamKey; ok is false when cfg has a
// function, a RoundTripper or a plugin among its transport settings: two
// such configs cannot be told equal.
func streamKeyOf(cfg *rest.Config) (_ streamKey, ok bool) {
	if cfg.Dial != nil || cfg.Proxy != nil || cfg.Transport != nil || cfg.WrapTransport != nil ||
		cfg.ExecProvider != nil || cfg.AuthProvider != nil || cfg.AuthConfigPersister != nil {
		return streamKey{}, false
	}
	imp, tls := cfg.Impersonate, cfg.TLSClientConfig
	return streamKey{
		host:        cfg.Host,
		username:    cfg.Username,
		password:    cfg.Password,
		bearerToken: cfg.BearerToken, bearerTokenFile: cfg.BearerTokenFile,
		impersonate: fmt.Sprintf("%q %q %q %q", imp.UserName, imp.UID, imp.Groups, imp.Extra),
		insecure:    tls.Insecure,
		serverName:  tls.ServerName, certFile: tls.CertFile, keyFile: tls.KeyFile, caFile: tls.CAFile,
		certData: string(tls.CertData), keyData: string(tls.KeyData), caData: string(tls.CAData),
		nextProtos:         fmt.Sprintf("%q", tls.NextProtos),
		userAgent:          cfg.UserAgent,
		disableCompression: cfg.DisableCompression,
	}, true
}

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
