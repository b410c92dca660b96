package cache_test

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/queue"
)

func drain(q *queue.Queue[cache.ObjectKey]) []string {
	var out []string
	for {
		k, ok := q.TryGet()
		if !ok {
			slices.Sort(out)
			return out
		}
		q.Done(k)
		out = append(out, k.String())
	}
}

// Key handlers get keys for every change, the cached keys when added late,
// nothing after Remove, and resync keys at low priority.
func TestKeyHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		w := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{ResyncPeriod: time.Hour})
		q := queue.New(queue.Options[cache.ObjectKey]{})
		reg := inf.AddKeyHandler(q, cache.KeyHandlerOptions{})
		defer run(t, inf)()
		w.Add(pod("a", "x", "1"))
		w.Action("BOOKMARK", bookmark("2", true))
		synctest.Wait()
		if !reg.HasSynced() {
			t.Fatal("key handler not synced")
		}
		if got := drain(q); !slices.Equal(got, []string{"a/x"}) {
			t.Fatalf("initial keys %v", got)
		}
		w.Add(pod("a", "y", "3"))
		w.Modify(pod("a", "x", "4"))
		w.Modify(pod("a", "x", "4")) // same resourceVersion: not a change
		w.Delete(pod("a", "y", "5"))
		synctest.Wait()
		if got := drain(q); !slices.Equal(got, []string{"a/x", "a/y"}) {
			t.Fatalf("keys after events %v", got)
		}
		late := queue.New(queue.Options[cache.ObjectKey]{})
		lreg := inf.AddKeyHandler(late, cache.KeyHandlerOptions{})
		if got := drain(late); !slices.Equal(got, []string{"a/x"}) || !lreg.HasSynced() {
			t.Fatalf("late handler got %v synced=%v", got, lreg.HasSynced())
		}
		lreg.Remove()
		w.Add(pod("a", "z", "6"))
		synctest.Wait()
		if got := drain(late); len(got) != 0 {
			t.Fatalf("removed handler got %v", got)
		}
		drain(q)
		// Resync: every key again, at low priority, behind a fresh change.
		time.Sleep(time.Hour)
		synctest.Wait()
		w.Modify(pod("a", "z", "7"))
		synctest.Wait()
		if k, _ := q.TryGet(); k.String() != "a/z" {
			t.Fatalf("first key after resync %q, want the fresh change a/z first", k)
		}
		if got := drain(q); !slices.Equal(got, []string{"a/x"}) {
			t.Fatalf("resync keys %v", got)
		}
	})
}

// A stuck event handler does not hold the informer back: the watch is read
// into the store while the handler's changes wait merged per key, and when
// it catches up it gets the current state of each key. Remove releases it
// and drops what waited.
func TestStuckEventHandlerDoesNotHoldTheWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		w := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{})
		release := make(chan struct{})
		stuck := &recorder{}
		inner := stuck.handler()
		reg := inf.AddEventHandler(cache.EventHandler[*corev1.Pod]{
			OnAdd:    func(p *corev1.Pod) { inner.OnAdd(p); <-release },
			OnUpdate: func(o, n *corev1.Pod) { inner.OnUpdate(o, n); <-release },
			OnDelete: func(o *corev1.Pod) { inner.OnDelete(o); <-release },
		}, cache.EventHandlerOptions{})
		fast := newView(t)
		inf.AddEventHandler(fast.handler(), cache.EventHandlerOptions{})
		defer run(t, inf)()
		unblock := sync.OnceFunc(func() { close(release) })
		defer unblock() // before the informer is stopped, if the test fails early
		w.Action("BOOKMARK", bookmark("1", true))
		synctest.Wait()
		w.Add(pod("a", "p1", "2")) // taken by the stuck handler, which blocks in OnAdd
		synctest.Wait()            // (changes arriving in one batch would be merged)
		w.Add(pod("a", "p2", "3"))
		w.Modify(pod("a", "p2", "4"))
		w.Add(pod("a", "p3", "5"))
		w.Delete(pod("a", "p3", "6"))
		for rv := 7; rv < 2000; rv++ { // far more than any buffer: the watch is still read
			w.Modify(pod("a", "p1", strconv.Itoa(rv)))
		}
		synctest.Wait()
		if st := inf.Stats(); st.Events != 1998 || inf.Store().Len() != 2 {
			t.Fatalf("informer applied %d events, store has %d objects; want 1998 and 2 (the watch read past the stuck handler)", st.Events, inf.Store().Len())
		}
		if st := inf.Stats(); st.HandlerBacklog != 3 {
			t.Fatalf("backlog %d keys, want 3 (p1, p2, and p3 whose add and delete cancel out)", st.HandlerBacklog)
		}
		unblock()
		synctest.Wait()
		wantLines(t, stuck, "add a/p1@2", "add a/p2@4", "update a/p1@2->1999")
		if st := inf.Stats(); st.HandlerBacklog != 0 {
			t.Fatalf("backlog %d keys after the handler caught up, want 0", st.HandlerBacklog)
		}
		fast.wantStore(inf)
		reg.Remove()
		// Remove drops what waits and later changes, even while the handler
		// is inside a callback.
		blocked := make(chan struct{})
		unblock2 := sync.OnceFunc(func() { close(blocked) })
		defer unblock2()
		var late []string
		reg2 := inf.AddEventHandler(cache.EventHandler[*corev1.Pod]{OnUpdate: func(o, n *corev1.Pod) {
			late = append(late, n.Name+"@"+n.ResourceVersion)
			<-blocked
		}}, cache.EventHandlerOptions{})
		w.Modify(pod("a", "p1", "2000")) // the new handler blocks in OnUpdate
		w.Modify(pod("a", "p2", "2001")) // waits
		synctest.Wait()
		if st := inf.Stats(); st.HandlerBacklog != 1 {
			t.Fatalf("backlog %d keys, want 1 (p2)", st.HandlerBacklog)
		}
		reg2.Remove()
		if st := inf.Stats(); st.HandlerBacklog != 0 {
			t.Fatalf("backlog %d keys after Remove, want 0", st.HandlerBacklog)
		}
		unblock2()
		w.Modify(pod("a", "p2", "2002"))
		synctest.Wait()
		if !slices.Equal(late, []string{"p1@2000"}) {
			t.Fatalf("removed handler got %v, want only the update it was inside", late)
		}
		if got := stuck.take(); len(got) != 0 {
			t.Fatalf("removed handler got %v", got)
		}
	})
}

// view is what an event handler knows: it applies each change and fails
// the test if a change does not fit what it knew.
type view struct {
	t    *testing.T
	mu   sync.Mutex
	objs map[string]string // key -> resourceVersion
}

func newView(t *testing.T) *view { return &view{t: t, objs: map[string]string{}} }

func (v *view) handler() cache.EventHandler[*corev1.Pod] {
	return cache.EventHandler[*corev1.Pod]{
		OnAdd: func(p *corev1.Pod) {
			v.mu.Lock()
			defer v.mu.Unlock()
			if rv, ok := v.objs[cache.KeyOf(p).String()]; ok {
				v.t.Errorf("add of %s@%s, already known @%s", cache.KeyOf(p), p.ResourceVersion, rv)
			}
			v.objs[cache.KeyOf(p).String()] = p.ResourceVersion
		},
		OnUpdate: func(o, n *corev1.Pod) {
			v.mu.Lock()
			defer v.mu.Unlock()
			if rv := v.objs[cache.KeyOf(n).String()]; rv != o.ResourceVersion {
				v.t.Errorf("update of %s from @%s, known @%q", cache.KeyOf(n), o.ResourceVersion, rv)
			}
			v.objs[cache.KeyOf(n).String()] = n.ResourceVersion
		},
		OnDelete: func(o *corev1.Pod) {
			v.mu.Lock()
			defer v.mu.Unlock()
			if _, ok := v.objs[cache.KeyOf(o).String()]; !ok {
				v.t.Errorf("delete of unknown %s", cache.KeyOf(o))
			}
			delete(v.objs, cache.KeyOf(o).String())
		},
	}
}

// wantStore fails unless the view is the informer's store.
func (v *view) wantStore(inf *cache.Informer[*corev1.Pod]) {
	v.t.Helper()
	want := map[string]string{}
	for _, p := range inf.Lister().List(nil) {
		want[cache.KeyOf(p).String()] = p.ResourceVersion
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !maps.Equal(v.objs, want) {
		v.t.Fatalf("handler's view %v, store %v", v.objs, want)
	}
}

// A handler added after sync gets the cache first, then events.
func TestEventHandlerAddedLate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		w := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{})
		defer run(t, inf)()
		w.Add(pod("a", "x", "1"))
		w.Action("BOOKMARK", bookmark("2", true))
		synctest.Wait()
		rec := &recorder{}
		reg := inf.AddEventHandler(rec.handler(), cache.EventHandlerOptions{})
		w.Modify(pod("a", "x", "3"))
		synctest.Wait()
		if !reg.HasSynced() {
			t.Fatal("late handler not synced")
		}
		wantLines(t, rec, "add a/x@1", "update a/x@1->3")
	})
}

// Objects that cannot be stored (wrong type, no name) are skipped and
// counted; the rest of the list and the watch go on.
func TestMalformedObjectsAreSkipped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		w := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{})
		defer run(t, inf)()
		w.Add(pod("a", "ok", "1"))
		w.Add(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "cm", ResourceVersion: "2"}})
		w.Add(pod("a", "", "3"))
		w.Action("BOOKMARK", bookmark("4", true))
		w.Add(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "s", ResourceVersion: "5"}})
		w.Add(pod("a", "after", "6"))
		synctest.Wait()
		wantStore(t, inf, "a/ok@1", "a/after@6")
		if st := inf.Stats(); st.Skipped != 3 || st.ResourceVersion != "6" {
			t.Fatalf("stats %+v, want 3 skipped and rv 6", st)
		}
	})
}

type podSummary struct {
	cache.Meta
	Phase corev1.PodPhase
}

// A projection caches only the caller's struct; the default transform is
// applied to full objects in the plain informer.
func TestProjectionAndTransform(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		w := s.watcher()
		src := cache.Project(podSource(s), "summary", func(p *corev1.Pod) *podSummary {
			return &podSummary{Meta: cache.MetaOf(p), Phase: p.Status.Phase}
		})
		inf := cache.New(src, cache.Options[*podSummary]{})
		defer run(t, inf)()
		p := pod("a", "x", "1", "app", "web")
		p.Status.Phase = corev1.PodRunning
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "m"}}
		w.Add(p)
		w.Action("BOOKMARK", bookmark("2", true))
		synctest.Wait()
		got, ok := inf.Lister().Get("a", "x")
		if !ok || got.Phase != corev1.PodRunning || got.Labels["app"] != "web" {
			t.Fatalf("projection %+v, %v", got, ok)
		}
		if src.ID() == podSource(s).ID() {
			t.Fatal("projection shares the source's ID")
		}
	})
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		w := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{})
		defer run(t, inf)()
		p := pod("a", "x", "1")
		p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "m"}}
		p.Annotations = map[string]string{cache.LastAppliedAnnotation: "{}"}
		w.Add(p)
		w.Action("BOOKMARK", bookmark("2", true))
		synctest.Wait()
		got, _ := inf.Lister().Get("a", "x")
		if got.ManagedFields != nil || got.Annotations != nil {
			t.Fatalf("default transform not applied: %+v", got.ObjectMeta)
		}
	})
}

// A factory hands out one informer per source ID, runs informers created
// before and during Run, and joins them.
func TestFactorySharesInformers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := cache.NewFactory()
		s := newScript()
		w := s.watcher()
		a := cache.InformerFor(f, podSource(s), cache.Options[*corev1.Pod]{})
		b := cache.InformerFor(f, podSource(s), cache.Options[*corev1.Pod]{})
		if a != b {
			t.Fatal("two informers for the same source")
		}
		other := podSource(newScript())
		other.Scope.LabelSelector = "app=web"
		c := cache.InformerFor(f, other, cache.Options[*corev1.Pod]{})
		if c == a {
			t.Fatal("one informer for different selectors")
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()
		w.Action("BOOKMARK", bookmark("1", true))
		synctest.Wait()
		if !a.HasSynced() || c.HasSynced() {
			t.Fatalf("synced: a=%v c=%v", a.HasSynced(), c.HasSynced())
		}
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		err := f.WaitForSync(wctx)
		wcancel()
		if err == nil || !strings.Contains(err.Error(), "not synced") {
			t.Fatalf("WaitForSync = %v", err)
		}
		cancel()
		<-done
		if err := a.Run(t.Context()); err != cache.ErrAlreadyRun {
			t.Fatalf("second Run = %v", err)
		}
	})
}

func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		m, err := cache.NewMetrics(reg)
		if err != nil {
			t.Fatal(err)
		}
		s := newScript()
		w := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{Name: "pods", Metrics: m})
		defer run(t, inf)()
		w.Add(pod("a", "x", "1"))
		w.Action("BOOKMARK", bookmark("2", true))
		w.Add(pod("a", "y", "3"))
		synctest.Wait()
		want := `
# HELP skiff_informer_objects Objects cached by the informer.
# TYPE skiff_informer_objects gauge
skiff_informer_objects{informer="pods"} 2
# HELP skiff_informer_events_total Watch events applied.
# TYPE skiff_informer_events_total counter
skiff_informer_events_total{informer="pods"} 1
# HELP skiff_informer_last_synced_resource_version Last resourceVersion applied, if numeric.
# TYPE skiff_informer_last_synced_resource_version gauge
skiff_informer_last_synced_resource_version{informer="pods"} 3
# HELP skiff_informer_relists_total Full lists done by the informer.
# TYPE skiff_informer_relists_total counter
skiff_informer_relists_total{informer="pods"} 1
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "skiff_informer_objects", "skiff_informer_events_total",
			"skiff_informer_last_synced_resource_version", "skiff_informer_relists_total"); err != nil {
			t.Fatal(err)
		}
		p, _ := inf.Lister().Get("a", "x")
		bytes := testutil.ToFloat64(metricFor(t, reg, "skiff_informer_bytes"))
		if bytes < float64(2*p.Size()) {
			t.Fatalf("bytes %v, want at least %d", bytes, 2*p.Size())
		}
	})
}

func metricFor(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
			g.Set(mf.GetMetric()[0].GetGauge().GetValue())
			return g
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}
