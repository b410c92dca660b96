// Package event records events.k8s.io/v1 Events about Kubernetes objects,
// the way `kubectl events` and `kubectl describe` show them.
//
//	rec, err := event.New(event.Options{Config: cfg, Controller: "example.com/foo-operator", Scheme: myScheme})
//	go rec.Run(ctx) // the owner (later: the manager) runs it; Run returns when ctx ends
//	...
//	rec.Event(foo, event.Normal, "ConfigMapCreated", "Create", "created config map foo-config")
//	rec.Eventf(foo, event.Warning, "InvalidSpec", "Validate", "replicas %d is negative", n)
//
// The regarding object is a Go value; its apiVersion and kind come from
// Options.Scheme (for CRD types) or client-go's kubernetes/scheme.
//
// Event never blocks: it checks its arguments, then puts the occurrence in a
// bounded buffer that Run drains. When the buffer is full the occurrence is
// dropped and counted (Stats, skiff_events_total{result="dropped"}).
//
// Repeats become series, as the events.k8s.io/v1 design (KEP 383) intends:
// the same (regarding object, type, reason, action, note) seen again within
// SeriesWindow of its previous occurrence is the same Event. Its second
// occurrence writes series.count=2 at once; later ones are only counted, and
// the count and lastObservedTime are written (a JSON merge patch of .series)
// at most once per SeriesUpdateInterval. A series quiet for SeriesWindow is
// over: its last count has been written, and a new occurrence creates a new
// Event. At most MaxSeries series are remembered; a new one beyond that
// evicts the least recently seen (its unwritten count is written first).
// Memory is therefore bounded by BufferSize occurrences plus MaxSeries
// series.
//
// Errors from the API server (forbidden, namespace terminating, timeouts)
// are logged and counted (result="failed"), never retried in a loop: a
// failed write is tried again only if the same series occurs again, and at
// most once per SeriesUpdateInterval. When a series update finds its Event
// deleted, the series' next write (after a new occurrence) creates a new
// Event carrying the count. A write cut short by Run's ctx ending counts as
// failed.
package event

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/queue"
)

// Type is the type of an Event. The API server accepts only Normal and
// Warning.
type Type string

// The event types.
const (
	Normal  Type = "Normal"
	Warning Type = "Warning"
)

// ErrBufferFull is returned by Event when the buffer is full and the
// occurrence was dropped (and counted). Callers may ignore it.
var ErrBufferFull = errors.New("event buffer full: event dropped")

// Options configure a Recorder. Config and Controller are required.
type Options struct {
	// Config is where Events are written (through a typed clientset built
	// from it). Its rate limits apply: client-go's default when QPS and Burst
	// are unset, 5 per second with bursts of 10, bounds the load events put
	// on the API server. Required.
	Config *rest.Config
	// Controller is the Events' reportingController: a qualified name such
	// as "example.com/foo-operator" (an optional DNS-subdomain prefix and
	// '/', then at most 63 letters, digits, '-', '_', '.'). Required.
	Controller string
	// Instance is the Events' reportingInstance, telling replicas apart.
	// Default: the host name (the pod name in a cluster). Cut to
	// MaxInstanceLength characters.
	Instance string
	// Scheme is consulted first to find the apiVersion and kind of a
	// regarding object; register your CRD types here. client-go's
	// kubernetes/scheme.Scheme (all built-in types) is always consulted
	// after it. Default: nil (built-in types only).
	Scheme *runtime.Scheme
	// BufferSize is how many occurrences may wait for Run. Default: 1024.
	BufferSize int
	// SeriesWindow is how long after an occurrence a repeat still joins its
	// series. Default: 6m (KEP 383's threshold). Must be at least
	// SeriesUpdateInterval.
	SeriesWindow time.Duration
	// SeriesUpdateInterval is the least time between two writes of one
	// series. A pending count is written between one and one and a half
	// intervals after the previous write. Default: 30s.
	SeriesUpdateInterval time.Duration
	// MaxSeries bounds how many series are remembered. Default: 4096.
	MaxSeries int
	// WriteTimeout bounds each API call. Default: 10s.
	WriteTimeout time.Duration
	// Registerer, when set, gets the skiff_events_total counter (see
	// MetricEvents). Default: nil (Stats only).
	Registerer prometheus.Registerer
	// Logger receives failed writes (at Warn). Default: slog.Default().
	Logger *slog.Logger
	// Clock stamps occurrences and paces series updates. Default:
	// queue.RealClock{}.
	Clock queue.Clock
}

// Recorder records Events. Event and Eventf are safe for concurrent use;
// Run must be called once, by the Recorder's owner.
type Recorder struct {
	client     kubernetes.Interface
	controller string
	instance   string
	schemes    []*runtime.Scheme
	buf        chan occurrence
	tracker    *tracker // owned by Run's goroutine
	tick       time.Duration
	timeout    time.Duration
	log        *slog.Logger
	clock      queue.Clock
	counts     *counters
	running    atomic.Bool
}

// New checks o, builds the clientset and registers the metric. It starts
// nothing: call Run.
func New(o Options) (*Recorder, error) {
	if o.Config == nil {
		return nil, errors.New("new event recorder: Options.Config is nil")
	}
	client, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("new event recorder: build clientset: %w", err)
	}
	return newRecorder(o, client)
}

// newRecorder is New with the clientset given (unit tests pass a fake).
func newRecorder(o Options, client kubernetes.Interface) (*Recorder, error) {
	if o.Controller == "" {
		return nil, errors.New("new event recorder: Options.Controller (reportingController) is empty")
	}
	if msgs := content.IsQualifiedName(o.Controller); len(msgs) > 0 {
		return nil, fmt.Errorf("new event recorder: Options.Controller %q: %s", o.Controller, strings.Join(msgs, "; "))
	}
	if o.Instance == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("new event recorder: Options.Instance is empty and the host name is unknown (%v): set Instance", err)
		}
		o.Instance = h
	}
	if len(o.Instance) > MaxInstanceLength {
		o.Instance = o.Instance[:MaxInstanceLength]
	}
	if o.BufferSize <= 0 {
		o.BufferSize = 1024
	}
	if o.SeriesWindow <= 0 {
		o.SeriesWindow = 6 * time.Minute
	}
	if o.SeriesUpdateInterval <= 0 {
		o.SeriesUpdateInterval = 30 * time.Second
	}
	if o.SeriesUpdateInterval > o.SeriesWindow {
		return nil, fmt.Errorf("new event recorder: SeriesUpdateInterval %v is longer than SeriesWindow %v", o.SeriesUpdateInterval, o.SeriesWindow)
	}
	if o.MaxSeries <= 0 {
		o.MaxSeries = 4096
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = queue.RealClock{}
	}
	counts, err := newCounters(o.Registerer)
	if err != nil {
		return nil, fmt.Errorf("new event recorder: register %s: %w", MetricEvents, err)
	}
	var schemes []*runtime.Scheme
	if o.Scheme != nil {
		schemes = append(schemes, o.Scheme)
	}
	schemes = append(schemes, clientgoscheme.Scheme)
	return &Recorder{
		client:     client,
		controller: o.Controller,
		instance:   o.Instance,
		schemes:    schemes,
		buf:        make(chan occurrence, o.BufferSize),
		tracker:    newTracker(o.SeriesWindow, o.SeriesUpdateInterval, o.MaxSeries),
		tick:       o.SeriesUpdateInterval / 2,
		timeout:    o.WriteTimeout,
		log:        o.Logger,
		clock:      o.Clock,
		counts:     counts,
	}, nil
}

// Event records that action was taken (or failed) on regarding, for reason,
// with a human-readable note. It never blocks.
//
// It returns an error, and records nothing, when regarding is nil, has no
// name, or its Go type is not in the schemes (wrapping ErrUnknownKind); when
// typ is not Normal or Warning; or when reason or action is empty or longer
// than 128 characters. A note longer than MaxNoteLength bytes is cut and
// ends with "...(truncated)". It returns ErrBufferFull when the occurrence
// was dropped.
func (r *Recorder) Event(regarding Object, typ Type, reason, action, note string) error {
	if typ != Normal && typ != Warning {
		return fmt.Errorf("record event %q: type %q: want event.Normal or event.Warning", reason, typ)
	}
	if reason == "" || len(reason) > MaxReasonLength {
		return fmt.Errorf("record event: reason %q: want 1 to %d characters", reason, MaxReasonLength)
	}
	if action == "" || len(action) > MaxActionLength {
		return fmt.Errorf("record event %q: action %q: want 1 to %d characters", reason, action, MaxActionLength)
	}
	ref, err := reference(regarding, r.schemes)
	if err != nil {
		return fmt.Errorf("record event %q: %w", reason, err)
	}
	note = truncateNote(note)
	o := occurrence{
		key: key{apiVersion: ref.APIVersion, kind: ref.Kind, namespace: ref.Namespace, name: ref.Name, uid: ref.UID,
			typ: typ, reason: reason, action: action, note: note},
		ref: ref,
		at:  r.clock.Now(),
	}
	select {
	case r.buf <- o:
		return nil
	default:
		r.counts.inc(typ, resultDropped)
		return ErrBufferFull
	}
}

// Eventf is Event with the note formatted by fmt.Sprintf(format, args...).
func (r *Recorder) Eventf(regarding Object, typ Type, reason, action, format string, args ...any) error {
	return r.Event(regarding, typ, reason, action, fmt.Sprintf(format, args...))
}

// Stats returns the counters since New. Safe for concurrent use.
func (r *Recorder) Stats() Stats { return r.counts.stats() }

// Run writes recorded events until ctx is done, then returns nil. It does
// its work in the calling goroutine and starts no other, so when it returns
// nothing of the recorder is running. Occurrences still buffered then are
// counted as dropped, as are any recorded later; series counts not yet
// written are lost. A second call returns an error at once.
func (r *Recorder) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("event recorder: Run called more than once")
	}
	timer := r.clock.NewTimer(r.tick)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case o := <-r.buf:
					r.counts.inc(o.key.typ, resultDropped)
				default:
					return nil
				}
			}
		case o := <-r.buf:
			r.send(ctx, r.tracker.observe(o))
		case <-timer.C():
			r.send(ctx, r.tracker.due(r.clock.Now()))
			timer.Reset(r.tick)
		}
	}
}

func (r *Recorder) send(ctx context.Context, writes []write) {
	for _, w := range writes {
		if w.create() {
			r.create(ctx, w)
		} else {
			r.update(ctx, w)
		}
	}
}

func (r *Recorder) create(ctx context.Context, w write) {
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: namePrefix(w.ref.Name), Namespace: w.namespace},
		EventTime:           metav1.NewMicroTime(w.first),
		ReportingController: r.controller,
		ReportingInstance:   r.instance,
		Action:              w.key.action,
		Reason:              w.key.reason,
		Regarding:           w.ref,
		Note:                w.key.note,
		Type:                string(w.key.typ),
	}
	if w.count > 1 {
		ev.Series = &eventsv1.EventSeries{Count: w.count, LastObservedTime: metav1.NewMicroTime(w.last)}
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	created, err := r.client.EventsV1().Events(w.namespace).Create(ctx, ev, metav1.CreateOptions{})
	if err != nil {
		r.tracker.failed(w, false)
		r.counts.inc(w.key.typ, resultFailed)
		r.log.Warn("create event", "namespace", w.namespace, "regarding", w.ref.Kind+"/"+w.ref.Name,
			"reason", w.key.reason, "action", w.key.action, "error", err)
		return
	}
	r.tracker.succeeded(w, created.Name)
	r.counts.inc(w.key.typ, resultSent)
}

func (r *Recorder) update(ctx context.Context, w write) {
	patch, err := json.Marshal(map[string]any{"series": eventsv1.EventSeries{
		Count: w.count, LastObservedTime: metav1.NewMicroTime(w.last),
	}})
	if err != nil { // a struct of an int and a time always marshals
		panic(fmt.Sprintf("event: marshal series patch: %v", err))
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	_, err = r.client.EventsV1().Events(w.namespace).Patch(ctx, w.name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		gone := apierrors.IsNotFound(err)
		r.tracker.failed(w, gone)
		r.counts.inc(w.key.typ, resultFailed)
		r.log.Warn("update event series", "namespace", w.namespace, "event", w.name, "count", w.count, "gone", gone, "error", err)
		return
	}
	r.tracker.succeeded(w, w.name)
	r.counts.inc(w.key.typ, resultSeriesUpdated)
}
