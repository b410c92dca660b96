package cache

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestStreamConfig(t *testing.T) {
	userDial := func(ctx context.Context, network, addr string) (net.Conn, error) { return nil, nil }
	proxy := func(*http.Request) (*url.URL, error) { return url.Parse("http://proxy.example:3128") }
	for _, tc := range []struct {
		name      string
		cfg       rest.Config
		wantProto []string
		wantDial  string // "ours", "user", "none"
	}{
		{"defaults", rest.Config{Host: "https://10.0.0.1:6443", Timeout: 5 * time.Second}, []string{"http/1.1"}, "ours"},
		{"host without scheme", rest.Config{Host: "10.0.0.1:6443"}, []string{"http/1.1"}, "ours"},
		{"own dialer kept", rest.Config{Host: "https://10.0.0.1:6443", Dial: userDial}, []string{"http/1.1"}, "user"},
		{"NextProtos kept", rest.Config{Host: "https://10.0.0.1:6443", TLSClientConfig: rest.TLSClientConfig{NextProtos: []string{"h2", "http/1.1"}}}, []string{"h2", "http/1.1"}, "none"},
		{"Transport kept", rest.Config{Host: "https://10.0.0.1:6443", Transport: http.DefaultTransport}, nil, "none"},
		{"proxy: HTTP/2 kept", rest.Config{Host: "https://10.0.0.1:6443", Proxy: proxy}, nil, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.cfg
			got := streamConfig(&in)
			if !reflect.DeepEqual(got.TLSClientConfig.NextProtos, tc.wantProto) {
				t.Errorf("NextProtos %q, want %q", got.TLSClientConfig.NextProtos, tc.wantProto)
			}
			if got.Timeout != 0 {
				t.Errorf("Timeout %v, want 0 (it would cut watches)", got.Timeout)
			}
			switch tc.wantDial {
			case "ours":
				if got.Dial == nil {
					t.Error("no keepalive dialer installed")
				}
			case "user":
				if reflect.ValueOf(got.Dial).Pointer() != reflect.ValueOf(userDial).Pointer() {
					t.Error("the config's own dialer was replaced")
				}
			case "none":
				if got.Dial != nil {
					t.Error("a dialer was installed on a config used as given")
				}
			}
			if in.Timeout != tc.cfg.Timeout || len(in.TLSClientConfig.NextProtos) != len(tc.cfg.TLSClientConfig.NextProtos) {
				t.Error("the caller's config was modified")
			}
		})
	}
}

func TestWithStreamDeadline(t *testing.T) {
	for _, tc := range []struct {
		timeout *int64
		want    time.Duration // 0: no deadline
	}{
		{nil, 0},
		{new(int64(0)), 0},
		{new(int64(2)), 4 * time.Second},
		{new(int64(300)), 330 * time.Second},
	} {
		ctx, cancel := withStreamDeadline(context.Background(), tc.timeout)
		d, ok := ctx.Deadline()
		cancel()
		if tc.want == 0 {
			if ok {
				t.Errorf("timeout %v: deadline set", tc.timeout)
			}
			continue
		}
		if left := time.Until(d); !ok || left > tc.want || left < tc.want-5*time.Second {
			t.Errorf("timeout %d s: deadline in %v, want about %v", *tc.timeout, left, tc.want)
		}
		if ctx.Err() == nil {
			t.Error("cancel did not end the context")
		}
	}
}

// Every field of rest.Config is either part of streamKey, a reason not to
// share (streamKeyOf refuses), or irrelevant to the HTTP client built from
// it. A field client-go adds must be classified here before configs that
// differ in it can be told apart.
func TestStreamKeyCoversConfig(t *testing.T) {
	keyed := []string{"Host", "Username", "Password", "BearerToken", "BearerTokenFile", "Impersonate",
		"Insecure", "ServerName", "CertFile", "KeyFile", "CAFile", "CertData", "KeyData", "CAData", "NextProtos",
		"UserAgent", "DisableCompression"}
	refused := []string{"AuthProvider", "AuthConfigPersister", "ExecProvider", "Transport", "WrapTransport", "Dial", "Proxy"}
	// Not used by rest.HTTPClientFor: REST client settings, and Timeout,
	// which streamConfig clears.
	irrelevant := []string{"APIPath", "AcceptContentTypes", "ContentType", "GroupVersion", "NegotiatedSerializer",
		"QPS", "Burst", "RateLimiter", "WarningHandler", "WarningHandlerWithContext", "Timeout"}
	known := map[string]bool{}
	for _, names := range [][]string{keyed, refused, irrelevant} {
		for _, n := range names {
			known[n] = true
		}
	}
	var walk func(reflect.Type)
	walk = func(typ reflect.Type) {
		for f := range typ.Fields() {
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			if !known[f.Name] {
				t.Errorf("rest.Config field %s is not classified for streamKey", f.Name)
			}
		}
	}
	walk(reflect.TypeFor[rest.Config]())

	// Each keyed field, changed alone, changes the key.
	base := rest.Config{Host: "https://10.0.0.1:6443"}
	baseKey, ok := streamKeyOf(&base)
	if !ok {
		t.Fatal("a plain config has no key")
	}
	for _, change := range []func(*rest.Config){
		func(c *rest.Config) { c.Host = "https://10.0.0.2:6443" },
		func(c *rest.Config) { c.Username = "u" },
		func(c *rest.Config) { c.Password = "p" },
		func(c *rest.Config) { c.BearerToken = "t" },
		func(c *rest.Config) { c.BearerTokenFile = "/t" },
		func(c *rest.Config) { c.Impersonate.UserName = "u" },
		func(c *rest.Config) { c.Impersonate.UID = "1" },
		func(c *rest.Config) { c.Impersonate.Groups = []string{"g"} },
		func(c *rest.Config) { c.Impersonate.Extra = map[string][]string{"k": {"v"}} },
		func(c *rest.Config) { c.Insecure = true },
		func(c *rest.Config) { c.ServerName = "s" },
		func(c *rest.Config) { c.CertFile = "/c" },
		func(c *rest.Config) { c.KeyFile = "/k" },
		func(c *rest.Config) { c.CAFile = "/ca" },
		func(c *rest.Config) { c.CertData = []byte("c") },
		func(c *rest.Config) { c.KeyData = []byte("k") },
		func(c *rest.Config) { c.CAData = []byte("ca") },
		func(c *rest.Config) { c.NextProtos = []string{"h2"} },
		func(c *rest.Config) { c.UserAgent = "ua" },
		func(c *rest.Config) { c.DisableCompression = true },
	} {
		c := base
		change(&c)
		if k, ok := streamKeyOf(&c); !ok || k == baseKey {
			t.Errorf("config %+v: key %v (ok %v) equals the base's", c, k, ok)
		}
	}
	for _, change := range []func(*rest.Config){
		func(c *rest.Config) { c.Dial = (&net.Dialer{}).DialContext },
		func(c *rest.Config) { c.Proxy = http.ProxyFromEnvironment },
		func(c *rest.Config) { c.Transport = http.DefaultTransport },
		func(c *rest.Config) { c.Wrap(func(rt http.RoundTripper) http.RoundTripper { return rt }) },
		func(c *rest.Config) { c.ExecProvider = &clientcmdapi.ExecConfig{Command: "x"} },
		func(c *rest.Config) { c.AuthProvider = &clientcmdapi.AuthProviderConfig{Name: "x"} },
	} {
		c := base
		change(&c)
		if _, ok := streamKeyOf(&c); ok {
			t.Errorf("config %+v: shared, though it cannot be compared", c)
		}
	}
}

// Sources built from equal configs share one stream HTTP client; a config
// whose transport cannot be compared gets its own; a caller's client is
// used as given.
func TestStreamClientsShared(t *testing.T) {
	gvr := corev1.SchemeGroupVersion.WithResource("pods")
	cfg := &rest.Config{Host: "https://10.0.0.9:6443", BearerToken: "shared-test"}
	streamOf := func(src Source[*corev1.Pod]) *http.Client {
		t.Helper()
		return src.LW.(*restLW).stream.c.(*rest.RESTClient).Client
	}
	typed := func(cfg *rest.Config) Source[*corev1.Pod] {
		t.Helper()
		src, err := TypedSource[*corev1.Pod](cfg, gvr, Scope{})
		if err != nil {
			t.Fatal(err)
		}
		return src
	}
	a, b := streamOf(typed(cfg)), streamOf(typed(rest.CopyConfig(cfg)))
	if a != b {
		t.Error("two TypedSources of equal configs have different stream clients")
	}
	other := rest.CopyConfig(cfg)
	other.BearerToken = "other"
	if streamOf(typed(other)) == a {
		t.Error("a config with other credentials shares the stream client")
	}
	wrapped := rest.CopyConfig(cfg)
	wrapped.Wrap(func(rt http.RoundTripper) http.RoundTripper { return rt })
	if w1, w2 := streamOf(typed(wrapped)), streamOf(typed(wrapped)); w1 == w2 || w1 == a {
		t.Error("a config with a WrapTransport shares a stream client")
	}

	own, err := NewStreamClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if own == a {
		t.Error("NewStreamClient returned the shared client")
	}
	lc := rest.CopyConfig(cfg)
	gv := gvr.GroupVersion()
	lc.GroupVersion, lc.APIPath = &gv, "/api"
	lc.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.RESTClientFor(lc)
	if err != nil {
		t.Fatal(err)
	}
	src, err := WithProtoWatchAndClient(RESTSource[*corev1.Pod](rc, gvr, Scope{}), lc, scheme.Scheme, own)
	if err != nil {
		t.Fatal(err)
	}
	if streamOf(src) != own {
		t.Error("WithProtoWatchAndClient did not use the caller's client")
	}
	if src, err = WithProtoWatch(RESTSource[*corev1.Pod](rc, gvr, Scope{}), lc, scheme.Scheme); err != nil || streamOf(src) != a {
		t.Errorf("WithProtoWatch: err %v, shared client %v", err, err == nil && streamOf(src) == a)
	}

	crGVR := schema.GroupVersionResource{Group: "example.skiff.dev", Version: "v1", Resource: "things"}
	watchOf := func(src Source[*unstructured.Unstructured]) *http.Client {
		t.Helper()
		return src.LW.(*wireLW[*unstructured.Unstructured]).watchC.(*rest.RESTClient).Client
	}
	cr, err := CustomSourceFor[*unstructured.Unstructured](cfg, crGVR, Scope{})
	if err != nil {
		t.Fatal(err)
	}
	if watchOf(cr) != a {
		t.Error("CustomSourceFor does not share the stream client of TypedSource for an equal config")
	}
	cr, err = WithWatchConfigAndClient(CustomSource[*unstructured.Unstructured](rc, crGVR, Scope{}), cfg, own)
	if err != nil {
		t.Fatal(err)
	}
	if watchOf(cr) != own {
		t.Error("WithWatchConfigAndClient did not use the caller's client")
	}
}

// The process-wide table keeps at most maxSharedStreamClients clients,
// forgetting the oldest.
func TestSharedStreamClientsBounded(t *testing.T) {
	cfgN := func(i int) *rest.Config {
		return &rest.Config{Host: "https://10.0.0.10:6443", BearerToken: fmt.Sprintf("bounded-%d", i)}
	}
	first, err := sharedStreamClient(cfgN(0))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= maxSharedStreamClients; i++ {
		if _, err := sharedStreamClient(cfgN(i)); err != nil {
			t.Fatal(err)
		}
	}
	sharedStreams.Lock()
	n := len(sharedStreams.clients)
	sharedStreams.Unlock()
	if n > maxSharedStreamClients {
		t.Errorf("%d shared stream clients, want at most %d", n, maxSharedStreamClients)
	}
	again, err := sharedStreamClient(cfgN(0))
	if err != nil {
		t.Fatal(err)
	}
	if again == first {
		t.Error("the oldest client was not forgotten")
	}
}
