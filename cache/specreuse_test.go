package cache

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// reuseLW is streamLW whose watches reuse specs as protoStream's do: with
// the specReuse the informer put in the request's context.
type reuseLW struct{ streamLW }

func (l *reuseLW) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	w, err := l.streamLW.Watch(ctx, opts)
	if pw, ok := w.(*protoWatch); ok && isLean(ctx) {
		pw.reuse = specReuseOf(ctx)
	}
	return w, err
}

// reuseSource is a source whose Decode is Assert, as RESTSource's.
func reuseSource(lw ListerWatcher) Source[*corev1.Pod] {
	src := Source[*corev1.Pod]{LW: lw, Decode: Assert[*corev1.Pod], Resource: "pods"}
	src.assertDecode = reflect.ValueOf(src.Decode).Pointer()
	return src
}

// mutatePod changes p (a deep copy of the last version) in one of the ways
// a pod changes, and reports whether its spec changed.
func mutatePod(r *rand.Rand, p *corev1.Pod, rv int) (specChanged bool) {
	p.ResourceVersion = fmt.Sprint(rv)
	switch r.IntN(6) {
	case 0: // an annotation patch (I3's writer)
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations["bench.skiff.dev/written-at"] = fmt.Sprint(r.Int64())
	case 1:
		if p.Labels == nil {
			p.Labels = map[string]string{}
		}
		p.Labels[fmt.Sprint("l", r.IntN(3))] = fmt.Sprint(r.IntN(3))
	case 2: // a status heartbeat
		p.Status.Phase = []corev1.PodPhase{corev1.PodPending, corev1.PodRunning}[r.IntN(2)]
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue, Reason: fmt.Sprint(rv)})
	case 3: // a new image
		if len(p.Spec.Containers) == 0 {
			p.Spec.Containers = []corev1.Container{{Name: "c"}}
		}
		p.Spec.Containers[0].Image = fmt.Sprint("img:", rv)
		return true
	case 4: // scheduled
		p.Spec.NodeName = fmt.Sprint("node-", rv)
		return true
	case 5: // an ephemeral container and an annotation at once
		p.Spec.EphemeralContainers = append(p.Spec.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: fmt.Sprint("debug-", rv)}})
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations["x"] = fmt.Sprint(rv)
		return true
	}
	return false
}

// sameBacking reports whether two specs share their containers' array.
func sameBacking(a, b *corev1.PodSpec) bool {
	return len(a.Containers) > 0 && len(b.Containers) > 0 && unsafe.SliceData(a.Containers) == unsafe.SliceData(b.Containers)
}

// The informer with spec reuse stores exactly what a full decode followed
// by DefaultTransform gives, for random pods changed in random ways and
// streamed in random batches; an object whose spec did not change since
// the stored version shares that version's spec.
func TestSpecReuseMatchesFullDecode(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))

	lw := &reuseLW{streamLW{t: t, streams: make(chan io.ReadCloser, 1)}}
	inf := New(reuseSource(lw), Options[*corev1.Pod]{})
	if inf.refl.reuse == nil {
		t.Fatal("no spec reuse for pods with the default options")
	}
	body, wr := io.Pipe()
	lw.streams <- body
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); inf.Run(ctx) }()
	defer func() { cancel(); wr.Close(); <-done }()

	// Initial events: every pod once, then the end bookmark.
	const pods = 8
	last := make([]*corev1.Pod, pods)
	var initial []watch.Event
	rv := 1
	for i := range last {
		p := randomPod(r)
		p.Name, p.Namespace, p.ResourceVersion = fmt.Sprint("p", i), "ns", fmt.Sprint(rv)
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "main", Image: "main:1"})
		rv++
		last[i] = p
		initial = append(initial, watch.Event{Type: watch.Added, Object: p.DeepCopy()})
	}
	initial = append(initial, watch.Event{Type: watch.Bookmark, Object: streamBookmark(fmt.Sprint(rv), true)})
	if _, err := wr.Write(protobufStream(t, initial...)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "synced", inf.HasSynced)

	// Updates, written in chunks of 1–4 events; each chunk is applied (one
	// batch or more; a batch never spans two) before the next is written.
	shared, unchanged := 0, 0
	for chunk := range 200 {
		before := map[string]*corev1.Pod{}
		for _, p := range last {
			before[p.Name], _ = inf.Lister().Get("ns", p.Name)
		}
		specChanged := map[string]bool{} // by any event of this chunk
		var evs []watch.Event
		for range 1 + r.IntN(4) {
			i := r.IntN(pods)
			p := last[i].DeepCopy()
			rv++
			if mutatePod(r, p, rv) {
				specChanged[p.Name] = true
			} else if !specChanged[p.Name] {
				specChanged[p.Name] = false
			}
			p.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
			evs = append(evs, watch.Event{Type: watch.Modified, Object: p})
			last[i] = p
		}
		data := protobufStream(t, evs...)
		if _, err := wr.Write(data); err != nil {
			t.Fatal(err)
		}
		eventually(t, fmt.Sprint("chunk ", chunk, " applied"), func() bool { return inf.Stats().ResourceVersion == fmt.Sprint(rv) })
		// The reference: the chunk decoded by client-go, then DefaultTransform;
		// the last event of a key is what the store holds.
		want := map[string]*corev1.Pod{}
		for _, ev := range clientGoEvents(t, data) {
			p := ev.Object.(*corev1.Pod)
			want[p.Name] = DefaultTransform(p)
		}
		for name, w := range want {
			got, _ := inf.Lister().Get("ns", name)
			if !reflect.DeepEqual(got, w) {
				t.Fatalf("chunk %d, pod %s (spec changed %v): the informer stores\n%#v\nfull decode + DefaultTransform gives\n%#v", chunk, name, specChanged[name], got, w)
			}
			isShared := sameBacking(&before[name].Spec, &got.Spec)
			switch {
			case specChanged[name] && isShared:
				t.Fatalf("chunk %d, pod %s: the spec changed, yet the stored one is shared", chunk, name)
			case !specChanged[name] && !isShared:
				t.Fatalf("chunk %d, pod %s: the spec did not change, yet it was decoded again", chunk, name)
			}
			if !specChanged[name] {
				unchanged++
			}
			if isShared {
				shared++
			}
		}
	}
	if shared == 0 {
		t.Fatal("no update shared a spec")
	}
	t.Logf("%d stored updates shared the stored spec (%d had an unchanged spec)", shared, unchanged)
}

// DELETE forgets a key's hash, and a relist forgets all.
func TestSpecReuseForgets(t *testing.T) {
	withSpec := func(p *corev1.Pod) *corev1.Pod {
		p.Spec.Containers = []corev1.Container{{Name: "c", Image: "i"}}
		return p
	}
	start := func(streams int) (*reuseLW, *Informer[*corev1.Pod], func()) {
		lw := &reuseLW{streamLW{t: t, streams: make(chan io.ReadCloser, streams)}}
		inf := New(reuseSource(lw), Options[*corev1.Pod]{})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); inf.Run(ctx) }()
		return lw, inf, func() { cancel(); <-done }
	}

	t.Run("delete", func(t *testing.T) {
		lw, inf, stop := start(1)
		body, wr := io.Pipe()
		lw.streams <- body
		defer stop()
		defer wr.Close() // before stop: a pipe read does not end with ctx
		if _, err := wr.Write(protobufStream(t,
			watch.Event{Type: watch.Added, Object: withSpec(streamPod("a", "1"))},
			watch.Event{Type: watch.Added, Object: withSpec(streamPod("b", "2"))},
			watch.Event{Type: watch.Bookmark, Object: streamBookmark("3", true)},
			watch.Event{Type: watch.Deleted, Object: withSpec(streamPod("b", "4"))},
			watch.Event{Type: watch.Bookmark, Object: streamBookmark("5", false)},
		)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the delete applied", func() bool { return inf.Stats().ResourceVersion == "5" })
		wr.Close()
		stop() // nothing runs now: look at what the informer remembers
		known := inf.refl.reuse.known
		if _, ok := known[ObjectKey{Namespace: "ns", Name: "a"}]; !ok || len(known) != 1 {
			t.Fatalf("hashes kept after b was deleted: %v, want a's only", known)
		}
	})

	t.Run("relist", func(t *testing.T) {
		lw, inf, stop := start(2)
		body, wr := io.Pipe()
		lw.streams <- body
		body2, wr2 := io.Pipe() // the relist: held open, no events
		lw.streams <- body2
		defer stop()
		defer wr2.Close()
		defer wr.Close()
		gone := apierrors.NewResourceExpired("too old resource version").ErrStatus
		gone.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Status"))
		if _, err := wr.Write(protobufStream(t,
			watch.Event{Type: watch.Added, Object: withSpec(streamPod("a", "1"))},
			watch.Event{Type: watch.Bookmark, Object: streamBookmark("2", true)},
		)); err != nil {
			t.Fatal(err)
		}
		eventually(t, "synced", inf.HasSynced)
		if _, err := wr.Write(protobufStream(t, watch.Event{Type: watch.Error, Object: &gone})); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the relist's watch", func() bool { return len(lw.watches()) == 2 })
		wr.Close()
		wr2.Close()
		stop()
		if n := len(inf.refl.reuse.known); n != 0 {
			t.Fatalf("%d hashes kept after a relist started, want 0", n)
		}
	})
}

// specReuse.decode of any bytes ends as the object's own Unmarshal does:
// both fail, or both give the same pod; decoded again with the first
// result stored under its key, it shares that spec and is still equal.
func FuzzSpecReuseDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 6 {
		p := randomPod(r)
		p.Status.Phase = corev1.PodRunning
		raw, err := p.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add(appendField(appendField(nil, 2, nil), 2, nil)) // spec twice
	f.Add([]byte{2<<3 | wireVarint, 1})                  // spec as a varint
	f.Fuzz(func(t *testing.T, raw []byte) {
		want := &corev1.Pod{}
		wantErr := want.Unmarshal(raw)
		s := newSpecReuse[*corev1.Pod]()
		got := &corev1.Pod{}
		_, done, err := s.decode(got, raw, nil)
		if !done {
			if err != nil || !reflect.DeepEqual(got, &corev1.Pod{}) {
				t.Fatalf("not decoded, yet err %v and pod %#v", err, got)
			}
			if _, _, _, ok := singleField(raw, specWireField); ok {
				t.Fatal("one length-delimited spec, yet not decoded")
			}
			return
		}
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("error %v, the pod's own Unmarshal: %v", err, wantErr)
		}
		if err != nil {
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded\n%#v\nwant\n%#v", got, want)
		}
		s.stored(KeyOf(got), got)
		s.batchDone()
		again := &corev1.Pod{}
		if _, _, err := s.decode(again, raw, nil); err != nil {
			t.Fatal(err)
		}
		if !s.reused(again) {
			t.Fatal("the same bytes again did not reuse the stored spec")
		}
		if !reflect.DeepEqual(again, want) {
			t.Fatalf("decoded with the stored spec\n%#v\nwant\n%#v", again, want)
		}
	})
}

// Spec reuse is on only where the stored objects are the decoded ones,
// unchanged by a transform of the user's, and kept decoded.
func TestSpecReuseWhen(t *testing.T) {
	lw := &reuseLW{streamLW{t: t}}
	cases := []struct {
		name string
		src  Source[*corev1.Pod]
		o    Options[*corev1.Pod]
		want bool
	}{
		{"defaults", reuseSource(lw), Options[*corev1.Pod]{}, true},
		{"no intern", reuseSource(lw), Options[*corev1.Pod]{NoIntern: true}, true},
		{"own transform", reuseSource(lw), Options[*corev1.Pod]{Transform: KeepAll[*corev1.Pod]}, false},
		{"full decode", reuseSource(lw), Options[*corev1.Pod]{FullDecode: true}, false},
		{"compact", reuseSource(lw), Options[*corev1.Pod]{Compact: true}, false},
		{"own decode", func() Source[*corev1.Pod] {
			s := reuseSource(lw)
			s.Decode = func(o runtime.Object) (*corev1.Pod, error) { return Assert[*corev1.Pod](o) }
			return s
		}(), Options[*corev1.Pod]{}, false},
		{"not from RESTSource", Source[*corev1.Pod]{LW: lw, Decode: Assert[*corev1.Pod], Resource: "pods"}, Options[*corev1.Pod]{}, false},
	}
	for _, c := range cases {
		_, _, reuse := leanSource(c.src, c.o)
		if got := reuse != nil; got != c.want {
			t.Errorf("%s: spec reuse %v, want %v", c.name, got, c.want)
		}
	}
	if newSpecReuse[*corev1.ConfigMap]() != nil {
		t.Error("spec reuse for ConfigMap, which has no spec")
	}
	if newSpecReuse[*metav1.PartialObjectMetadata]() != nil {
		t.Error("spec reuse for PartialObjectMetadata")
	}
}
