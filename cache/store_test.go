package cache_test

import (
	"fmt"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffkit/skiff/cache"
)

func pod(ns, name, rv string, lbls ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv}}
	if len(lbls) > 0 {
		p.Labels = map[string]string{}
		for i := 0; i+1 < len(lbls); i += 2 {
			p.Labels[lbls[i]] = lbls[i+1]
		}
	}
	return p
}

func keysOf[T cache.Object](objs []T) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, cache.KeyOf(o).String())
	}
	sort.Strings(out)
	return out
}

func changesString[T cache.Object](cs []cache.Change[T]) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		s := c.Type.String() + " " + c.Key.String()
		if c.Type == cache.Updated {
			s += " " + c.Old.GetResourceVersion() + "->" + c.New.GetResourceVersion()
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

func TestStoreGetListIndexes(t *testing.T) {
	s, w := cache.NewStore(cache.StoreOptions[*corev1.Pod]{Indexes: map[string]cache.IndexFunc[*corev1.Pod]{
		"app": cache.LabelIndex[*corev1.Pod]("app"),
	}})
	w.Upsert(pod("a", "p1", "1", "app", "web"))
	w.Upsert(pod("a", "p2", "2", "app", "db"))
	w.Upsert(pod("b", "p1", "3", "app", "web"))
	w.Upsert(pod("b", "p3", "4"))

	if p, ok := s.Get(key("a/p1")); !ok || p.ResourceVersion != "1" {
		t.Fatalf("Get(a/p1) = %v, %v", p, ok)
	}
	if _, ok := s.Get(key("a/nope")); ok {
		t.Fatal("Get(a/nope) found something")
	}
	sel := func(s string) labels.Selector {
		l, err := labels.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	tests := []struct {
		name string
		got  []*corev1.Pod
		want []string
	}{
		{"list all", s.List(nil), []string{"a/p1", "a/p2", "b/p1", "b/p3"}},
		{"list app=web", s.List(sel("app=web")), []string{"a/p1", "b/p1"}},
		{"list !app", s.List(sel("!app")), []string{"b/p3"}},
		{"namespace a", s.ByIndex(cache.NamespaceIndex, "a"), []string{"a/p1", "a/p2"}},
		{"namespace none", s.ByIndex(cache.NamespaceIndex, "zzz"), []string{}},
		{"app=db", s.ByIndex("app", "db"), []string{"a/p2"}},
	}
	for _, tc := range tests {
		if got := keysOf(tc.got); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}

	// Relabel a/p1: the index must follow.
	if _, existed, changed := w.Upsert(pod("a", "p1", "5", "app", "db")); !existed || !changed {
		t.Fatalf("relabel: existed=%v changed=%v", existed, changed)
	}
	if got := keysOf(s.ByIndex("app", "db")); !slices.Equal(got, []string{"a/p1", "a/p2"}) {
		t.Errorf("after relabel app=db: %v", got)
	}
	if got := keysOf(s.ByIndex("app", "web")); !slices.Equal(got, []string{"b/p1"}) {
		t.Errorf("after relabel app=web: %v", got)
	}
	// Same resourceVersion: no change, old object kept.
	if _, _, changed := w.Upsert(pod("a", "p1", "5")); changed {
		t.Error("upsert with the same resourceVersion reported a change")
	}
	if p, _ := s.Get(key("a/p1")); p.Labels["app"] != "db" {
		t.Error("upsert with the same resourceVersion replaced the object")
	}
	if _, ok := w.Delete(key("b/p1")); !ok {
		t.Fatal("Delete(b/p1) found nothing")
	}
	if got := s.IndexValues("app"); !slices.Equal(got, []string{"db"}) {
		t.Errorf("index values after delete: %v", got)
	}
	if got := keysOf(s.ByIndex(cache.NamespaceIndex, "b")); !slices.Equal(got, []string{"b/p3"}) {
		t.Errorf("namespace b after delete: %v", got)
	}
}

func TestStoreReplaceEmitsOnlyRealChanges(t *testing.T) {
	s, w := cache.NewStore(cache.StoreOptions[*corev1.Pod]{})
	got := changesString(w.Replace([]*corev1.Pod{pod("a", "x", "1"), pod("a", "y", "1"), pod("", "z", "1")}, "10"))
	if want := []string{"added /z", "added a/x", "added a/y"}; !slices.Equal(got, want) {
		t.Fatalf("first replace: %v, want %v", got, want)
	}
	kept, _ := s.Get(key("a/x"))
	got = changesString(w.Replace([]*corev1.Pod{pod("a", "x", "1"), pod("a", "y", "2"), pod("a", "w", "3")}, "20"))
	if want := []string{"added a/w", "deleted /z", "updated a/y 1->2"}; !slices.Equal(got, want) {
		t.Fatalf("second replace: %v, want %v", got, want)
	}
	if x, _ := s.Get(key("a/x")); x != kept {
		t.Error("an unchanged object was swapped for the relisted copy")
	}
	if s.ResourceVersion() != "20" || s.Len() != 3 {
		t.Errorf("rv=%q len=%d", s.ResourceVersion(), s.Len())
	}
	if got := w.Replace(nil, "30"); len(got) != 3 || s.Len() != 0 {
		t.Errorf("empty replace: %d changes, %d left", len(got), s.Len())
	}
}

func TestReplaceSessionIsInvisibleUntilFinish(t *testing.T) {
	s, w := cache.NewStore(cache.StoreOptions[*corev1.Pod]{})
	w.Replace([]*corev1.Pod{pod("a", "x", "1"), pod("a", "gone", "1")}, "1")
	r := w.BeginReplace()
	r.Put(pod("a", "x", "2"))
	r.Put(pod("a", "new", "2"))
	if p, _ := s.Get(key("a/x")); p.ResourceVersion != "1" {
		t.Error("a reader saw a relisted object before Finish")
	}
	if _, ok := s.Get(key("a/new")); ok {
		t.Error("a reader saw a new object before Finish")
	}
	if _, ok := s.Get(key("a/gone")); !ok {
		t.Error("a vanished object disappeared before Finish")
	}
	r.Finish("2")
	if got := keysOf(s.List(nil)); !slices.Equal(got, []string{"a/new", "a/x"}) {
		t.Errorf("after Finish: %v", got)
	}
	// An abandoned session has no effect, and the next one still works.
	r = w.BeginReplace()
	r.Put(pod("a", "other", "3"))
	got := changesString(w.Replace([]*corev1.Pod{pod("a", "x", "2")}, "3"))
	if want := []string{"deleted a/new"}; !slices.Equal(got, want) {
		t.Errorf("after abandoned session: %v, want %v", got, want)
	}
}

func TestDefaultTransformStripsManagedFieldsAndLastApplied(t *testing.T) {
	p := pod("a", "x", "1")
	p.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	p.Annotations = map[string]string{cache.LastAppliedAnnotation: "{}", "keep": "me"}
	cache.DefaultTransform(p)
	if p.ManagedFields != nil || len(p.Annotations) != 1 || p.Annotations["keep"] != "me" {
		t.Errorf("after transform: managedFields=%v annotations=%v", p.ManagedFields, p.Annotations)
	}
	p.Annotations = map[string]string{cache.LastAppliedAnnotation: "{}"}
	cache.DefaultTransform(p)
	if p.Annotations != nil {
		t.Errorf("annotations left: %v", p.Annotations)
	}
}

// Unstructured's GetAnnotations returns a copy: deleting from it alone
// would leave the annotation in the object.
func TestDefaultTransformStripsUnstructured(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{
		"name": "a", "namespace": "x",
		"managedFields": []any{map[string]any{"manager": "kubectl"}},
		"annotations":   map[string]any{cache.LastAppliedAnnotation: "{}", "keep": "me"},
	}}}
	cache.DefaultTransform(u)
	if u.GetManagedFields() != nil {
		t.Errorf("managedFields left: %v", u.GetManagedFields())
	}
	if a := u.GetAnnotations(); len(a) != 1 || a["keep"] != "me" {
		t.Errorf("annotations after transform = %v, want only keep=me", a)
	}
	u.SetAnnotations(map[string]string{cache.LastAppliedAnnotation: "{}"})
	cache.DefaultTransform(u)
	if a := u.GetAnnotations(); a != nil {
		t.Errorf("annotations left: %v", a)
	}
}

// TestReplaceMatchesModel drives a store with random upserts, deletes and
// replaces and checks contents, indexes and emitted changes against a naive
// map model.
func TestReplaceMatchesModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for round := range 200 {
		s, w := cache.NewStore(cache.StoreOptions[*corev1.Pod]{Indexes: map[string]cache.IndexFunc[*corev1.Pod]{"app": cache.LabelIndex[*corev1.Pod]("app")}})
		model := map[string]*corev1.Pod{}
		rv := 0
		randPod := func() *corev1.Pod {
			rv++
			return pod(fmt.Sprint("ns", rng.IntN(3)), fmt.Sprint("p", rng.IntN(12)), strconv.Itoa(rv), "app", fmt.Sprint("a", rng.IntN(3)))
		}
		for range 30 {
			switch rng.IntN(4) {
			case 0:
				p := randPod()
				w.Upsert(p)
				model[cache.KeyOf(p).String()] = p
			case 1:
				k := fmt.Sprintf("ns%d/p%d", rng.IntN(3), rng.IntN(12))
				_, ok := w.Delete(key(k))
				if _, inModel := model[k]; ok != inModel {
					t.Fatalf("round %d: Delete(%s) = %v, model has it: %v", round, k, ok, inModel)
				}
				delete(model, k)
			default:
				next := map[string]*corev1.Pod{}
				var list []*corev1.Pod
				for range rng.IntN(20) {
					var p *corev1.Pod
					if old := pickAny(rng, model); old != nil && rng.IntN(2) == 0 {
						p = old.DeepCopy() // unchanged copy
					} else {
						p = randPod()
					}
					list = append(list, p)
					next[cache.KeyOf(p).String()] = p
				}
				var want []string
				for k, old := range model {
					n, ok := next[k]
					switch {
					case !ok:
						want = append(want, "deleted "+k)
					case n.ResourceVersion != old.ResourceVersion:
						want = append(want, "updated "+k+" "+old.ResourceVersion+"->"+n.ResourceVersion)
					}
				}
				for k := range next {
					if _, ok := model[k]; !ok {
						want = append(want, "added "+k)
					}
				}
				sort.Strings(want)
				got := changesString(w.Replace(list, strconv.Itoa(rv)))
				if !slices.Equal(got, want) {
					t.Fatalf("round %d: replace changes %v, want %v", round, got, want)
				}
				model = next
			}
			checkAgainstModel(t, s, model)
		}
	}
}

func pickAny(rng *rand.Rand, m map[string]*corev1.Pod) *corev1.Pod {
	if len(m) == 0 {
		return nil
	}
	i := rng.IntN(len(m))
	for _, p := range m {
		if i == 0 {
			return p
		}
		i--
	}
	return nil
}

func checkAgainstModel(t *testing.T, s *cache.Store[*corev1.Pod], model map[string]*corev1.Pod) {
	t.Helper()
	if s.Len() != len(model) {
		t.Fatalf("len %d, model %d", s.Len(), len(model))
	}
	byApp := map[string][]string{}
	byNS := map[string][]string{}
	for k, want := range model {
		got, ok := s.Get(key(k))
		if !ok || got.ResourceVersion != want.ResourceVersion {
			t.Fatalf("Get(%s) = %v, want rv %s", k, got, want.ResourceVersion)
		}
		byApp[want.Labels["app"]] = append(byApp[want.Labels["app"]], k)
		byNS[want.Namespace] = append(byNS[want.Namespace], k)
	}
	for i := range 3 {
		app, ns := fmt.Sprint("a", i), fmt.Sprint("ns", i)
		slices.Sort(byApp[app])
		slices.Sort(byNS[ns])
		if got := keysOf(s.ByIndex("app", app)); !slices.Equal(got, byApp[app]) && len(got)+len(byApp[app]) > 0 {
			t.Fatalf("index app=%s: %v, want %v", app, got, byApp[app])
		}
		if got := keysOf(s.ByIndex(cache.NamespaceIndex, ns)); !slices.Equal(got, byNS[ns]) && len(got)+len(byNS[ns]) > 0 {
			t.Fatalf("namespace %s: %v, want %v", ns, got, byNS[ns])
		}
	}
}

// key parses "namespace/name" (or "name") for tests.
func key(s string) cache.ObjectKey {
	if ns, name, ok := strings.Cut(s, "/"); ok {
		return cache.ObjectKey{Namespace: ns, Name: name}
	}
	return cache.ObjectKey{Name: s}
}

// Keep marks a key the store holds at the given resourceVersion as part of
// the listing without its object: it stays (the same object), no change is
// reported for it, and a key kept at another resourceVersion is not kept.
// The same in a compact store, which holds bytes.
func TestReplaceSessionKeep(t *testing.T) {
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprint("compact=", compact), func(t *testing.T) {
			var o cache.StoreOptions[*corev1.Pod]
			if compact {
				o.Codec = cache.DefaultCodec[*corev1.Pod]()
			}
			s, w := cache.NewStore(o)
			w.Replace([]*corev1.Pod{pod("a", "kept", "1"), pod("a", "stale", "1"), pod("a", "put-then-kept", "1"), pod("a", "kept-then-put", "1"), pod("a", "gone", "1")}, "1")
			before, _ := s.Get(key("a/kept"))
			r := w.BeginReplace()
			if !r.Keep(key("a/kept"), "1") {
				t.Fatal("Keep of a key held at its resourceVersion returned false")
			}
			if r.Keep(key("a/stale"), "2") || r.Keep(key("a/absent"), "1") || r.Keep(key("a/gone"), "") {
				t.Fatal("Keep returned true for a key not held at that resourceVersion")
			}
			r.Put(pod("a", "put-then-kept", "2"))
			if !r.Keep(key("a/put-then-kept"), "1") {
				t.Fatal("Keep after Put returned false")
			}
			if !r.Keep(key("a/kept-then-put"), "1") {
				t.Fatal("Keep returned false")
			}
			r.Put(pod("a", "kept-then-put", "3"))
			if r.Len() != 5 {
				t.Errorf("Len %d, want 5 (three Keeps and two Puts; refused Keeps do not count)", r.Len())
			}
			got := changesString(r.Finish("5"))
			want := []string{"deleted a/gone", "deleted a/stale", "updated a/kept-then-put 1->3"}
			if !slices.Equal(got, want) {
				t.Fatalf("changes %v, want %v", got, want)
			}
			if got := keysOf(s.List(nil)); !slices.Equal(got, []string{"a/kept", "a/kept-then-put", "a/put-then-kept"}) {
				t.Fatalf("after Finish: %v", got)
			}
			after, _ := s.Get(key("a/kept"))
			if after.ResourceVersion != "1" || (!compact && after != before) {
				t.Errorf("the kept object was replaced: %p@%s, was %p", after, after.ResourceVersion, before)
			}
			if p, _ := s.Get(key("a/put-then-kept")); p.ResourceVersion != "1" {
				t.Errorf("Keep after Put: stored resourceVersion %s, want the kept 1", p.ResourceVersion)
			}
		})
	}
}
