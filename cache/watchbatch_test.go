package cache

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// streamLW answers every Watch with the next protobuf stream the test
// hands it (read by the reflector itself, in batches) and records the
// options; it has no List (the informer streams its lists).
type streamLW struct {
	t       *testing.T
	streams chan io.ReadCloser
	mu      sync.Mutex
	opts    []metav1.ListOptions
}

func (l *streamLW) List(context.Context, metav1.ListOptions) (runtime.Object, error) {
	return nil, apierrors.NewBadRequest("this test streams its lists")
}

func (l *streamLW) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	l.mu.Lock()
	l.opts = append(l.opts, opts)
	l.mu.Unlock()
	select {
	case body := <-l.streams:
		return newProtoWatch(body, podDecoder(l.t, true)), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *streamLW) watches() []metav1.ListOptions {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]metav1.ListOptions(nil), l.opts...)
}

func streamPod(name, rv string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, ResourceVersion: rv,
		Annotations: map[string]string{LastAppliedAnnotation: "{}", "keep": rv}}}
	p.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	return p
}

func streamBookmark(rv string, initialEnd bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv}}
	if initialEnd {
		p.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
	}
	p.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	return p
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// A watch-list stream whose initial objects, end bookmark and later events
// arrive in one read (one batch) is applied in order: the list is stored at
// the bookmark, the events after it update the store and reach the
// handler, the resume point is the last event's version. An ERROR 410 in a
// later batch relists, after the events before it in that batch.
func TestReflectorAppliesStreamBatches(t *testing.T) {
	lw := &streamLW{t: t, streams: make(chan io.ReadCloser, 2)}
	inf := New(Source[*corev1.Pod]{LW: lw, Decode: Assert[*corev1.Pod], Resource: "pods"}, Options[*corev1.Pod]{})
	var mu sync.Mutex
	view := map[string]string{} // the handler's view: name → keep annotation
	var ops int
	inf.AddEventHandler(EventHandler[*corev1.Pod]{
		OnAdd:    func(p *corev1.Pod) { mu.Lock(); view[p.Name] = p.Annotations["keep"]; ops++; mu.Unlock() },
		OnUpdate: func(_, p *corev1.Pod) { mu.Lock(); view[p.Name] = p.Annotations["keep"]; ops++; mu.Unlock() },
		OnDelete: func(p *corev1.Pod) { mu.Lock(); delete(view, p.Name); ops++; mu.Unlock() },
	}, EventHandlerOptions{})
	viewIs := func(want map[string]string) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			if len(view) != len(want) {
				return false
			}
			for k, v := range want {
				if view[k] != v {
					return false
				}
			}
			return true
		}
	}

	r1, w1 := io.Pipe()
	lw.streams <- r1
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); inf.Run(ctx) }()
	defer func() { cancel(); <-done }()

	first := protobufStream(t,
		watch.Event{Type: watch.Added, Object: streamPod("a", "1")},
		watch.Event{Type: watch.Added, Object: streamPod("b", "2")},
		watch.Event{Type: watch.Bookmark, Object: streamBookmark("3", true)},
		watch.Event{Type: watch.Modified, Object: streamPod("a", "4")},
		watch.Event{Type: watch.Added, Object: streamPod("c", "5")},
		watch.Event{Type: watch.Deleted, Object: streamPod("b", "6")},
		watch.Event{Type: watch.Bookmark, Object: streamBookmark("7", false)},
	)
	if _, err := w1.Write(first); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first stream applied", func() bool { return inf.Stats().ResourceVersion == "7" })
	if !inf.HasSynced() {
		t.Fatal("not synced after the initial-events-end bookmark")
	}
	eventually(t, "the handler's view", viewIs(map[string]string{"a": "4", "c": "5"}))
	st := inf.Stats()
	if st.Objects != 2 || st.Events != 3 || st.Relists != 1 {
		t.Fatalf("stats after the first stream: %+v", st)
	}
	if p, ok := inf.Lister().Get("ns", "a"); !ok || p.ResourceVersion != "4" || p.Annotations[LastAppliedAnnotation] != "" {
		t.Fatalf("stored a: %v %+v", ok, p)
	}

	// A batch with an update, then a 410: the update is applied, then the
	// informer relists by a new watch-list.
	r2, w2 := io.Pipe()
	lw.streams <- r2
	gone := apierrors.NewResourceExpired("too old resource version").ErrStatus
	gone.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Status"))
	if _, err := w1.Write(protobufStream(t,
		watch.Event{Type: watch.Modified, Object: streamPod("c", "8")},
		watch.Event{Type: watch.Error, Object: &gone},
	)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "c@8 before the relist", viewIs(map[string]string{"a": "4", "c": "8"}))
	go func() {
		// The relist stream: only a is left.
		w2.Write(protobufStream(t,
			watch.Event{Type: watch.Added, Object: streamPod("a", "9")},
			watch.Event{Type: watch.Bookmark, Object: streamBookmark("10", true)},
		))
	}()
	eventually(t, "the relist", func() bool { return inf.Stats().ResourceVersion == "10" })
	eventually(t, "the handler's view after the relist", viewIs(map[string]string{"a": "9"}))
	if st := inf.Stats(); st.Relists != 2 || st.Objects != 1 {
		t.Fatalf("stats after the relist: %+v", st)
	}
	opts := lw.watches()
	if len(opts) < 2 || opts[1].SendInitialEvents == nil || !*opts[1].SendInitialEvents || opts[1].ResourceVersion != "" {
		t.Fatalf("second watch was not a fresh watch-list: %+v", opts)
	}
	w1.Close()
	w2.Close()
}

// A stream that breaks with an undecodable frame is a watch error (counted,
// then backoff); a clean end just resumes from the last version.
func TestReflectorStreamEnds(t *testing.T) {
	lw := &streamLW{t: t, streams: make(chan io.ReadCloser, 3)}
	var errs []error
	var mu sync.Mutex
	inf := New(Source[*corev1.Pod]{LW: lw, Decode: Assert[*corev1.Pod], Resource: "pods"}, Options[*corev1.Pod]{
		InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() },
	})
	r1, w1 := io.Pipe()
	lw.streams <- r1
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); inf.Run(ctx) }()
	defer func() { cancel(); <-done }()
	go func() {
		w1.Write(protobufStream(t,
			watch.Event{Type: watch.Added, Object: streamPod("a", "1")},
			watch.Event{Type: watch.Bookmark, Object: streamBookmark("2", true)},
		))
		w1.Close() // clean end: resume from 2
	}()
	eventually(t, "a resumed watch", func() bool { return len(lw.watches()) == 2 })
	if o := lw.watches()[1]; o.ResourceVersion != "2" || o.SendInitialEvents != nil {
		t.Fatalf("resume options: %+v", o)
	}
	if inf.Stats().Errors != 0 {
		t.Fatalf("a clean end counted as an error: %+v", inf.Stats())
	}
	r2, w2 := io.Pipe()
	lw.streams <- r2
	go func() { w2.Write([]byte{0, 0, 0, 3, 0xff, 0xff, 0xff}); w2.Close() }()
	eventually(t, "the decode error reported", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) == 1 })
	mu.Lock()
	err := errs[0]
	mu.Unlock()
	var st apierrors.APIStatus
	if errors.As(err, &st) || inf.Stats().Errors != 1 {
		t.Fatalf("decode error %v (stats %+v)", err, inf.Stats())
	}
}
