package integration

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

// goneLW wraps a ListerWatcher so a test can make the informer relist at
// a moment it chooses: after arm, the next resuming watch fails with 410
// Gone and the watch-list that follows waits until release. relay hides
// the source's own watch behind a channel (watch.Filter), as a
// ListerWatcher wrapper that reads ResultChan would.
type goneLW struct {
	cache.ListerWatcher
	relay bool

	mu      sync.Mutex
	open    watch.Interface
	gone    bool
	hold    chan struct{} // closed by release
	waiting chan struct{} // closed when the held watch-list waits
}

func (l *goneLW) arm() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gone, l.hold, l.waiting = true, make(chan struct{}), make(chan struct{})
}

func (l *goneLW) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.hold != nil {
		close(l.hold)
		l.hold = nil
	}
}

// cut stops the open watch, so the informer resumes (and meets the 410).
func (l *goneLW) cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open != nil {
		l.open.Stop()
	}
}

func (l *goneLW) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	watchList := opts.SendInitialEvents != nil && *opts.SendInitialEvents
	l.mu.Lock()
	if l.gone && !watchList {
		l.gone = false
		l.mu.Unlock()
		return nil, apierrors.NewResourceExpired("too old resource version: injected by the test")
	}
	hold, waiting := l.hold, l.waiting
	l.mu.Unlock()
	if watchList && hold != nil {
		close(waiting)
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	w, err := l.ListerWatcher.Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	if l.relay {
		w = watch.Filter(w, func(ev watch.Event) (watch.Event, bool) { return ev, true })
	}
	l.mu.Lock()
	l.open = w
	l.mu.Unlock()
	return w, nil
}

func (l *goneLW) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return l.ListerWatcher.List(ctx, opts)
}

// RelayedFrom makes goneLW a cache.EventRelay: it passes the source's
// events on unread, so the informer may skip unchanged objects through it.
func (l *goneLW) RelayedFrom() cache.ListerWatcher { return l.ListerWatcher }

// opaqueLW wraps a ListerWatcher without saying it relays events unread
// (it is not a cache.EventRelay), as a user's filtering wrapper would.
type opaqueLW struct{ cache.ListerWatcher }

// A relist after a 410 in which most objects did not change hands out the
// same objects as before and reports no change for them; a changed, a new
// and a deleted object are reported. With a counting Transform: only the
// changed and the new object are decoded (transformed) by the relist.
// For the default mode, a compact store and a counting Transform, with
// the protobuf watch read directly and through a relaying wrapper; behind
// a wrapper that is not a cache.EventRelay the relist decodes everything
// (nothing kept undecoded) and ends with the same cache.
func TestRelistKeepsUnchangedObjects(t *testing.T) {
	var transformed atomic.Int64
	modes := map[string]cache.Options[*corev1.Pod]{
		"default": {},
		"compact": {Compact: true},
		"transform": {Transform: func(p *corev1.Pod) *corev1.Pod {
			transformed.Add(1)
			return cache.DefaultTransform(p)
		}},
	}
	for _, name := range []string{"default", "compact", "transform"} {
		for _, wrap := range []string{"direct", "relay", "opaque"} {
			t.Run(name+"/"+wrap, func(t *testing.T) {
				o := modes[name]
				o.InitialBackoff = 10 * time.Millisecond
				relistKeepsUnchanged(t, o, wrap, name == "transform", &transformed)
			})
		}
	}
}

func relistKeepsUnchanged(t *testing.T, o cache.Options[*corev1.Pod], wrap string, counting bool, transformed *atomic.Int64) {
	ctx := ctxFor(t, 2*time.Minute)
	cfg := shared.Config()
	ns := testenv.Namespace(t, cfg)
	pods := clientset(t, cfg).CoreV1().Pods(ns)
	for i := range 5 {
		if _, err := pods.Create(ctx, newPod(fmt.Sprint("p", i), map[string]string{"i": fmt.Sprint(i)}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	src, err := cache.TypedSource[*corev1.Pod](cfg, podsGVR, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	lw := &goneLW{ListerWatcher: src.LW, relay: wrap == "relay"}
	src.LW = lw
	if wrap == "opaque" {
		src.LW = opaqueLW{lw}
	}
	t.Cleanup(lw.release)
	inf := cache.New(src, o)
	var mu sync.Mutex
	var changes []string
	inf.AddEventHandler(cache.EventHandler[*corev1.Pod]{
		OnAdd:    func(p *corev1.Pod) { mu.Lock(); changes = append(changes, "added "+p.Name); mu.Unlock() },
		OnUpdate: func(old, p *corev1.Pod) { mu.Lock(); changes = append(changes, "updated "+p.Name); mu.Unlock() },
		OnDelete: func(p *corev1.Pod) { mu.Lock(); changes = append(changes, "deleted "+p.Name); mu.Unlock() },
	}, cache.EventHandlerOptions{})
	seen := func(want ...string) func() string {
		return func() string {
			mu.Lock()
			got := slices.Clone(changes)
			mu.Unlock()
			slices.Sort(got)
			if !slices.Equal(got, want) {
				return fmt.Sprintf("handler saw %q, want %q", got, want)
			}
			return ""
		}
	}
	runInformer(t, inf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, seen("added p0", "added p1", "added p2", "added p3", "added p4"))
	before := map[string]*corev1.Pod{}
	for _, n := range []string{"p0", "p3", "p4"} {
		before[n], _ = inf.Lister().Get(ns, n)
	}

	lw.arm()
	lw.cut()
	select {
	case <-lw.waiting:
	case <-ctx.Done():
		t.Fatalf("the informer did not relist after a 410: %+v", inf.Stats())
	}
	// While the informer is between watches: one change, one delete, one create.
	p1, err := pods.Get(ctx, "p1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p1.Labels["touched"] = "yes"
	if _, err := pods.Update(ctx, p1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, "p2", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	if _, err := pods.Create(ctx, newPod("p5", nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := pods.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := snapshot(podsOf(l))
	transformed.Store(0)
	lw.release()

	eventually(t, 30*time.Second, func() string { return sameAs(inf, want) })
	if st := inf.Stats(); st.Relists != 2 || st.Skipped != 0 {
		t.Fatalf("stats %+v, want 2 lists and nothing skipped", st)
	}
	eventually(t, 30*time.Second, seen("added p0", "added p1", "added p2", "added p3", "added p4", "added p5", "deleted p2", "updated p1"))
	for n, old := range before {
		p, ok := inf.Lister().Get(ns, n)
		if !ok || p.ResourceVersion != old.ResourceVersion {
			t.Fatalf("%s: got %v, want resourceVersion %s", n, p, old.ResourceVersion)
		}
		if !o.Compact && p != old {
			t.Errorf("%s: the relist replaced the cached object of an unchanged pod", n)
		}
	}
	if p, _ := inf.Lister().Get(ns, "p1"); p.Labels["touched"] != "yes" {
		t.Errorf("p1 not updated: labels %v", p.Labels)
	}
	wantKept, wantTransformed := int64(3), int64(2) // p0, p3, p4 kept; p1 and p5 decoded
	if wrap == "opaque" {
		wantKept, wantTransformed = 0, 5
	}
	if st := inf.Stats(); st.Kept != wantKept {
		t.Errorf("the relist kept %d objects undecoded, want %d", st.Kept, wantKept)
	}
	if counting {
		if n := transformed.Load(); n != wantTransformed {
			t.Errorf("the relist transformed %d objects, want %d", n, wantTransformed)
		}
	}
}
