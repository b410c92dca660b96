package conversion

import (
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Object is a Kubernetes object the webhook converts: a pointer to a struct
// that embeds metav1.TypeMeta and metav1.ObjectMeta, registered in the
// scheme given to New.
type Object interface {
	metav1.Object
	runtime.Object
}

// DefaultMaxBodyBytes is the default limit on a ConversionReview's size:
// room for several objects of the API server's 3 MiB maximum, as a review
// may carry many objects (kube-apiserver 1.36 was seen sending one per
// review, even for lists).
const DefaultMaxBodyBytes = 32 << 20

// Options configure a Webhook. The zero value is valid; every field states
// its default.
type Options struct {
	// MaxBodyBytes bounds the request body; a larger one gets 400. Default
	// DefaultMaxBodyBytes (32 MiB).
	MaxBodyBytes int64
	// Registerer, if non-nil, receives skiff_conversion_requests_total
	// {kind,result} and skiff_conversion_request_duration_seconds
	// {kind,result}; kind is the hub's group kind (e.g. "Boat.demo.skiff.dev")
	// so several webhooks can share one registry. Default nil: no metrics.
	Registerer prometheus.Registerer
	// Logger receives handler panics (with their stack). Default
	// slog.Default().
	Logger *slog.Logger
	// Now is the clock of the latency histogram. Default time.Now.
	Now func() time.Time
}

// Webhook converts the versions of one custom resource through its hub H.
// It is an http.Handler that answers apiextensions.k8s.io/v1
// ConversionReviews; mount it on an HTTPS server at the path the CRD's
// conversion stanza names (see Stanza and ConfigureCRD).
//
// Register spoke versions with Spoke. Registration and ServeHTTP are safe for
// concurrent use; a review sees the versions registered when it started.
type Webhook[H Object] struct {
	gk         schema.GroupKind
	hubVersion string
	scheme     *runtime.Scheme
	maxBody    int64
	log        *slog.Logger
	now        func() time.Time
	metrics    *metrics

	mu       sync.RWMutex
	versions map[string]*version // by version name; the hub's is present from New
}

// version is one registered version of the kind, with its conversion
// functions to and from the hub (both nil for the hub itself).
type version struct {
	gvk     schema.GroupVersionKind
	newObj  func() Object
	toHub   func(src, dst Object) error
	fromHub func(src, dst Object) error
}

// New returns a Webhook whose hub is H: every conversion goes from the source
// version to H and from H to the desired version. H's group, version and kind
// come from scheme, which must also know every spoke type; H is usually the
// newest (or storage) version and must be one of the CRD's versions. New
// does no I/O and starts nothing. It fails if H is not registered, is not a
// pointer to a struct embedding metav1.ObjectMeta, or the metrics cannot be
// registered.
func New[H Object](scheme *runtime.Scheme, o Options) (*Webhook[H], error) {
	if scheme == nil {
		return nil, fmt.Errorf("conversion: nil scheme")
	}
	hub, err := describe[H](scheme)
	if err != nil {
		return nil, fmt.Errorf("conversion: hub: %w", err)
	}
	if o.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("conversion: negative MaxBodyBytes %d", o.MaxBodyBytes)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	w := &Webhook[H]{
		gk: hub.gvk.GroupKind(), hubVersion: hub.gvk.Version, scheme: scheme,
		maxBody: o.MaxBodyBytes, log: o.Logger, now: o.Now,
		versions: map[string]*version{hub.gvk.Version: hub},
	}
	if o.Registerer != nil {
		if w.metrics, err = newMetrics(o.Registerer, w.gk.String()); err != nil {
			return nil, fmt.Errorf("conversion: metrics for %v: %w", w.gk, err)
		}
	}
	return w, nil
}

// Spoke registers S, another version of H's kind, with its conversions to
// and from the hub. Before toHub(src, dst) or fromHub(src, dst) runs, dst
// already holds a deep copy of src's metadata; the function fills in the
// rest (spec, status) and may change dst's annotations, which is where a
// field that one version lacks is kept so round trips lose nothing. It must
// not change dst's name, namespace, uid, labels or other metadata: such an
// object is refused (see the package doc). An error from either function
// fails the whole ConversionReview with a message naming the object, which
// the API server returns to its client.
//
// Spoke fails if S is not registered in the scheme, is another kind or
// group than H, is H's version, or its version already has a spoke.
func Spoke[S, H Object](w *Webhook[H], toHub func(src S, dst H) error, fromHub func(src H, dst S) error) error {
	if toHub == nil || fromHub == nil {
		return fmt.Errorf("conversion: spoke %v: nil conversion function", reflect.TypeFor[S]())
	}
	v, err := describe[S](w.scheme)
	if err != nil {
		return fmt.Errorf("conversion: spoke: %w", err)
	}
	if v.gvk.GroupKind() != w.gk {
		return fmt.Errorf("conversion: spoke %v is %v, not a version of the hub's kind %v", reflect.TypeFor[S](), v.gvk, w.gk)
	}
	v.toHub = func(src, dst Object) error { return toHub(src.(S), dst.(H)) }
	v.fromHub = func(src, dst Object) error { return fromHub(src.(H), dst.(S)) }
	w.mu.Lock()
	defer w.mu.Unlock()
	if v.gvk.Version == w.hubVersion {
		return fmt.Errorf("conversion: spoke %v has the hub's version %s", reflect.TypeFor[S](), v.gvk.Version)
	}
	if prev, ok := w.versions[v.gvk.Version]; ok {
		return fmt.Errorf("conversion: version %s of %v already registered (by %T)", v.gvk.Version, w.gk, prev.newObj())
	}
	w.versions[v.gvk.Version] = v
	return nil
}

// Versions returns the registered versions: the hub first, then the spokes
// sorted by version name.
func (w *Webhook[H]) Versions() []schema.GroupVersionKind {
	w.mu.RLock()
	defer w.mu.RUnlock()
	var spokes []schema.GroupVersionKind
	for name, v := range w.versions {
		if name != w.hubVersion {
			spokes = append(spokes, v.gvk)
		}
	}
	slices.SortFunc(spokes, func(a, b schema.GroupVersionKind) int { return strings.Compare(a.Version, b.Version) })
	return append([]schema.GroupVersionKind{w.versions[w.hubVersion].gvk}, spokes...)
}

// describe resolves T in scheme and checks that its metadata can be copied.
func describe[T Object](scheme *runtime.Scheme) (*version, error) {
	typ := reflect.TypeFor[T]()
	if typ.Kind() != reflect.Pointer || typ.Elem().Kind() != reflect.Struct {
		return nil, fmt.Errorf("%v is not a pointer to a struct", typ)
	}
	newObj := func() Object { return reflect.New(typ.Elem()).Interface().(T) }
	gvks, unversioned, err := scheme.ObjectKinds(newObj())
	if err != nil {
		return nil, fmt.Errorf("%v is not registered in the scheme (add it with AddKnownTypes): %w", typ, err)
	}
	if unversioned || len(gvks) == 0 {
		return nil, fmt.Errorf("%v is an unversioned type, not a custom resource", typ)
	}
	if len(gvks) > 1 {
		return nil, fmt.Errorf("%v is registered as several kinds (%v); register it once", typ, gvks)
	}
	if _, ok := objectMeta(newObj()); !ok {
		return nil, fmt.Errorf("%v does not embed metav1.ObjectMeta", typ)
	}
	return &version{gvk: gvks[0], newObj: newObj}, nil
}

// objectMeta returns the ObjectMeta embedded in obj.
func objectMeta(obj Object) (*metav1.ObjectMeta, bool) {
	a, ok := obj.(metav1.ObjectMetaAccessor)
	if !ok {
		return nil, false
	}
	m, ok := a.GetObjectMeta().(*metav1.ObjectMeta)
	return m, ok && m != nil
}
