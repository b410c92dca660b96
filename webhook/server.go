package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CertificateSource gives the server its serving certificate per TLS
// handshake, so a rotated certificate is served without a restart.
type CertificateSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// CABundler is optionally implemented by a CertificateSource that knows the
// CA bundle (PEM) the API server must trust; generated configurations carry
// it as their caBundle.
type CABundler interface {
	CABundle() ([]byte, error)
}

// DefaultMaxBodyBytes is the default ServerOptions.MaxBodyBytes: 8 MiB, room
// for an AdmissionReview of an update carrying two objects at the API
// server's ~3 MiB request limit.
const DefaultMaxBodyBytes = 8 << 20

// ServerOptions configure a Server. Every field states its default.
type ServerOptions struct {
	// Addr is where the server listens. Default "127.0.0.1:9443":
	// loopback only; in a cluster set ":9443" (the Service's targetPort).
	Addr string
	// Certificates gives the serving certificate. Required.
	Certificates CertificateSource
	// ClientCA, if non-nil, makes the server require a client certificate
	// signed by one of these CAs (mutual TLS: configure the API server's
	// --admission-control-config-file kubeconfig to present one). Default
	// nil: no client certificate asked for.
	ClientCA *x509.CertPool
	// MinTLSVersion is the lowest TLS version accepted. Default and
	// minimum tls.VersionTLS12.
	MinTLSVersion uint16
	// MaxBodyBytes bounds a request body; a larger one is answered with
	// HTTP 400 unread. Default DefaultMaxBodyBytes (8 MiB).
	MaxBodyBytes int64
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// ShutdownTimeout bounds the graceful shutdown when Run's ctx ends:
	// in-flight requests get this long to finish before their connections
	// are closed (Run still waits for their handlers to return). Default
	// 15s.
	ShutdownTimeout time.Duration
	// Registerer receives the server's metrics (see the package doc).
	// Default nil: no metrics are registered.
	Registerer prometheus.Registerer
	// Logger logs panics, failures and the server's start and stop.
	// Default slog.Default().
	Logger *slog.Logger
}

// Server serves admission webhooks and other handlers over HTTPS. Create it
// with NewServer, Register webhooks and Handle other handlers, then Run it
// once. Its methods are safe for concurrent use.
type Server struct {
	o   ServerOptions
	log *slog.Logger
	m   *metrics
	mux *http.ServeMux

	mu       sync.Mutex
	paths    map[string]bool
	hooks    []*hook // registered admission webhooks, in order
	started  bool
	stopping bool // set once Run stops taking requests; guarded by mu with handlers.Add
	ln       net.Listener
	handlers sync.WaitGroup // every running handler, including ones past their deadline

	serving atomic.Bool
}

// NewServer validates o and returns a server that has started nothing.
func NewServer(o ServerOptions) (*Server, error) {
	if o.Certificates == nil {
		return nil, errors.New("webhook: ServerOptions.Certificates is nil: the server needs a CertificateSource for its serving certificate (see package webhook/cert)")
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:9443"
	}
	if _, _, err := net.SplitHostPort(o.Addr); err != nil {
		return nil, fmt.Errorf("webhook: server address %q: %w", o.Addr, err)
	}
	switch {
	case o.MinTLSVersion == 0:
		o.MinTLSVersion = tls.VersionTLS12
	case o.MinTLSVersion < tls.VersionTLS12:
		return nil, fmt.Errorf("webhook: MinTLSVersion %s is below TLS 1.2", tls.VersionName(o.MinTLSVersion))
	}
	if o.MaxBodyBytes < 0 || o.ReadHeaderTimeout < 0 || o.ShutdownTimeout < 0 {
		return nil, fmt.Errorf("webhook: negative MaxBodyBytes (%d), ReadHeaderTimeout (%v) or ShutdownTimeout (%v)", o.MaxBodyBytes, o.ReadHeaderTimeout, o.ShutdownTimeout)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	return &Server{o: o, log: o.Logger, m: m, mux: http.NewServeMux(), paths: map[string]bool{}}, nil
}

// Register serves the admission webhook w at w.Path(). Paths must be
// unique; it fails after Run.
func (s *Server) Register(w Webhook) error {
	h := w.hook()
	if err := s.handle(h.o.Path, s.admission(h), h); err != nil {
		return fmt.Errorf("webhook: register %s: %w", h.o.Name, err)
	}
	return nil
}

// Handle serves any handler at path (an exact path; a conversion webhook,
// an audit receiver), with the same metrics, panic recovery and graceful
// shutdown as the admission webhooks. Paths must be unique; it fails after
// Run.
func (s *Server) Handle(path string, h http.Handler) error {
	if h == nil {
		return fmt.Errorf("webhook: handle %s: nil handler", path)
	}
	return s.handle(path, h, nil)
}

func (s *Server) handle(path string, h http.Handler, hk *hook) error {
	if len(path) == 0 || path[0] != '/' {
		return fmt.Errorf("webhook: path %q does not start with /", path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return fmt.Errorf("webhook: handler for %s added after Run", path)
	}
	if s.paths[path] {
		return fmt.Errorf("webhook: two handlers for path %s", path)
	}
	s.paths[path] = true
	if hk != nil {
		s.hooks = append(s.hooks, hk)
	}
	s.mux.Handle(path, s.instrument(path, h))
	return nil
}

// Addr is the address the server listens on once Run has bound it ("" before).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Healthz is nil while the server serves TLS, an error before and after;
// give it to the manager as a health check.
func (s *Server) Healthz(*http.Request) error {
	if !s.serving.Load() {
		return errors.New("webhook server is not serving")
	}
	return nil
}

// Run listens on Addr and serves HTTPS until ctx ends; then it stops taking
// connections, lets in-flight requests finish (within ShutdownTimeout), and
// returns once every handler has returned — nil after a clean stop. It
// fails at once if the address cannot be bound, and may be called once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("webhook: Server.Run called twice")
	}
	s.started = true
	s.mu.Unlock()

	ln, err := net.Listen("tcp", s.o.Addr)
	if err != nil {
		return fmt.Errorf("webhook: listen on %s: %w", s.o.Addr, err)
	}
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	cfg := &tls.Config{MinVersion: s.o.MinTLSVersion, GetCertificate: s.o.Certificates.GetCertificate}
	if s.o.ClientCA != nil {
		cfg.ClientCAs = s.o.ClientCA
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	srv := &http.Server{
		Handler: s.mux, TLSConfig: cfg, ReadHeaderTimeout: s.o.ReadHeaderTimeout,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug), // TLS handshake noise from probes
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln, "", "") }()
	s.serving.Store(true)
	s.log.Info("serving webhooks", "addr", ln.Addr().String(), "paths", len(s.paths), "mtls", s.o.ClientCA != nil)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-served:
		runErr = fmt.Errorf("webhook: serve on %s: %w", ln.Addr(), runErr)
	}
	s.serving.Store(false)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.ShutdownTimeout)
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("webhook requests still running after the shutdown timeout; closing their connections", "timeout", s.o.ShutdownTimeout)
		srv.Close()
	}
	cancel()
	if runErr == nil {
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			runErr = fmt.Errorf("webhook: serve on %s: %w", ln.Addr(), err)
		}
	}
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.handlers.Wait()
	s.log.Info("webhook server stopped", "addr", ln.Addr().String())
	return runErr
}

// track counts a handler that is about to run; false once Run is past the
// point of waiting for handlers.
func (s *Server) track() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.handlers.Add(1)
	return true
}

// statusWriter records the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument measures h, recovers its panics (HTTP 500, a metric and a log
// line) and holds Run's shutdown until it returns.
func (s *Server) instrument(path string, h http.Handler) http.Handler {
	inFlight := s.m.inFlight.WithLabelValues(path)
	latency := s.m.latency.WithLabelValues(path)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.track() {
			http.Error(w, "webhook server is shutting down", http.StatusServiceUnavailable)
			return
		}
		defer s.handlers.Done()
		start := time.Now()
		inFlight.Inc()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					inFlight.Dec() // net/http aborts the response; the gauge must not keep it
					panic(p)
				}
				s.panicked(path, p, stack())
				if sw.code == 0 {
					http.Error(sw, "webhook handler panicked", http.StatusInternalServerError)
				}
			}
			inFlight.Dec()
			latency.Observe(time.Since(start).Seconds())
			c := sw.code
			if c == 0 {
				c = http.StatusOK
			}
			s.m.requests.WithLabelValues(path, code(c)).Inc()
		}()
		h.ServeHTTP(sw, r)
	})
}

func (s *Server) panicked(path string, p any, stack string) {
	s.m.panics.WithLabelValues(path).Inc()
	s.log.Error("webhook handler panicked", "webhook", path, "panic", fmt.Sprint(p), "stack", stack)
}
