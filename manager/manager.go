// Package manager runs a process's caches, controllers and servers in the
// right order and stops them in the right order.
//
// Start, in order:
//  1. the HTTP server: /metrics (Prometheus), /healthz, /readyz,
//     /debug/skiff (controllers, workers, queue depths, dead letters; HTML,
//     or JSON with ?format=json), and, only if enabled, /debug/pprof/
//     (Options.EnablePprof) and the dead-letter replay action
//     (Options.EnableReplay);
//  2. every Runnable (Add; webhook servers: they serve on every replica);
//  3. every cache (informer), then wait until all have synced — bounded by
//     SyncTimeout, failing with an error that names the cache that did not
//     sync (a missing CRD, say); /readyz turns ok here;
//  4. with leader election, campaign for a coordination.k8s.io Lease —
//     caches are already warm, so a new leader starts work at once;
//  5. every controller.
//
// Stop (when Start's context ends, leadership is lost, or a part fails):
//  1. controllers stop taking keys and drain in-flight reconciles (each
//     within its own ShutdownTimeout);
//  2. the Lease is released, so a standby takes over without waiting for
//     it to expire;
//  3. caches stop;
//  4. runnables stop;
//  5. the HTTP server stops.
//
// A runnable that fails, or returns before it is told to stop, fails
// Start. Health checks added with AddHealthCheck are part of /healthz and
// /readyz.
//
// Safe by default: the server binds 127.0.0.1:8080; profiling and the
// replay action (a state-changing POST, guarded against cross-site requests,
// see Manager.Handler) are off. To serve on another interface — for a
// Prometheus in the cluster, say — set Options.Auth: /metrics and /debug/...
// then want a bearer token that the API server authenticates (TokenReview)
// and authorizes for the path (SubjectAccessReview), as kube-apiserver's
// own /metrics does. New refuses a non-loopback address without Auth unless
// Options.InsecureServing says so. /healthz and /readyz are always open.
package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/deadletter"
	"github.com/skiffkit/skiff/event"
	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/shard"
)

// Cache is anything that fills a local cache from the API server, such as an
// informer. Run blocks until ctx ends. WaitForSync blocks until the first
// full list is in the cache or ctx ends.
type Cache interface {
	Run(ctx context.Context) error
	WaitForSync(ctx context.Context) error
}

// Controller is what the manager runs and inspects; *controller.Controller[K]
// implements it.
type Controller interface {
	Name() string
	Run(ctx context.Context) error
	Stats() controller.Stats
	QueueDepth() int
	QueueDepthByPriority() map[int]int
	DeadLetterInfos() []controller.DeadLetterInfo
	ReplayKey(key string) bool
	ReplayAll() int
}

// Options configure a Manager. Every field states its default.
type Options struct {
	// Config reaches the API server; the typed client (Client), informers
	// by Go type (builder.For, Owns, Watches) and leader election use it.
	// Default: found as kubectl finds it (client.LoadConfig: $KUBECONFIG,
	// in-cluster, ~/.kube/config); if none is found, New still succeeds
	// but Client is nil and the builder's typed triggers fail with the
	// reason.
	Config *rest.Config
	// Scheme maps Go types to group/version/kind for the client and the
	// builder: register CRD types here. Default: client-go's built-in types.
	Scheme *runtime.Scheme
	// Addr is where /metrics, /healthz, /readyz, /debug/skiff and (with
	// EnablePprof) /debug/pprof/ are served. Default "127.0.0.1:8080":
	// loopback only. "-" serves nothing. An address that may not be
	// loopback (":8080", "0.0.0.0:8080", a pod IP, any host name but
	// "localhost") needs Auth, or InsecureServing to serve it without; New
	// fails otherwise.
	Addr string
	// Auth, if non-nil, makes /metrics and /debug/... answer only requests
	// whose bearer token the API server authenticates and authorizes for the
	// path (see Auth). Default nil: no checks, which New accepts only on a
	// loopback Addr or with InsecureServing.
	Auth *Auth
	// InsecureServing lets a non-loopback Addr serve without Auth: anyone
	// who reaches the port reads metrics and debug pages (and profiles and
	// replays, if enabled). Default false.
	InsecureServing bool
	// EnablePprof serves Go's profiler under /debug/pprof/. Default false:
	// /debug/pprof/ answers 404.
	EnablePprof bool
	// EnableReplay serves POST /debug/skiff/replay, which puts dead letters
	// back into their queue, and shows replay buttons on /debug/skiff.
	// Default false: the action answers 404 and the page has no buttons.
	// The action refuses cross-site requests; see Manager.Handler.
	EnableReplay bool
	// SyncTimeout bounds the wait for caches to sync. Default 2 minutes.
	SyncTimeout time.Duration
	// LeaderElection, if non-nil, runs controllers only while this process
	// holds the Lease. Default nil: no election.
	LeaderElection *LeaderElection
	// Shard, if non-nil, makes this process one replica of a group that
	// shares its controllers' work active-active (package shard): the
	// manager holds the replica's Lease from Start until the controllers
	// have drained, and the builder shards every controller it builds
	// (see Sharding, and the README's "Sharding" section). Every replica
	// needs get, list, create, update and delete on coordination.k8s.io
	// Leases in Shard.Namespace. It cannot be combined with
	// LeaderElection (New fails). Default nil: no sharding.
	Shard *shard.Options
	// Registry receives every metric of the manager's parts: the
	// controllers' controller_runtime_*, their queues' workqueue_*, the
	// informers' skiff_informer_* and the client's rest_client_*
	// (registered by New). Default: a new
	// registry with Go and process collectors.
	Registry *prometheus.Registry
	// Logger is the manager's logger. Default slog.Default().
	Logger *slog.Logger
	// KeepKlog leaves klog (client-go's logger) alone. Default false: klog
	// is routed to Logger through a logr bridge, so one process has one log.
	KeepKlog bool
	// TracerProvider, if non-nil, traces the client's requests and the
	// reconciles of controllers built by the builder (OpenTelemetry API;
	// the SDK and exporter are the caller's). Default nil: no spans.
	TracerProvider trace.TracerProvider
	// Name names this program in the Events it records (their
	// reportingController): a qualified name such as
	// "example.com/my-operator". Default "skiff.dev/" + the executable's
	// base name.
	Name string
}

// Manager owns caches, controllers and servers. Create it with New, Add
// parts, then call Start once.
type Manager struct {
	o   Options
	log *slog.Logger
	reg *prometheus.Registry

	client    *client.Client  // nil without Config
	events    *event.Recorder // nil without Config
	configErr error           // why there is no Config, if none was given or found
	factory   *cache.Factory
	metrics   Metrics
	shard     *Sharding // nil without Options.Shard

	mu          sync.Mutex
	caches      []namedCache
	controllers []Controller
	runnables   []namedRunnable
	checks      []namedCheck
	started     bool

	ready    atomic.Bool
	leading  atomic.Bool
	listener net.Listener
	http     httpGuards
}

type namedCache struct {
	name string
	c    Cache
}

// New validates o and returns a manager that has started nothing.
func New(o Options) (*Manager, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:8080"
	}
	var configErr error
	if o.Config == nil {
		o.Config, configErr = client.LoadConfig("", "")
	}
	guards, err := newHTTPGuards(o)
	if err != nil {
		return nil, err
	}
	if o.SyncTimeout < 0 {
		return nil, fmt.Errorf("manager: negative SyncTimeout %v", o.SyncTimeout)
	}
	if o.SyncTimeout == 0 {
		o.SyncTimeout = 2 * time.Minute
	}
	if o.LeaderElection != nil {
		if o.Config == nil {
			return nil, errors.New("manager: leader election needs Options.Config")
		}
		le := *o.LeaderElection // the caller's value stays as it was
		if err := le.defaults(); err != nil {
			return nil, err
		}
		o.LeaderElection = &le
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
		o.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &Manager{o: o, log: o.Logger, reg: o.Registry, factory: cache.NewFactory(), configErr: configErr, http: guards}
	if m.metrics.Controllers, err = controller.NewMetrics(o.Registry); err != nil {
		return nil, fmt.Errorf("manager: controller metrics: %w", err)
	}
	if m.metrics.Queues, err = queue.NewMetrics(o.Registry); err != nil {
		return nil, fmt.Errorf("manager: queue metrics: %w", err)
	}
	if m.metrics.Informers, err = cache.NewMetrics(o.Registry); err != nil {
		return nil, fmt.Errorf("manager: informer metrics: %w", err)
	}
	if m.metrics.DeadLetters, err = deadletter.NewMetrics(o.Registry); err != nil {
		return nil, fmt.Errorf("manager: dead-letter metrics: %w", err)
	}
	if m.metrics.Requests, err = client.NewRequestMetrics(o.Registry); err != nil {
		return nil, fmt.Errorf("manager: client request metrics: %w", err)
	}
	if m.metrics.Transport, err = client.NewTransportMetrics(o.Registry); err != nil {
		return nil, fmt.Errorf("manager: client transport metrics: %w", err)
	}
	if o.Config != nil {
		m.client, err = client.New(o.Config, client.Options{Scheme: o.Scheme, Factory: m.factory, InformerMetrics: m.metrics.Informers, Metrics: m.metrics.Requests,
			Transport: client.TransportOptions{Metrics: m.metrics.Transport}, TracerProvider: o.TracerProvider})
		if err != nil {
			return nil, fmt.Errorf("manager: %w", err)
		}
	}
	if o.Config != nil {
		name := o.Name
		if name == "" {
			name = defaultName()
		}
		m.events, err = event.New(event.Options{Config: o.Config, Controller: name, Scheme: o.Scheme, Registerer: o.Registry, Logger: o.Logger})
		if err != nil {
			return nil, fmt.Errorf("manager: event recorder: %w", err)
		}
	}
	if o.Shard != nil {
		if m.shard, err = newSharding(o, *o.Shard); err != nil {
			return nil, err
		}
	}
	if !o.KeepKlog {
		klog.SetLogger(logr.FromSlogHandler(o.Logger.Handler()))
	}
	return m, nil
}

// Metrics are the manager's shared metric sets, registered in its Registry
// by New. Parts built by hand pass them in their options (the builder does
// this itself).
type Metrics struct {
	Controllers *controller.Metrics      // controller_runtime_*
	Queues      *queue.Metrics           // workqueue_*
	Informers   *cache.Metrics           // skiff_informer_*
	Requests    *client.RequestMetrics   // rest_client_* of the manager's client
	Transport   *client.TransportMetrics // its limiter, retries and 429s
	DeadLetters *deadletter.Metrics      // skiff_deadletter_* of persisted dead letters
}

// Metrics returns the manager's shared metric sets.
func (m *Manager) Metrics() Metrics { return m.metrics }

// Client is the manager's typed client (nil when there is no Config; see
// ConfigError). Its informers live in Factory, which the manager runs: informers created
// through it before Start are synced before controllers start; ones created
// later (a Get of a type with no informer yet does not create one) start at
// once, and reads wait for their sync.
func (m *Manager) Client() *client.Client { return m.client }

// EventRecorder records events.k8s.io/v1 Events about objects, reported
// by Options.Name; the manager runs it from Start until everything else has
// stopped. Nil when there is no Config. Recording never blocks (see
// event.Recorder).
func (m *Manager) EventRecorder() *event.Recorder { return m.events }

// defaultName is "skiff.dev/" + the executable's base name, reduced to what
// a reportingController allows.
func defaultName() string {
	base := strings.ToLower(filepath.Base(os.Args[0]))
	var b strings.Builder
	for _, r := range base {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '-' || r == '_' || r == '.' {
			b.WriteRune(r)
		}
	}
	name := strings.Trim(b.String(), "-_.")
	if name == "" {
		name = "controller"
	}
	return "skiff.dev/" + name[:min(len(name), 63)]
}

// TracerProvider is Options.TracerProvider (nil: no tracing).
func (m *Manager) TracerProvider() trace.TracerProvider { return m.o.TracerProvider }

// ConfigError says why the manager has no Config (none given, and none
// found by client.LoadConfig); nil when it has one.
func (m *Manager) ConfigError() error { return m.configErr }

// Logger is the manager's logger.
func (m *Manager) Logger() *slog.Logger { return m.log }

// Factory is the manager's shared informer factory: controllers that ask it
// for the same source share one informer and one watch. The manager runs
// every informer in it, including those created after Start.
func (m *Manager) Factory() *cache.Factory { return m.factory }

// Registry is where parts register their metrics.
func (m *Manager) Registry() *prometheus.Registry { return m.reg }

// AddCache registers a cache that is not in Factory (informers in Factory
// run anyway); name appears in sync errors and logs. Adding the same cache
// again, or one of Factory's, is a no-op. It fails after Start.
func (m *Manager) AddCache(name string, c Cache) error {
	if r, ok := c.(cache.Runner); ok && m.factory.Has(r) {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return fmt.Errorf("manager: AddCache(%s) after Start", name)
	}
	if reflect.TypeOf(c).Comparable() {
		for _, have := range m.caches {
			if reflect.TypeOf(have.c) == reflect.TypeOf(c) && have.c == c {
				return nil
			}
		}
	}
	m.caches = append(m.caches, namedCache{name, c})
	return nil
}

// AddController registers a controller. Names must be unique. It fails
// after Start.
func (m *Manager) AddController(c Controller) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return fmt.Errorf("manager: AddController(%s) after Start", c.Name())
	}
	for _, have := range m.controllers {
		if have.Name() == c.Name() {
			return fmt.Errorf("manager: two controllers named %q", c.Name())
		}
	}
	m.controllers = append(m.controllers, c)
	return nil
}

// Addr is the HTTP server's address once Start has bound it ("" before, or
// when Addr is "-").
func (m *Manager) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listener == nil {
		return ""
	}
	return m.listener.Addr().String()
}

// IsLeader reports whether this manager runs its controllers now (always
// true after sync without leader election).
func (m *Manager) IsLeader() bool { return m.leading.Load() }

// ErrLeadershipLost is returned by Start when the Lease was lost.
var ErrLeadershipLost = errors.New("manager: leadership lost")

// Start runs everything (see the package doc for the order) and blocks until
// ctx ends, leadership is lost (ErrLeadershipLost), a part fails, or caches
// do not sync; then it stops everything in order and returns. It returns nil
// after a clean stop caused by ctx.
func (m *Manager) Start(ctx context.Context) (err error) {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return errors.New("manager: Start called twice")
	}
	m.started = true
	caches, controllers, runnables := m.caches, m.controllers, m.runnables
	m.mu.Unlock()

	// 4. servers stop last.
	stopServer, err := m.startServer()
	if err != nil {
		return err
	}
	defer func() {
		if serr := stopServer(); serr != nil && err == nil {
			err = serr
		}
	}()

	// Events are written until everything that records them has stopped.
	if m.events != nil {
		evCtx, stopEvents := context.WithCancel(context.WithoutCancel(ctx))
		evDone := make(chan struct{})
		go func() { m.events.Run(evCtx); close(evDone) }()
		defer func() { stopEvents(); <-evDone }()
	}

	// Runnables and caches report failures here.
	cacheErrs := make(chan error, len(caches)+len(runnables))

	// 4. runnables stop after caches, before the server.
	stopRunnables := m.startRunnables(ctx, runnables, cacheErrs)
	defer stopRunnables()

	// The shard member runs from before the caches (sharded informers
	// list its ranges) until the controllers have drained (see below).
	stopShard := m.startShard(ctx)

	// 3. caches stop after controllers and the lease.
	cacheCtx, stopCaches := context.WithCancel(context.WithoutCancel(ctx))
	var cacheWG sync.WaitGroup
	cacheWG.Go(func() { m.factory.Run(cacheCtx) })
	for _, c := range caches {
		cacheWG.Go(func() {
			if err := c.c.Run(cacheCtx); err != nil && cacheCtx.Err() == nil {
				cacheErrs <- fmt.Errorf("cache %s: %w", c.name, err)
			}
		})
	}
	defer func() {
		stopCaches()
		cacheWG.Wait()
	}()
	// Runs before the caches stop: the controllers have drained, so the
	// member releases its Lease at once.
	defer func() {
		if serr := stopShard(); serr != nil && err == nil {
			err = serr
		}
	}()
	syncing := caches
	for _, inf := range m.factory.Informers() {
		syncing = append(syncing, namedCache{inf.Name(), inf})
	}
	if err := m.waitForSync(ctx, syncing, cacheErrs); err != nil {
		return err
	}
	m.ready.Store(true)
	defer m.ready.Store(false)

	if m.o.LeaderElection == nil {
		m.leading.Store(true)
		defer m.leading.Store(false)
		return m.runControllers(ctx, controllers, nil, cacheErrs)
	}
	return m.runElected(ctx, controllers, cacheErrs)
}

func (m *Manager) waitForSync(ctx context.Context, caches []namedCache, cacheErrs chan error) error {
	syncCtx, cancel := context.WithTimeout(ctx, m.o.SyncTimeout)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (defers run last-in first-out)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(caches))
	for _, c := range caches {
		wg.Go(func() { results <- result{c.name, c.c.WaitForSync(syncCtx)} })
	}
	var pending []string
	for _, c := range caches {
		pending = append(pending, c.name)
	}
	for range caches {
		select {
		case r := <-results:
			if r.err != nil {
				cancel()
				if ctx.Err() != nil {
					return nil // asked to stop while syncing: not an error
				}
				sort.Strings(pending)
				return fmt.Errorf("manager: cache %s did not sync within %v (not synced: %v): %w", r.name, m.o.SyncTimeout, pending, r.err)
			}
			pending = remove(pending, r.name)
			m.log.Info("cache synced", "cache", r.name)
		case err := <-cacheErrs:
			cancel()
			return err
		}
	}
	return nil
}

func remove(s []string, v string) []string {
	for i, x := range s {
		if x == v {
			return append(s[:i], s[i+1:]...)
		}
	}
	return s
}

// runControllers runs controllers until ctx ends, stop fires (leadership
// lost), a controller fails or a cache fails; then it stops them all and
// waits for their drains.
func (m *Manager) runControllers(ctx context.Context, controllers []Controller, stop <-chan struct{}, cacheErrs chan error) error {
	if len(controllers) == 0 && stop == nil {
		select {
		case <-ctx.Done():
			return nil
		case err := <-cacheErrs:
			return err
		}
	}
	ctrlCtx, stopControllers := context.WithCancel(ctx)
	defer stopControllers()
	errs := make(chan error, len(controllers))
	var wg sync.WaitGroup
	for _, c := range controllers {
		wg.Go(func() {
			m.log.Info("starting controller", "controller", c.Name())
			if err := c.Run(ctrlCtx); err != nil {
				errs <- fmt.Errorf("controller %s: %w", c.Name(), err)
			} else if ctrlCtx.Err() == nil {
				errs <- fmt.Errorf("controller %s: stopped on its own", c.Name())
			}
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case <-stop:
		err = ErrLeadershipLost
	case err = <-errs:
	case err = <-cacheErrs:
	}
	stopControllers()
	wg.Wait()
	close(errs)
	for e := range errs {
		if err == nil && ctx.Err() != nil {
			err = e // a drain that had to cancel reconciles is worth reporting
		}
	}
	return err
}
