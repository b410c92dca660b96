package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
)

// Labels and annotation of the ConfigMap.
const (
	LabelManagedBy     = "app.kubernetes.io/managed-by"
	LabelComponent     = "app.kubernetes.io/component"
	AnnotationOwner    = "skiff.dev/dead-letters-of"
	managedByValue     = "skiff"
	componentValue     = "dead-letters"
	maxConflictRetries = 8
)

// StoreOptions configure a Store. Every field states its default.
type StoreOptions struct {
	// Config reaches the API server. Required.
	Config *rest.Config
	// Controller is the name of the controller whose dead letters the
	// store keeps; the ConfigMap is ConfigMapName(Controller). Required.
	Controller string
	// Namespace holds the ConfigMap. Default "default". Replicas of one
	// controller must agree on it.
	Namespace string
	// Replica names this process in the entries it writes. Default: the
	// host name (a pod's name in Kubernetes).
	Replica string
	// MaxEntries bounds the ConfigMap's data keys; a new dead letter that
	// would exceed it is not persisted (it stays dead in its queue, is
	// counted in skiff_deadletter_dropped_total and logged). Default
	// DefaultMaxEntries (256); at most MaxMaxEntries (400), which keeps the
	// ConfigMap under the API server's 1 MiB object limit.
	MaxEntries int
	// Metrics, if non-nil, receives the store's metrics. Default nil.
	Metrics *Metrics
	// Logger receives write errors, refused entries and malformed entries.
	// Default slog.Default().
	Logger *slog.Logger
}

// Store keeps one controller's dead letters in a ConfigMap and watches it,
// so every replica sees every change. Create it with NewStore (no I/O);
// Run watches. Its methods are safe for concurrent use.
//
// Writes read, modify and update the ConfigMap with its resourceVersion
// (optimistic concurrency); on a conflict they read it again from the
// server and apply the change to what they read, up to 8 times. Data keys
// the store cannot decode are reported (logged once, counted in
// skiff_deadletter_malformed) and left untouched by every write.
type Store struct {
	o      StoreOptions
	name   string
	core   corev1client.ConfigMapInterface
	inf    *cache.Informer[*corev1.ConfigMap]
	log    *slog.Logger
	m      *storeMetrics
	change chan struct{}

	mu       sync.Mutex
	written  *corev1.ConfigMap // the last object this store wrote, kept until the informer catches up
	reported map[string]string // malformed data key -> the value reported
}

// NewStore validates o and returns a store that has started nothing.
func NewStore(o StoreOptions) (*Store, error) {
	if o.Config == nil {
		return nil, errors.New("deadletter: StoreOptions.Config is required")
	}
	if o.Controller == "" {
		return nil, errors.New("deadletter: StoreOptions.Controller is required")
	}
	if o.MaxEntries < 0 || o.MaxEntries > MaxMaxEntries {
		return nil, fmt.Errorf("deadletter: MaxEntries %d out of [0, %d]", o.MaxEntries, MaxMaxEntries)
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Replica == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("deadletter: no StoreOptions.Replica and no host name: %w", err)
		}
		o.Replica = h
	}
	o.Replica = truncate(o.Replica, maxReplica)
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	name := ConfigMapName(o.Controller)
	core, err := corev1client.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("deadletter: client for ConfigMaps: %w", err)
	}
	src, err := cache.TypedSource[*corev1.ConfigMap](o.Config, corev1.SchemeGroupVersion.WithResource("configmaps"),
		cache.Scope{Namespace: o.Namespace, FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		return nil, fmt.Errorf("deadletter: watch ConfigMap %s/%s: %w", o.Namespace, name, err)
	}
	log := o.Logger.With("controller", o.Controller, "configMap", o.Namespace+"/"+name)
	s := &Store{
		o: o, name: name, core: core.ConfigMaps(o.Namespace), log: log,
		change: make(chan struct{}, 1), reported: map[string]string{},
		inf: cache.New(src, cache.Options[*corev1.ConfigMap]{Name: "deadletters-" + name, Transform: cache.KeepAll[*corev1.ConfigMap], Logger: log}),
	}
	if o.Metrics != nil {
		s.m = o.Metrics.forController(o.Controller)
	}
	notify := func(*corev1.ConfigMap) { s.changed() }
	s.inf.AddEventHandler(cache.EventHandler[*corev1.ConfigMap]{
		OnAdd: notify, OnDelete: notify, OnUpdate: func(_, n *corev1.ConfigMap) { notify(n) },
	}, cache.EventHandlerOptions{})
	return s, nil
}

// Name and Namespace locate the ConfigMap; Replica is this process's name in
// entries; MaxEntries is the bound.
func (s *Store) Name() string      { return s.name }
func (s *Store) Namespace() string { return s.o.Namespace }
func (s *Store) Replica() string   { return s.o.Replica }
func (s *Store) MaxEntries() int   { return s.o.MaxEntries }

// Run watches the ConfigMap until ctx ends, then returns nil once its
// goroutines are done. Run it once.
func (s *Store) Run(ctx context.Context) error { return s.inf.Run(ctx) }

// WaitForSync blocks until the first list of the ConfigMap is in, or ctx
// ends.
func (s *Store) WaitForSync(ctx context.Context) error { return s.inf.WaitForSync(ctx) }

// Changes receives a value (buffer of one, never blocking the store) after
// the ConfigMap changed, by a watch event or a write of this store; read
// Snapshot after each receive.
func (s *Store) Changes() <-chan struct{} { return s.change }

func (s *Store) changed() {
	select {
	case s.change <- struct{}{}:
	default:
	}
}

// Snapshot is the store's view of the ConfigMap.
type Snapshot struct {
	Synced   bool             // the first list is in
	Entries  map[string]Entry // valid entries by Entry.Key; the caller's own
	Problems []Problem        // data keys skipped
}

// Snapshot returns the newest ConfigMap known: the informer's, or the one
// this store last wrote if the informer has not caught up with it yet (so a
// caller never acts on a view older than its own write).
func (s *Store) Snapshot() Snapshot {
	cm := s.current()
	snap := Snapshot{Synced: s.inf.HasSynced(), Entries: map[string]Entry{}}
	if cm != nil {
		snap.Entries, snap.Problems = Parse(cm.Data)
	}
	s.report(snap)
	return snap
}

// Has reports whether the newest ConfigMap known (as Snapshot) holds a
// valid entry for key (an Entry.Key). It decodes only that entry.
func (s *Store) Has(key string) bool {
	cm := s.current()
	if cm == nil {
		return false
	}
	dk := DataKey(key)
	v, ok := cm.Data[dk]
	if !ok {
		return false
	}
	e, err := Decode(dk, v)
	return err == nil && e.Key == key
}

// current returns the newest of the informer's object and the last one
// written (nil if there is none).
func (s *Store) current() *corev1.ConfigMap {
	cached, ok := s.inf.Lister().Get(s.o.Namespace, s.name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written == nil {
		if ok {
			return cached
		}
		return nil
	}
	if ok && !olderRV(cached.ResourceVersion, s.written.ResourceVersion) {
		s.written = nil // the informer has caught up
		return cached
	}
	return s.written
}

// olderRV reports whether resourceVersion a is older than b. Versions the
// server hands out are decimal integers (KEP-5504); anything else counts as
// not older, so the informer's view wins.
func olderRV(a, b string) bool {
	x, err1 := strconv.ParseUint(a, 10, 64)
	y, err2 := strconv.ParseUint(b, 10, 64)
	return err1 == nil && err2 == nil && x < y
}

// report logs malformed data keys once each (again if their value changes)
// and sets the metrics.
func (s *Store) report(snap Snapshot) {
	cm := s.current()
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]bool{}
	for _, p := range snap.Problems {
		seen[p.DataKey] = true
		v := ""
		if cm != nil {
			v = cm.Data[p.DataKey]
		}
		if old, ok := s.reported[p.DataKey]; !ok || old != v {
			s.reported[p.DataKey] = v
			s.log.Warn("skipping a malformed dead-letter entry; it is left in the ConfigMap", "dataKey", p.DataKey, "err", p.Err)
		}
	}
	maps.DeleteFunc(s.reported, func(k, _ string) bool { return !seen[k] })
	if s.m != nil {
		s.m.persisted.Set(float64(len(snap.Entries)))
		s.m.malformed.Set(float64(len(snap.Problems)))
	}
}

// Update applies c to the ConfigMap (creating it if needed) and returns
// what it did. Puts refused by the bound are logged and counted; they are
// no error. An error means nothing was written.
func (s *Store) Update(ctx context.Context, c Change) (Applied, error) {
	a, err := s.update(ctx, c)
	if err != nil {
		if s.m != nil {
			s.m.writeErrors.Inc()
		}
		return Applied{}, err
	}
	if len(a.Refused) > 0 {
		if s.m != nil {
			s.m.dropped.Add(float64(len(a.Refused)))
		}
		s.log.Warn("dead letters not persisted: the store is full; they stay dead in memory only",
			"keys", a.Refused, "maxEntries", s.o.MaxEntries)
	}
	return a, nil
}

func (s *Store) update(ctx context.Context, c Change) (Applied, error) {
	cm := s.current()
	for attempt := 0; ; attempt++ {
		if cm == nil {
			got, err := s.core.Get(ctx, s.name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
					Name: s.name, Namespace: s.o.Namespace,
					Labels:      map[string]string{LabelManagedBy: managedByValue, LabelComponent: componentValue},
					Annotations: map[string]string{AnnotationOwner: s.o.Controller},
				}}
			case err != nil:
				return Applied{}, fmt.Errorf("deadletter: read ConfigMap %s/%s: %w", s.o.Namespace, s.name, err)
			default:
				cm = got
			}
		}
		next := cm.DeepCopy()
		if next.Data == nil {
			next.Data = map[string]string{}
		}
		a, err := Apply(next.Data, c, s.o.MaxEntries)
		if err != nil || !a.Changed {
			return a, err
		}
		var wrote *corev1.ConfigMap
		if next.ResourceVersion == "" {
			wrote, err = s.core.Create(ctx, next, metav1.CreateOptions{})
		} else {
			wrote, err = s.core.Update(ctx, next, metav1.UpdateOptions{})
		}
		if err == nil {
			s.mu.Lock()
			if s.written == nil || !olderRV(wrote.ResourceVersion, s.written.ResourceVersion) {
				s.written = wrote
			}
			s.mu.Unlock()
			s.changed()
			return a, nil
		}
		if !(apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err)) || attempt >= maxConflictRetries {
			return Applied{}, fmt.Errorf("deadletter: write ConfigMap %s/%s: %w", s.o.Namespace, s.name, err)
		}
		cm = nil // someone else wrote meanwhile: read again and merge
	}
}
