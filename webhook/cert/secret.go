package cert

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// SecretOptions configure a Secret source. Fields marked required have no
// default; every other field states its default.
type SecretOptions struct {
	// Config reaches the API server. Required. The identity needs get,
	// create, update and watch on the Secret, and get, patch and watch on
	// the named webhook configurations and CRDs.
	Config *rest.Config
	// Namespace and Name of the Secret. Required.
	Namespace, Name string
	// Hosts are the DNS names and IP addresses the serving certificate is
	// for: ServiceHosts(svc, ns) in a cluster, or e.g. "127.0.0.1" for
	// local development. Required.
	Hosts []string

	// ValidatingWebhookConfigurations, MutatingWebhookConfigurations and
	// CRDs name the objects whose caBundle is kept equal to CABundle: every
	// webhook of each named configuration, and the conversion webhook of
	// each named CustomResourceDefinition (e.g. "foos.demo.skiff.dev").
	// Default none.
	ValidatingWebhookConfigurations []string
	MutatingWebhookConfigurations   []string
	CRDs                            []string

	// CAValidity is the CA's lifetime. Default 10 years (87600h).
	CAValidity time.Duration
	// ServingValidity is the serving certificate's lifetime (never past
	// its CA's). Default 1 year (8760h).
	ServingValidity time.Duration
	// RenewFraction: a certificate is replaced when less than this
	// fraction of its lifetime remains. Default 1/3.
	RenewFraction float64
	// Backdate sets NotBefore this far before the time of issue, so a
	// client whose clock is behind accepts a fresh certificate. Default 5m.
	Backdate time.Duration
	// PropagationGrace is how long a new CA bundle must have been in every
	// named object before certificates signed by the new CA are served,
	// and how long the old CA stays trusted after that: the time for every
	// API server to load the bundle and every replica to reload.
	// Default 1m.
	PropagationGrace time.Duration
	// CheckInterval is the longest Run goes without re-reading the Secret
	// and re-deciding. Default 1m.
	CheckInterval time.Duration
	// RetryInterval is the wait after a failed API call. Default 1s.
	RetryInterval time.Duration
	// Now is the clock for issuing certificates and rotation decisions.
	// Default time.Now.
	Now func() time.Time
	// Logger receives rotations and retried errors. Default slog.Default().
	Logger *slog.Logger
}

// Secret serves a certificate kept in a Secret of type kubernetes.io/tls,
// creating and rotating it (see the package doc). Create it with
// NewSecret; its methods are safe for concurrent use.
type Secret struct {
	o    SecretOptions
	pol  policy
	cs   kubernetes.Interface
	dyn  dynamic.Interface
	what string // "secret ns/name", for errors

	current atomic.Pointer[loaded]
	ready   chan struct{}
	once    sync.Once
	poke    chan struct{} // wakes the decision loop

	inj *injector
}

// loaded is one installed version of the Secret.
type loaded struct {
	rv     string
	st     *state
	cert   *tls.Certificate
	bundle []byte
}

// NewSecret checks o and returns a Secret source. It does no I/O and
// starts nothing: Run does.
func NewSecret(o SecretOptions) (*Secret, error) {
	if o.Config == nil {
		return nil, errors.New("cert: SecretOptions.Config is nil")
	}
	if o.Namespace == "" || o.Name == "" {
		return nil, fmt.Errorf("cert: SecretOptions needs Namespace and Name, got %q/%q", o.Namespace, o.Name)
	}
	if len(o.Hosts) == 0 {
		return nil, errors.New("cert: SecretOptions.Hosts is empty")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.CAValidity, 87600*time.Hour)
	def(&o.ServingValidity, 8760*time.Hour)
	def(&o.Backdate, 5*time.Minute)
	def(&o.PropagationGrace, time.Minute)
	def(&o.CheckInterval, time.Minute)
	def(&o.RetryInterval, time.Second)
	if o.RenewFraction == 0 {
		o.RenewFraction = 1.0 / 3
	}
	if o.RenewFraction <= 0 || o.RenewFraction >= 1 {
		return nil, fmt.Errorf("cert: RenewFraction %v is not in (0, 1)", o.RenewFraction)
	}
	for _, d := range []time.Duration{o.CAValidity, o.ServingValidity, o.Backdate, o.PropagationGrace, o.CheckInterval, o.RetryInterval} {
		if d < 0 {
			return nil, fmt.Errorf("cert: negative duration %v in SecretOptions", d)
		}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	cs, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("cert: client for %s: %w", o.Config.Host, err)
	}
	dyn, err := dynamic.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("cert: dynamic client for %s: %w", o.Config.Host, err)
	}
	s := &Secret{
		o: o, cs: cs, dyn: dyn, what: fmt.Sprintf("secret %s/%s", o.Namespace, o.Name),
		pol: policy{
			hosts: o.Hosts, caValidity: o.CAValidity, servingValidity: o.ServingValidity,
			renewFraction: o.RenewFraction, backdate: o.Backdate, grace: o.PropagationGrace,
		},
		ready: make(chan struct{}),
		poke:  make(chan struct{}, 1),
	}
	s.inj = newInjector(dyn, o, s.wake)
	return s, nil
}

// GetCertificate returns the serving certificate of the newest version of
// the Secret seen; use it as tls.Config.GetCertificate. It fails until Run
// has loaded the Secret (see Ready).
func (s *Secret) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	l := s.current.Load()
	if l == nil {
		return nil, fmt.Errorf("cert: %s not loaded yet", s.what)
	}
	return l.cert, nil
}

// CABundle returns the PEM bundle the API server must trust (the Secret's
// ca.crt): the signing CA, and during a CA rotation the other one. The
// caller owns the returned slice.
func (s *Secret) CABundle() ([]byte, error) {
	l := s.current.Load()
	if l == nil {
		return nil, fmt.Errorf("cert: %s not loaded yet", s.what)
	}
	return bytes.Clone(l.bundle), nil
}

// Ready is closed once a certificate is loaded.
func (s *Secret) Ready() <-chan struct{} { return s.ready }

func (s *Secret) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// Run creates or loads the Secret, serves it, rotates it, follows changes
// other replicas make, and keeps the caBundle of the named objects in
// sync, until ctx ends; then it stops everything it started and returns
// nil. It returns an error early only for what retrying cannot fix: the
// Secret has the wrong type or content that does not parse, or a request
// was forbidden or invalid. Run it on every replica, once per Secret.
func (s *Secret) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel(nil)
	wg.Go(func() { s.watch(ctx, cancel) })
	s.inj.start(ctx, &wg)

	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		case <-s.poke:
		case <-timer.C:
		}
		wait, err := s.step(ctx)
		if err != nil {
			if permanent(err) {
				return err
			}
			if ctx.Err() == nil {
				s.o.Logger.Warn("cert: will retry", "secret", s.what, "err", err)
			}
			wait = s.o.RetryInterval
		}
		timer.Reset(min(wait, s.o.CheckInterval))
	}
}

// permanent reports whether err is one retrying cannot fix.
func permanent(err error) bool {
	var bad *badSecretError
	return errors.As(err, &bad) || apierrors.IsForbidden(err) || apierrors.IsInvalid(err) || apierrors.IsUnauthorized(err)
}

type badSecretError struct{ err error }

func (e *badSecretError) Error() string { return "cert: " + e.err.Error() }
func (e *badSecretError) Unwrap() error { return e.err }

// step reads the Secret, decides, writes if needed, and says how long to
// wait before the next step.
func (s *Secret) step(ctx context.Context) (time.Duration, error) {
	secrets := s.cs.CoreV1().Secrets(s.o.Namespace)
	sec, err := secrets.Get(ctx, s.o.Name, metav1.GetOptions{})
	var cur *state
	switch {
	case apierrors.IsNotFound(err):
		sec = nil
	case err != nil:
		return 0, fmt.Errorf("get %s: %w", s.what, err)
	default:
		if cur, err = parseSecret(sec); err != nil {
			return 0, &badSecretError{err}
		}
		s.install(sec, cur)
	}
	now := s.o.Now()
	var since time.Time
	if cur != nil {
		since = s.inj.carriedSince(encodeCerts(cur.bundle))
	}
	d, err := decide(cur, now, s.pol, since)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", s.what, err)
	}
	if d.write == nil {
		return max(d.wake.Sub(now), 0), nil
	}
	if sec == nil {
		sec = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: s.o.Namespace, Name: s.o.Name},
			Type:       corev1.SecretTypeTLS,
		}
	} else {
		sec = sec.DeepCopy()
	}
	if sec.Annotations == nil {
		sec.Annotations = map[string]string{}
	}
	sec.Data = d.write.encode(sec.Annotations)
	if sec.ResourceVersion == "" {
		sec, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
	} else {
		sec, err = secrets.Update(ctx, sec, metav1.UpdateOptions{}) // carries resourceVersion: optimistic
	}
	switch {
	case apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err):
		return 0, nil // another replica wrote first: re-read and use its version
	case err != nil:
		return 0, fmt.Errorf("write %s (%s): %w", s.what, d.reason, err)
	}
	s.o.Logger.Info("cert: "+d.reason, "secret", s.what, "serving", Fingerprint(d.write.serving.cert.Raw)[:16])
	s.install(sec, d.write)
	return 0, nil
}

// install serves st (parsed from sec) unless a newer version of the Secret
// is already served.
func (s *Secret) install(sec *corev1.Secret, st *state) {
	next := &loaded{rv: sec.ResourceVersion, st: st, cert: st.serving.tlsCertificate(), bundle: encodeCerts(st.bundle)}
	for {
		old := s.current.Load()
		if old != nil && !newer(next.rv, old.rv) {
			return
		}
		if s.current.CompareAndSwap(old, next) {
			break
		}
	}
	s.inj.setBundle(next.bundle)
	s.once.Do(func() { close(s.ready) })
}

// newer reports whether resourceVersion a is newer than b. Versions are
// compared as integers (KEP-5504); if either does not parse, a different
// version counts as newer.
func newer(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return a != b
	}
	return x > y
}

// watch follows the Secret so a rotation by another replica is served
// here within moments. It stops Run (through cancel) when the Secret's
// content is bad.
func (s *Secret) watch(ctx context.Context, cancel context.CancelCauseFunc) {
	secrets := s.cs.CoreV1().Secrets(s.o.Namespace)
	sel := fields.OneTermEqualSelector("metadata.name", s.o.Name).String()
	for ctx.Err() == nil {
		list, err := secrets.List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err == nil {
			for i := range list.Items {
				if err = s.observe(&list.Items[i]); err != nil {
					break
				}
			}
		}
		var w watch.Interface
		if err == nil {
			w, err = secrets.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
		}
		if err == nil {
			err = s.follow(ctx, w)
			w.Stop()
		}
		if err != nil && permanent(err) {
			cancel(err)
			return
		}
		if err != nil && ctx.Err() == nil {
			s.o.Logger.Warn("cert: watch will retry", "secret", s.what, "err", err)
		}
		sleep(ctx, s.o.RetryInterval)
	}
}

func (s *Secret) follow(ctx context.Context, w watch.Interface) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return nil
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				if sec, ok := ev.Object.(*corev1.Secret); ok {
					if err := s.observe(sec); err != nil {
						return err
					}
				}
			case watch.Deleted:
				s.wake() // recreate it
			case watch.Error:
				return fmt.Errorf("watch %s: %w", s.what, apierrors.FromObject(ev.Object))
			}
		}
	}
}

func (s *Secret) observe(sec *corev1.Secret) error {
	st, err := parseSecret(sec)
	if err != nil {
		return &badSecretError{err}
	}
	s.install(sec, st)
	s.wake()
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
