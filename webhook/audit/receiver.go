package audit

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/queue"
)

// DefaultMaxBodyBytes is the default Options.MaxBodyBytes: 32 MiB. The API
// server does not cap a batch's size (up to --audit-webhook-batch-max-size
// events, default 400) unless --audit-webhook-truncate-enabled, whose
// default cap is 10 MB; 400 events at level Metadata are well under 1 MiB.
const DefaultMaxBodyBytes = 32 << 20

// Mapper resolves a Go type to the resource the API server names it by in
// audit events. *client.Client is one.
type Mapper interface {
	ResourceFor(obj runtime.Object) (schema.GroupVersionResource, error)
}

// Options configure a Receiver. Every field has a usable default except
// Mapper, which Watch needs.
type Options struct {
	// Mapper resolves the Go types given to Watch and WatchFunc. Required
	// for them; a Receiver without one serves but matches nothing.
	Mapper Mapper
	// MaxBodyBytes bounds a batch's body; a larger one is rejected with
	// 400 (reason RejectTooLarge). Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// Metrics, if non-nil, counts batches and events (see Metrics).
	// Default nil: nothing is counted.
	Metrics *Metrics
	// Logger receives one warning per rejected batch. Default slog.Default().
	Logger *slog.Logger
}

// Receiver is an http.Handler for the API server's audit webhook backend:
// it accepts POSTed audit.k8s.io/v1 EventList batches and turns the events
// that pass a watch's Filter into keys. Mount it on an HTTPS server (the
// webhook package's, or any) and point --audit-webhook-config-file at it.
//
// Each batch is handled synchronously: keys are added (or callbacks run)
// before the response, so an API server retrying a batch that failed
// mid-way may deliver some events twice — harmless for queue keys, which
// deduplicate. Watches may be added while the Receiver serves. Its methods
// are safe for concurrent use.
type Receiver struct {
	o       Options
	mu      sync.Mutex // serializes Watch
	watches atomic.Pointer[[]*watch]
}

// watch is one registration: a filter on one resource and where keys go.
type watch struct {
	m     matcher
	label string // metric label: resource[.group]
	emit  func(controller.Request, *auditv1.Event)
}

// New returns a Receiver. It starts nothing and does no I/O.
func New(o Options) (*Receiver, error) {
	if o.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("audit: negative MaxBodyBytes %d", o.MaxBodyBytes)
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Receiver{o: o}
	r.watches.Store(&[]*watch{})
	return r, nil
}

// Watch adds, for every audit event about a T that passes f, the object's
// key (namespace and name from the event's objectRef) to q. T is resolved to
// its group/resource through Options.Mapper now — for *client.Client the
// first call may run discovery — and an error names T when it cannot be.
func Watch[T client.Object](r *Receiver, q *queue.Queue[controller.Request], f Filter) error {
	if q == nil {
		return fmt.Errorf("audit: Watch[%v]: nil queue", reflect.TypeFor[T]())
	}
	return watchType[T](r, f, func(k controller.Request, _ *auditv1.Event) { q.Add(k) })
}

// WatchFunc is Watch with a callback instead of a queue: fn runs for every
// event about a T that passes f, in the request that delivered its batch,
// before the API server gets its answer. fn must be quick and must not
// keep or change ev.
func WatchFunc[T client.Object](r *Receiver, f Filter, fn func(key controller.Request, ev *auditv1.Event)) error {
	if fn == nil {
		return fmt.Errorf("audit: WatchFunc[%v]: nil func", reflect.TypeFor[T]())
	}
	return watchType[T](r, f, fn)
}

func watchType[T client.Object](r *Receiver, f Filter, emit func(controller.Request, *auditv1.Event)) error {
	t := reflect.TypeFor[T]()
	if r.o.Mapper == nil {
		return fmt.Errorf("audit: Watch[%v]: the Receiver has no Options.Mapper", t)
	}
	if t.Kind() != reflect.Pointer {
		return fmt.Errorf("audit: Watch[%v]: want a pointer type such as *corev1.ConfigMap", t)
	}
	obj := reflect.New(t.Elem()).Interface().(T)
	gvr, err := r.o.Mapper.ResourceFor(obj)
	if err != nil {
		return fmt.Errorf("audit: Watch[%v]: resolve resource: %w", t, err)
	}
	gr := gvr.GroupResource()
	w := &watch{m: newMatcher(gr, f), label: gr.String(), emit: emit}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.watches.Load()
	next := make([]*watch, len(old), len(old)+1)
	copy(next, old)
	next = append(next, w)
	r.watches.Store(&next)
	return nil
}

// ServeHTTP accepts one batch. It answers 200 once every event was
// handled; 405 to a method other than POST; 400 with a message naming the
// problem to a body that is not a JSON audit.k8s.io/v1 EventList, or is
// larger than MaxBodyBytes. The API server retries a batch that got an
// error, so a rejected batch is usually counted several times.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	m := r.o.Metrics
	if m != nil {
		m.batches.Inc()
	}
	list, err := r.read(w, req)
	if err != nil {
		var be *BatchError
		if !errors.As(err, &be) {
			be = &BatchError{RejectRead, err}
		}
		if m != nil {
			m.rejected.WithLabelValues(be.Reason).Inc()
		}
		r.o.Logger.Warn("audit: rejected a batch", "reason", be.Reason, "err", be.Err, "remote", req.RemoteAddr)
		code := http.StatusBadRequest
		if be.Reason == RejectMethod {
			w.Header().Set("Allow", http.MethodPost)
			code = http.StatusMethodNotAllowed
		}
		http.Error(w, be.Error(), code)
		return
	}
	if m != nil {
		m.events.Add(float64(len(list.Items)))
	}
	r.dispatch(list.Items)
	w.WriteHeader(http.StatusOK)
}

// read checks the request and decodes its body.
func (r *Receiver) read(w http.ResponseWriter, req *http.Request) (*auditv1.EventList, error) {
	if req.Method != http.MethodPost {
		return nil, &BatchError{RejectMethod, fmt.Errorf("method %s not allowed, want POST", req.Method)}
	}
	if ct := req.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, &BatchError{RejectContentType, fmt.Errorf("Content-Type %q, want application/json", ct)}
		}
	}
	if req.ContentLength > r.o.MaxBodyBytes {
		return nil, &BatchError{RejectTooLarge, fmt.Errorf("body of %d bytes is over the limit of %d", req.ContentLength, r.o.MaxBodyBytes)}
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, req.Body, r.o.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &BatchError{RejectTooLarge, fmt.Errorf("body is over the limit of %d bytes", r.o.MaxBodyBytes)}
		}
		return nil, &BatchError{RejectRead, fmt.Errorf("read body: %w", err)}
	}
	return DecodeEventList(data)
}

// dispatch hands every event to every watch whose filter it passes.
func (r *Receiver) dispatch(events []auditv1.Event) {
	watches := *r.watches.Load()
	m := r.o.Metrics
	for i := range events {
		ev := &events[i]
		for _, w := range watches {
			if !w.m.match(ev) {
				continue
			}
			if m != nil {
				m.matched.WithLabelValues(w.label).Inc()
			}
			key, skip := keyOf(ev)
			if skip != "" {
				if m != nil {
					m.skipped.WithLabelValues(w.label, skip).Inc()
				}
				continue
			}
			w.emit(key, ev)
			if m != nil {
				m.enqueued.WithLabelValues(w.label).Inc()
			}
		}
	}
}
