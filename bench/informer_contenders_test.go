package bench

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	kcache "k8s.io/client-go/tools/cache"

	skiffcache "github.com/skiffkit/skiff/cache"
)

// listWatcher is the list/watch pair both engines read through (the
// signature of skiff's cache.ListerWatcher and of client-go's
// ListWithContextFunc/WatchFuncWithContext).
type listWatcher interface {
	List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// podHandler is what a scenario wants to hear; nil funcs are skipped.
type podHandler struct {
	onAdd    func(p *corev1.Pod)
	onUpdate func(old, new *corev1.Pod)
}

// informerSetup is what one scenario asks of a contender.
type informerSetup struct {
	cfg     *rest.Config
	ns      string
	wrap    func(listWatcher) listWatcher // nil: the contender's own list/watch
	handler *podHandler                   // nil: no handler
}

// runningInformer is a started informer of any contender.
type runningInformer struct {
	hasSynced func() bool
	len       func() int
	get       func(ns, name string) bool // reads one object as a controller would
	list      func() int                 // reads every object as a controller would
	keep      any                        // the informer, for runtime.KeepAlive
	cancel    context.CancelFunc
	done      chan struct{}
}

// stop cancels the informer and waits for its Run to return.
func (r *runningInformer) stop() { r.cancel(); <-r.done }

// informerImpl is one contender. start builds the informer (and its client)
// and runs it; nothing is built before start, so memory baselines taken
// before start include every byte the contender needs.
type informerImpl struct {
	name  string
	start func(s informerSetup) (*runningInformer, error)
}

// clientGoWire is the content type a client-go contender asks for.
type clientGoWire int

const (
	// wireDefault leaves rest.Config.ContentType empty. client-go v0.36's
	// generated clients then ask for protobuf for built-in types
	// (rest.Request.UseProtobufAsDefaultIfPreferred), so the defaults
	// contender reads protobuf.
	wireDefault  clientGoWire = iota
	wireJSON                  // ContentType application/json: the JSON anchor
	wireProtobuf              // ContentType protobuf, set explicitly
)

var informerImpls = []informerImpl{
	{"skiff", func(s informerSetup) (*runningInformer, error) {
		return startSkiff(s, skiffcache.Options[*corev1.Pod]{})
	}},
	// skiff's engine as it was before issue 12: every field decoded, then
	// DefaultTransform, no interning.
	{"skiff/fulldecode", func(s informerSetup) (*runningInformer, error) {
		return startSkiff(s, skiffcache.Options[*corev1.Pod]{FullDecode: true, NoIntern: true})
	}},
	// Issue 12 part 3: objects kept as stripped protobuf, decoded on read.
	{"skiff/compact", func(s informerSetup) (*runningInformer, error) {
		return startSkiff(s, skiffcache.Options[*corev1.Pod]{Compact: true})
	}},
	// skiff's defaults but with paginated lists (500 per page) instead
	// of a watch-list: the server encodes a page in one go instead of
	// each object as an event (BenchmarkInformerServerBound). The next
	// page is requested as soon as this one's continue token is read.
	{"skiff/pagedlist", func(s informerSetup) (*runningInformer, error) {
		return startSkiff(s, skiffcache.Options[*corev1.Pod]{WatchList: skiffcache.WatchListOff})
	}},
	// The same, each page requested after the previous one was decoded
	// (a wrapped ListerWatcher does not run whole lists itself). A
	// scenario's own wrapper (I4's relist trigger) stays outermost.
	{"skiff/pagedlist-noprefetch", func(s informerSetup) (*runningInformer, error) {
		outer := s.wrap
		s.wrap = func(lw listWatcher) listWatcher {
			var w listWatcher = struct{ listWatcher }{lw}
			if outer != nil {
				w = outer(w)
			}
			return w
		}
		return startSkiff(s, skiffcache.Options[*corev1.Pod]{WatchList: skiffcache.WatchListOff})
	}},
	// skiff's defaults with its watch stream on HTTP/2 (as before
	// 2026-11-26 evening) instead of HTTP/1.1 on a connection of its own.
	{"skiff/http2", func(s informerSetup) (*runningInformer, error) {
		s.cfg = rest.CopyConfig(s.cfg)
		s.cfg.TLSClientConfig.NextProtos = []string{"h2", "http/1.1"}
		return startSkiff(s, skiffcache.Options[*corev1.Pod]{})
	}},
	{"clientgo/defaults", func(s informerSetup) (*runningInformer, error) { return startClientGo(s, wireDefault, false) }},
	{"clientgo/json", func(s informerSetup) (*runningInformer, error) { return startClientGo(s, wireJSON, false) }},
	{"clientgo/tuned", func(s informerSetup) (*runningInformer, error) { return startClientGo(s, wireProtobuf, true) }},
}

// forEachInformerImpl runs fn as sub-benchmark impl=<name> per contender.
func forEachInformerImpl(b *testing.B, fn func(b *testing.B, f *informerFixture, impl informerImpl)) {
	f := fixtureFor(b)
	for _, impl := range informerImpls {
		b.Run("impl="+impl.name, func(b *testing.B) { fn(b, f, impl) })
	}
}

// startSkiff is skiff's informer with options o (the zero value: its
// defaults: protobuf, watch-list, DefaultTransform with managedFields and
// last-applied cut before decoding, interning).
func startSkiff(s informerSetup, o skiffcache.Options[*corev1.Pod]) (*runningInformer, error) {
	src, err := skiffcache.TypedSource[*corev1.Pod](s.cfg, corev1.SchemeGroupVersion.WithResource("pods"), skiffcache.Scope{Namespace: s.ns})
	if err != nil {
		return nil, err
	}
	if s.wrap != nil {
		src.LW = s.wrap(src.LW)
	}
	inf := skiffcache.New(src, o)
	if h := s.handler; h != nil {
		inf.AddEventHandler(skiffcache.EventHandler[*corev1.Pod]{OnAdd: h.onAdd, OnUpdate: h.onUpdate}, skiffcache.EventHandlerOptions{})
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := inf.Lister()
	r := &runningInformer{hasSynced: inf.HasSynced, len: inf.Store().Len, keep: inf, cancel: cancel, done: make(chan struct{}),
		get: func(ns, name string) bool {
			p, ok := l.Get(ns, name)
			return ok && p.Name == name
		},
		list: func() int { return len(l.List(nil)) },
	}
	go func() { defer close(r.done); inf.Run(ctx) }()
	return r, nil
}

// startClientGo builds a SharedIndexInformer the way
// informers.NewSharedInformerFactory's pod informer does (namespace index,
// no resync, ToListWatcherWithWatchListSemantics), reading wire, with
// skiff's DefaultTransform set via SetTransform if transform.
func startClientGo(s informerSetup, wire clientGoWire, transform bool) (*runningInformer, error) {
	cfg := s.cfg
	switch wire {
	case wireJSON:
		cfg = rest.CopyConfig(cfg)
		cfg.ContentType = "application/json"
	case wireProtobuf:
		cfg = protobufConfig(cfg)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pods := cs.CoreV1().Pods(s.ns)
	var lw listWatcher = podsLW{pods: pods}
	if s.wrap != nil {
		lw = s.wrap(lw)
	}
	inf := kcache.NewSharedIndexInformerWithOptions(
		kcache.ToListWatcherWithWatchListSemantics(&kcache.ListWatch{ListWithContextFunc: lw.List, WatchFuncWithContext: lw.Watch}, cs),
		&corev1.Pod{},
		kcache.SharedIndexInformerOptions{Indexers: kcache.Indexers{kcache.NamespaceIndex: kcache.MetaNamespaceIndexFunc}},
	)
	if transform {
		err := inf.SetTransform(func(o any) (any, error) {
			if p, ok := o.(*corev1.Pod); ok {
				skiffcache.DefaultTransform(p)
			}
			return o, nil
		})
		if err != nil {
			return nil, err
		}
	}
	if h := s.handler; h != nil {
		_, err := inf.AddEventHandler(kcache.ResourceEventHandlerFuncs{
			AddFunc: func(o any) {
				if h.onAdd != nil {
					h.onAdd(o.(*corev1.Pod))
				}
			},
			UpdateFunc: func(old, new any) {
				if h.onUpdate != nil {
					h.onUpdate(old.(*corev1.Pod), new.(*corev1.Pod))
				}
			},
		})
		if err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningInformer{
		hasSynced: inf.HasSynced,
		len:       func() int { return len(inf.GetStore().ListKeys()) },
		get: func(ns, name string) bool {
			o, ok, err := inf.GetIndexer().GetByKey(ns + "/" + name)
			return err == nil && ok && o.(*corev1.Pod).Name == name
		},
		list:   func() int { return len(inf.GetIndexer().List()) },
		keep:   inf,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go func() { defer close(r.done); inf.RunWithContext(ctx) }()
	return r, nil
}

type podsLW struct {
	pods interface {
		List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
		Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	}
}

func (l podsLW) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return l.pods.List(ctx, opts)
}

func (l podsLW) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return l.pods.Watch(ctx, opts)
}

// startSynced starts impl and waits until it has synced and holds want
// objects.
func startSynced(impl informerImpl, s informerSetup, want int) (*runningInformer, error) {
	r, err := impl.start(s)
	if err != nil {
		return nil, err
	}
	if !waitFor(informerTimeout, func() bool { return r.hasSynced() && r.len() == want }) {
		n := r.len()
		r.stop()
		return nil, fmt.Errorf("%s: not synced with %d objects after %v (has %d)", impl.name, want, informerTimeout, n)
	}
	return r, nil
}
