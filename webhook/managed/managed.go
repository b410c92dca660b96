// Package managed runs a webhook server in a manager, with its serving
// certificate kept in a Secret (package webhook/cert) and its webhook
// configurations applied from code: the few lines an operator with
// webhooks needs.
//
//	srv, err := managed.Add(mgr, managed.Options{Name: "foo", Namespace: "foo-system"})
//	srv.Register(validate)          // *webhook.Validating[*Foo], *webhook.Mutating[*Foo], ...
//	srv.Handle("/audit", receiver)  // any other handler on the same HTTPS server
//	mgr.Start(ctx)
//
// Add adds to the manager (manager.Add, so they run on every replica,
// before cache sync and leader election):
//
//   - "webhook-cert-<Name>": the cert.Secret that creates, loads, rotates
//     the serving certificate and keeps the caBundle of the configurations
//     current;
//   - "webhook-<Name>": waits for the certificate, serves, and once the
//     server listens applies the ValidatingWebhookConfiguration and
//     MutatingWebhookConfiguration named Name (server-side apply, as
//     webhook.FieldOwner), retrying what can be retried;
//   - a health check "webhook-<Name>" on /healthz and /readyz: failing
//     until the certificate is loaded and the server serves.
//
// # Where the API server calls
//
// Local development (Service nil, the default): the server listens on
// 127.0.0.1:9443, the certificate is for 127.0.0.1 (the host of
// Server.Addr, or 127.0.0.1 when that host is empty or unspecified), and
// the configurations call https://127.0.0.1:<port> — the port actually
// bound, so Server.Addr "127.0.0.1:0" works. In a cluster, Service names
// the Service in front of the replicas: the server listens on :9443, the
// certificate is for the Service's DNS names (cert.ServiceHosts), and the
// configurations call the Service.
//
// # One writer of caBundle
//
// The Secret's injector owns the caBundle of the configurations: Add
// names both configurations in the Secret's options, and the applied
// configurations carry the bundle of that same Secret (read after it is
// loaded). So the two writers write the same value; if a rotation changes
// the bundle between the read and the apply, the injector sees the apply
// and patches its newer bundle back within moments (a rotation keeps the
// older bundle trusted for SecretOptions.PropagationGrace, default 1m).
// Later rotations reach the configurations through the injector alone; the
// configurations are applied once per start.
package managed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/webhook"
	"github.com/skiffkit/skiff/webhook/cert"
)

// Options configure Add. Name and Namespace are required; every other
// field states its default.
type Options struct {
	// Name names the ValidatingWebhookConfiguration and the
	// MutatingWebhookConfiguration, and the manager's runnables and health
	// check ("webhook-<Name>", "webhook-cert-<Name>"). Required.
	Name string
	// Namespace holds the certificate Secret. Required.
	Namespace string
	// SecretName names the certificate Secret. Default Name +
	// "-webhook-cert".
	SecretName string
	// Service, if non-nil, is how the API server reaches the server in a
	// cluster (see the package doc); its Namespace defaults to Namespace.
	// Default nil: local development, the API server calls
	// https://<host>:<port> of the bound address.
	Service *webhook.ServiceRef
	// Server configures the webhook server. Certificates must be nil (the
	// Secret is the source). Defaults as in webhook.ServerOptions, except:
	// Addr ":9443" with a Service; Registerer the manager's Registry;
	// Logger the manager's.
	Server webhook.ServerOptions
	// Certificates configures the Secret. Config, Namespace, Name and Hosts
	// are filled in when empty (the manager's client's config, Namespace,
	// SecretName, and the hosts of the package doc); the configurations
	// named Name are added to ValidatingWebhookConfigurations and
	// MutatingWebhookConfigurations. Logger defaults to the manager's.
	// Other defaults as in cert.SecretOptions.
	Certificates cert.SecretOptions
	// NoApply leaves the webhook configurations to someone else (GitOps
	// with ConfigurationsYAML): they are not applied, but their caBundle is
	// still kept current by the Secret. Default false: applied.
	NoApply bool
	// RetryInterval is the wait between attempts to apply the
	// configurations. Default 1s.
	RetryInterval time.Duration
}

// Add creates a webhook server whose certificate lives in a Secret and adds
// it, the Secret and a health check to mgr (see the package doc). Register
// webhooks and Handle other handlers on the returned server before
// mgr.Start. The manager's identity needs get, list, watch, create and
// update on Secrets in the Secret's namespace, and get, list, watch and
// patch (the injector's patch and, unless NoApply, the apply) on the two
// configurations. A refused apply stops the "webhook-<Name>" runnable, and
// so the manager, with the API server's reason.
func Add(mgr *manager.Manager, o Options) (*webhook.Server, error) {
	c := mgr.Client()
	if c == nil {
		return nil, fmt.Errorf("managed: webhooks %s: the manager has no client: %w", o.Name, mgr.ConfigError())
	}
	p, err := plan(o, c.Config(), mgr.Registry(), mgr.Logger())
	if err != nil {
		return nil, err
	}
	certs, err := cert.NewSecret(p.cert)
	if err != nil {
		return nil, fmt.Errorf("managed: webhooks %s: %w", o.Name, err)
	}
	p.server.Certificates = certs
	srv, err := webhook.NewServer(p.server)
	if err != nil {
		return nil, fmt.Errorf("managed: webhooks %s: %w", o.Name, err)
	}
	r := &runner{srv: srv, certs: certs, client: c, p: p, log: p.server.Logger}
	if err := mgr.Add("webhook-cert-"+o.Name, certs); err != nil {
		return nil, err
	}
	if err := mgr.Add("webhook-"+o.Name, r); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthCheck("webhook-"+o.Name, r.healthz); err != nil {
		return nil, err
	}
	return srv, nil
}

// settings is o with every default filled in.
type settings struct {
	name     string
	server   webhook.ServerOptions
	cert     cert.SecretOptions
	config   webhook.ConfigOptions // URL empty in local mode: known once bound
	urlHost  string                // local mode: the host of the URL
	noApply  bool
	retry    time.Duration
	secretID string // "ns/name", for messages
}

// plan checks o and fills in its defaults; it does no I/O.
func plan(o Options, cfg *rest.Config, reg prometheus.Registerer, log *slog.Logger) (settings, error) {
	if o.Name == "" || o.Namespace == "" {
		return settings{}, fmt.Errorf("managed: Options needs Name and Namespace, got %q and %q", o.Name, o.Namespace)
	}
	if o.Server.Certificates != nil {
		return settings{}, fmt.Errorf("managed: webhooks %s: Server.Certificates is set, but the Secret is the certificate source", o.Name)
	}
	if o.RetryInterval < 0 {
		return settings{}, fmt.Errorf("managed: webhooks %s: negative RetryInterval %v", o.Name, o.RetryInterval)
	}
	s := settings{name: o.Name, server: o.Server, cert: o.Certificates, noApply: o.NoApply, retry: o.RetryInterval}
	if s.retry == 0 {
		s.retry = time.Second
	}
	if s.server.Logger == nil {
		s.server.Logger = log
	}
	if s.server.Registerer == nil {
		s.server.Registerer = reg
	}
	if s.cert.Config == nil {
		s.cert.Config = cfg
	}
	if s.cert.Logger == nil {
		s.cert.Logger = log
	}
	if s.cert.Namespace == "" {
		s.cert.Namespace = o.Namespace
	}
	if s.cert.Name == "" {
		s.cert.Name = o.SecretName
	}
	if s.cert.Name == "" {
		s.cert.Name = o.Name + "-webhook-cert"
	}
	s.secretID = s.cert.Namespace + "/" + s.cert.Name
	s.config = webhook.ConfigOptions{Name: o.Name}
	if o.Service != nil {
		svc := *o.Service
		if svc.Namespace == "" {
			svc.Namespace = o.Namespace
		}
		if svc.Name == "" {
			return settings{}, fmt.Errorf("managed: webhooks %s: Service has no name", o.Name)
		}
		s.config.Service = &svc
		if s.server.Addr == "" {
			s.server.Addr = ":9443"
		}
		if len(s.cert.Hosts) == 0 {
			s.cert.Hosts = cert.ServiceHosts(svc.Name, svc.Namespace)
		}
	} else {
		if s.server.Addr == "" {
			s.server.Addr = "127.0.0.1:9443"
		}
		host, _, err := net.SplitHostPort(s.server.Addr)
		if err != nil {
			return settings{}, fmt.Errorf("managed: webhooks %s: server address %q: %w", o.Name, s.server.Addr, err)
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			host = "127.0.0.1"
		}
		s.urlHost = host
		if len(s.cert.Hosts) == 0 {
			s.cert.Hosts = []string{host}
		}
	}
	add := func(names []string) []string {
		if slices.Contains(names, o.Name) {
			return names
		}
		return append(slices.Clip(names), o.Name)
	}
	s.cert.ValidatingWebhookConfigurations = add(s.cert.ValidatingWebhookConfigurations)
	s.cert.MutatingWebhookConfigurations = add(s.cert.MutatingWebhookConfigurations)
	return s, nil
}

// runner is the "webhook-<Name>" runnable.
type runner struct {
	srv    *webhook.Server
	certs  *cert.Secret
	client *client.Client
	p      settings
	log    *slog.Logger
}

// errNoCertificate is the health check's error until the Secret is loaded.
var errNoCertificate = errors.New("waiting for the serving certificate")

func (r *runner) healthz(req *http.Request) error {
	select {
	case <-r.certs.Ready():
	default:
		return fmt.Errorf("%w from secret %s", errNoCertificate, r.p.secretID)
	}
	return r.srv.Healthz(req)
}

// Run waits for the certificate, serves, applies the configurations once
// the server listens, and returns when the server has stopped: after ctx
// ends, or at once if the server fails or the configurations are refused.
func (r *runner) Run(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-r.certs.Ready():
	}
	serveCtx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- r.srv.Run(serveCtx) }()
	if r.p.noApply {
		return <-served
	}
	// The server binds its address at once; apply only then, so the API
	// server never calls a configuration nobody serves.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for r.srv.Addr() == "" {
		select {
		case err := <-served:
			return err
		case <-tick.C:
		}
	}
	applied := make(chan error, 1)
	go func() { applied <- r.apply(serveCtx) }()
	select {
	case err := <-applied:
		if err != nil {
			stop()
			<-served
			return err
		}
		return <-served
	case err := <-served:
		stop()
		<-applied
		return err
	}
}

// apply applies the configurations until it succeeds, ctx ends (nil), or
// the API server refuses them for good (forbidden, invalid).
func (r *runner) apply(ctx context.Context) error {
	o := r.p.config
	if o.Service == nil {
		_, port, err := net.SplitHostPort(r.srv.Addr())
		if err != nil {
			return fmt.Errorf("managed: webhooks %s: bound address %q: %w", r.p.name, r.srv.Addr(), err)
		}
		o.URL = "https://" + net.JoinHostPort(r.p.urlHost, port)
	}
	for {
		err := r.srv.ApplyConfigurations(ctx, r.client, o)
		if err == nil {
			r.log.Info("webhook configurations applied", "name", r.p.name, "url", o.URL, "service", o.Service)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsUnauthorized(err) {
			return fmt.Errorf("managed: webhooks %s: %w", r.p.name, err)
		}
		r.log.Warn("applying webhook configurations will retry", "name", r.p.name, "err", err)
		t := time.NewTimer(r.p.retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

var _ manager.Runnable = (*runner)(nil)
