package managed

import (
	"crypto/tls"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/webhook"
	"github.com/skiffkit/skiff/webhook/cert"
)

type noCert struct{}

func (noCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil }

func TestPlanDefaults(t *testing.T) {
	cfg := &rest.Config{Host: "https://127.0.0.1:6443"}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name      string
		o         Options
		addr      string   // Server.Addr
		hosts     []string // certificate hosts
		urlHost   string   // local mode
		service   *webhook.ServiceRef
		secret    string
		validates []string
	}{
		{
			name: "local development",
			o:    Options{Name: "foo", Namespace: "ns"},
			addr: "127.0.0.1:9443", hosts: []string{"127.0.0.1"}, urlHost: "127.0.0.1",
			secret: "ns/foo-webhook-cert", validates: []string{"foo"},
		},
		{
			name: "local, any port, unspecified host",
			o:    Options{Name: "foo", Namespace: "ns", Server: webhook.ServerOptions{Addr: "0.0.0.0:0"}},
			addr: "0.0.0.0:0", hosts: []string{"127.0.0.1"}, urlHost: "127.0.0.1",
			secret: "ns/foo-webhook-cert", validates: []string{"foo"},
		},
		{
			name: "local, a named host",
			o:    Options{Name: "foo", Namespace: "ns", SecretName: "s", Server: webhook.ServerOptions{Addr: "localhost:8443"}},
			addr: "localhost:8443", hosts: []string{"localhost"}, urlHost: "localhost",
			secret: "ns/s", validates: []string{"foo"},
		},
		{
			name: "in a cluster",
			o:    Options{Name: "foo", Namespace: "ns", Service: &webhook.ServiceRef{Name: "foo-webhooks"}},
			addr: ":9443", hosts: cert.ServiceHosts("foo-webhooks", "ns"),
			service: &webhook.ServiceRef{Name: "foo-webhooks", Namespace: "ns"},
			secret:  "ns/foo-webhook-cert", validates: []string{"foo"},
		},
		{
			name: "the user's injection targets are kept, the configuration added once",
			o: Options{Name: "foo", Namespace: "ns", Certificates: cert.SecretOptions{
				Namespace: "certs", Name: "c", Hosts: []string{"10.0.0.1"},
				ValidatingWebhookConfigurations: []string{"other", "foo"}, CRDs: []string{"foos.demo.skiff.dev"}}},
			addr: "127.0.0.1:9443", hosts: []string{"10.0.0.1"}, urlHost: "127.0.0.1",
			secret: "certs/c", validates: []string{"other", "foo"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := plan(tc.o, cfg, reg, log)
			if err != nil {
				t.Fatal(err)
			}
			if s.server.Addr != tc.addr || s.urlHost != tc.urlHost || !slices.Equal(s.cert.Hosts, tc.hosts) || s.secretID != tc.secret {
				t.Errorf("addr %q urlHost %q hosts %v secret %s; want %q %q %v %s", s.server.Addr, s.urlHost, s.cert.Hosts, s.secretID, tc.addr, tc.urlHost, tc.hosts, tc.secret)
			}
			if (s.config.Service == nil) != (tc.service == nil) || tc.service != nil && *s.config.Service != *tc.service {
				t.Errorf("service %+v, want %+v", s.config.Service, tc.service)
			}
			if s.config.Name != "foo" || s.config.URL != "" {
				t.Errorf("config options %+v: want name foo and the URL left for the bound address", s.config)
			}
			if !slices.Equal(s.cert.ValidatingWebhookConfigurations, tc.validates) || !slices.Contains(s.cert.MutatingWebhookConfigurations, "foo") {
				t.Errorf("injection targets: validating %v mutating %v; want %v and foo", s.cert.ValidatingWebhookConfigurations, s.cert.MutatingWebhookConfigurations, tc.validates)
			}
			if s.cert.Config != cfg || s.server.Registerer != reg || s.server.Logger != log || s.cert.Logger != log || s.retry == 0 {
				t.Error("config, registry, loggers or retry interval not defaulted from the manager")
			}
		})
	}
}

func TestPlanDoesNotChangeCallersSlices(t *testing.T) {
	names := make([]string, 1, 4)
	names[0] = "other"
	_, err := plan(Options{Name: "foo", Namespace: "ns", Certificates: cert.SecretOptions{MutatingWebhookConfigurations: names}}, &rest.Config{}, nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if got := names[:2]; got[1] != "" {
		t.Fatalf("plan appended into the caller's slice: %v", got)
	}
}

func TestPlanRefuses(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Namespace: "ns"}, "needs Name and Namespace"},
		{Options{Name: "foo"}, "needs Name and Namespace"},
		{Options{Name: "foo", Namespace: "ns", Server: webhook.ServerOptions{Certificates: noCert{}}}, "Server.Certificates is set"},
		{Options{Name: "foo", Namespace: "ns", Server: webhook.ServerOptions{Addr: "9443"}}, `server address "9443"`},
		{Options{Name: "foo", Namespace: "ns", Service: &webhook.ServiceRef{Namespace: "ns"}}, "Service has no name"},
		{Options{Name: "foo", Namespace: "ns", RetryInterval: -1}, "negative RetryInterval"},
	} {
		_, err := plan(tc.o, &rest.Config{}, nil, slog.Default())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("plan(%+v) = %v, want an error containing %q", tc.o, err, tc.want)
		}
	}
}
