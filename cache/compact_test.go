package cache_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/queue"
)

// compactPod is a pod with the fields the property test varies: labels,
// node name (a custom index), an image and a restart policy.
func compactPod(rng *rand.Rand, ns, name string, rv int) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: fmt.Sprint(rv)},
		Spec: corev1.PodSpec{
			NodeName:      fmt.Sprintf("node-%d", rng.IntN(3)),
			Containers:    []corev1.Container{{Name: "app", Image: fmt.Sprintf("img:%d", rng.IntN(5))}},
			RestartPolicy: corev1.RestartPolicyAlways,
		},
	}
	if n := rng.IntN(4); n > 0 {
		p.Labels = map[string]string{}
		for range n {
			p.Labels[[]string{"app", "tier", "team", "zone"}[rng.IntN(4)]] = []string{"a", "b", "c"}[rng.IntN(3)]
		}
	}
	return p
}

var compactIndexes = map[string]cache.IndexFunc[*corev1.Pod]{
	"node": func(p *corev1.Pod) []string { return []string{p.Spec.NodeName} },
	"team": cache.LabelIndex[*corev1.Pod]("team"),
	// Several values per object, none for some.
	"labelkeys": func(p *corev1.Pod) []string {
		var ks []string
		for k := range p.Labels {
			ks = append(ks, k)
		}
		return ks
	},
}

// canonical is an object's identity and content for comparing stores.
func canonical(t *testing.T, objs []*corev1.Pod) []string {
	t.Helper()
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		if o == nil {
			t.Fatal("nil object in a read")
		}
		out = append(out, fmt.Sprintf("%s rv=%s labels=%v node=%s image=%s", cache.KeyOf(o), o.ResourceVersion, o.Labels, o.Spec.NodeName, o.Spec.Containers[0].Image))
	}
	slices.Sort(out)
	return out
}

// TestCompactStoreMatchesStore applies one random sequence of upserts,
// deletes and replaces to a plain store and a compact one, and checks that
// every write reports the same changes and every read gives the same
// objects.
func TestCompactStoreMatchesStore(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	plain, pw := cache.NewStore(cache.StoreOptions[*corev1.Pod]{Indexes: compactIndexes})
	compact, cw := cache.NewStore(cache.StoreOptions[*corev1.Pod]{Indexes: compactIndexes, Codec: cache.DefaultCodec[*corev1.Pod](),
		OnCodecError: func(k cache.ObjectKey, err error) { t.Errorf("codec error for %v: %v", k, err) }})
	if plain.Compact() || !compact.Compact() {
		t.Fatal("Compact() is wrong")
	}
	rv := 0
	name := func() (string, string) {
		return []string{"a", "b", ""}[rng.IntN(3)], fmt.Sprintf("p%d", rng.IntN(12))
	}
	sameChange := func(step int, what string, pc, cc []cache.Change[*corev1.Pod]) {
		t.Helper()
		if len(pc) != len(cc) {
			t.Fatalf("step %d %s: %d changes vs %d", step, what, len(pc), len(cc))
		}
		byKey := map[cache.ObjectKey]cache.Change[*corev1.Pod]{}
		for _, c := range cc {
			byKey[c.Key] = c
		}
		for _, p := range pc {
			c, ok := byKey[p.Key]
			if !ok || c.Type != p.Type {
				t.Fatalf("step %d %s: plain %v %v, compact %v", step, what, p.Type, p.Key, c.Type)
			}
			for _, pair := range [][2]*corev1.Pod{{p.Old, c.Old}, {p.New, c.New}} {
				if (pair[0] == nil) != (pair[1] == nil) || pair[0] != nil && !equality.Semantic.DeepEqual(pair[0], pair[1]) {
					t.Fatalf("step %d %s %v: objects differ:\n%v\n%v", step, what, p.Key, pair[0], pair[1])
				}
			}
		}
	}
	for step := range 400 {
		switch op := rng.IntN(10); {
		case op < 6:
			ns, n := name()
			rv++
			p := compactPod(rng, ns, n, rv)
			if rng.IntN(8) == 0 { // the same resourceVersion again: no change
				if old, ok := plain.Get(cache.ObjectKey{Namespace: ns, Name: n}); ok {
					p.ResourceVersion = old.ResourceVersion
				}
			}
			po, pe, pch := pw.Upsert(p.DeepCopy())
			co, ce, cch := cw.Upsert(p.DeepCopy())
			if pe != ce || pch != cch {
				t.Fatalf("step %d upsert %s/%s: plain existed=%v changed=%v, compact %v %v", step, ns, n, pe, pch, ce, cch)
			}
			if pe {
				sameChange(step, "upsert", []cache.Change[*corev1.Pod]{{Type: cache.Updated, Key: cache.KeyOf(p), Old: po}}, []cache.Change[*corev1.Pod]{{Type: cache.Updated, Key: cache.KeyOf(p), Old: co}})
			}
		case op < 8:
			ns, n := name()
			po, pok := pw.Delete(cache.ObjectKey{Namespace: ns, Name: n})
			co, cok := cw.Delete(cache.ObjectKey{Namespace: ns, Name: n})
			if pok != cok || pok && !equality.Semantic.DeepEqual(po, co) {
				t.Fatalf("step %d delete %s/%s: plain %v %v, compact %v %v", step, ns, n, pok, po, cok, co)
			}
		default:
			// A relist: keep some objects, change some, drop some, add some.
			var objs []*corev1.Pod
			for _, o := range plain.List(nil) {
				switch rng.IntN(3) {
				case 0:
					objs = append(objs, o.DeepCopy())
				case 1:
					rv++
					objs = append(objs, compactPod(rng, o.Namespace, o.Name, rv))
				}
			}
			for range rng.IntN(4) {
				ns, n := name()
				rv++
				objs = append(objs, compactPod(rng, ns, n, rv))
			}
			ps, cs := pw.BeginReplace(), cw.BeginReplace()
			for _, o := range objs {
				ps.Put(o.DeepCopy())
				cs.Put(o.DeepCopy())
			}
			sameChange(step, "replace", ps.Finish(fmt.Sprint(rv)), cs.Finish(fmt.Sprint(rv)))
		}
		checkSameReads(t, step, rng, plain, compact)
	}
}

func checkSameReads(t *testing.T, step int, rng *rand.Rand, plain, compact *cache.Store[*corev1.Pod]) {
	t.Helper()
	if p, c := plain.Len(), compact.Len(); p != c {
		t.Fatalf("step %d: Len %d vs %d", step, p, c)
	}
	for _, k := range plain.Keys() {
		po, _ := plain.Get(k)
		co, ok, err := compact.Load(k)
		if !ok || err != nil || !equality.Semantic.DeepEqual(po, co) {
			t.Fatalf("step %d: Get %v: plain %v, compact %v ok=%v err=%v", step, k, po, co, ok, err)
		}
		if co == po {
			t.Fatalf("step %d: compact Get %v handed out the stored object", step, k)
		}
	}
	if _, ok := compact.Get(cache.ObjectKey{Namespace: "zz", Name: "none"}); ok {
		t.Fatalf("step %d: Get of a missing key found something", step)
	}
	sels := []string{"", "app=a", "team", "!zone", "app in (a,b),tier!=c", "team=b,zone=a"}
	sel, err := labels.Parse(sels[rng.IntN(len(sels))])
	if err != nil {
		t.Fatal(err)
	}
	cl, err := compact.LoadList(sel)
	if err != nil {
		t.Fatalf("step %d: LoadList: %v", step, err)
	}
	if p, c := canonical(t, plain.List(sel)), canonical(t, cl); !slices.Equal(p, c) {
		t.Fatalf("step %d: List(%v):\nplain   %v\ncompact %v", step, sel, p, c)
	}
	for _, name := range []string{cache.NamespaceIndex, "node", "team", "labelkeys"} {
		pv, cv := plain.IndexValues(name), compact.IndexValues(name)
		slices.Sort(pv)
		slices.Sort(cv)
		if !slices.Equal(pv, cv) {
			t.Fatalf("step %d: IndexValues(%s): %v vs %v", step, name, pv, cv)
		}
		for _, v := range append(pv, "absent") {
			if p, c := canonical(t, plain.ByIndex(name, v)), canonical(t, compact.ByIndex(name, v)); !slices.Equal(p, c) {
				t.Fatalf("step %d: ByIndex(%s, %s):\nplain   %v\ncompact %v", step, name, v, p, c)
			}
		}
	}
}

// TestCompactReadsAreOwnedByTheCaller: changing an object a compact store
// handed out changes neither the store nor later reads.
func TestCompactReadsAreOwnedByTheCaller(t *testing.T) {
	s, w := cache.NewStore(cache.StoreOptions[*corev1.Pod]{Codec: cache.DefaultCodec[*corev1.Pod]()})
	w.Upsert(pod("a", "p", "1", "app", "web"))
	got, _ := s.Get(key("a/p"))
	got.Labels["app"] = "changed"
	got.Name = "other"
	again, ok := s.Get(key("a/p"))
	if !ok || again.Labels["app"] != "web" || again.Name != "p" {
		t.Fatalf("store changed through a read: %v", again)
	}
	if objs := s.List(labels.SelectorFromSet(labels.Set{"app": "web"})); len(objs) != 1 {
		t.Fatalf("selector on stored labels found %d objects", len(objs))
	}
}

// flakyCodec fails to decode objects whose bytes contain "bad" and to
// encode objects named "unencodable".
type flakyCodec struct {
	cache.ProtobufCodec[*corev1.Pod]
}

func (c flakyCodec) Append(dst []byte, p *corev1.Pod) ([]byte, error) {
	if p.Name == "unencodable" {
		return dst, errors.New("cannot encode this one")
	}
	return c.ProtobufCodec.Append(dst, p)
}

func (c flakyCodec) Decode(data []byte) (*corev1.Pod, error) {
	if strings.Contains(string(data), "bad") {
		return nil, errors.New("corrupt bytes")
	}
	return c.ProtobufCodec.Decode(data)
}

func TestCompactCodecErrorsAreReported(t *testing.T) {
	var reported []string
	s, w := cache.NewStore(cache.StoreOptions[*corev1.Pod]{Codec: flakyCodec{}, OnCodecError: func(k cache.ObjectKey, err error) {
		reported = append(reported, k.String()+": "+err.Error())
	}})
	w.Upsert(pod("a", "good", "1", "app", "web"))
	w.Upsert(pod("a", "bad", "2", "app", "web"))
	w.Upsert(pod("a", "unencodable", "3", "app", "web"))
	if len(reported) != 1 || !strings.Contains(reported[0], "a/unencodable") || !strings.Contains(reported[0], "encode") {
		t.Fatalf("encode error reported as %q", reported)
	}

	_, ok, err := s.Load(key("a/bad"))
	if !ok || err == nil || !strings.Contains(err.Error(), "a/bad") || !strings.Contains(err.Error(), "corrupt bytes") {
		t.Fatalf("Load of undecodable: ok=%v err=%v; want the key and the cause", ok, err)
	}
	if _, ok := s.Get(key("a/bad")); ok {
		t.Fatal("Get of an undecodable object reported it present")
	}
	objs, err := s.LoadList(nil)
	if err == nil || !strings.Contains(err.Error(), "1 of 3 objects") {
		t.Fatalf("LoadList error %v; want one of three failed", err)
	}
	if got := keysOf(objs); !slices.Equal(got, []string{"a/good", "a/unencodable"}) {
		t.Fatalf("LoadList returned %v", got)
	}
	if got := keysOf(s.ByIndex(cache.NamespaceIndex, "a")); !slices.Equal(got, []string{"a/good", "a/unencodable"}) {
		t.Fatalf("ByIndex returned %v", got)
	}
	if n := len(reported); n < 4 {
		t.Fatalf("decode errors reported %d times, want one per failed read: %q", n, reported)
	}

	// The object kept decoded is still handed out as the caller's copy.
	u1, _ := s.Get(key("a/unencodable"))
	u1.Labels["app"] = "changed"
	if u2, _ := s.Get(key("a/unencodable")); u2.Labels["app"] != "web" {
		t.Fatal("the object kept decoded was handed out shared")
	}
	// Deleting the undecodable object reports its key and still removes it.
	if _, ok := w.Delete(key("a/bad")); !ok || s.Len() != 2 {
		t.Fatalf("delete of an undecodable object: ok=%v len=%d", ok, s.Len())
	}
}

func TestJSONCodecUnstructured(t *testing.T) {
	c := cache.DefaultCodec[*unstructured.Unstructured]()
	if _, ok := c.(cache.JSONCodec[*unstructured.Unstructured]); !ok {
		t.Fatalf("default codec of Unstructured is %T", c)
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "demo.skiff.dev/v1", "kind": "Foo",
		"metadata": map[string]any{"name": "f", "namespace": "n", "labels": map[string]any{"a": "b"}},
		"spec":     map[string]any{"replicas": int64(3), "tags": []any{"x", "y"}},
	}}
	b, err := c.Append(nil, u)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(u.Object, got.Object) {
		t.Fatalf("round trip:\n%v\n%v", u.Object, got.Object)
	}
	if _, err := c.Decode([]byte(`{"kind":`)); err == nil || !strings.Contains(err.Error(), "JSON") {
		t.Fatalf("decode of truncated JSON: %v", err)
	}
	if _, err := cache.DefaultCodec[*corev1.Pod]().Decode([]byte{0xff, 0xff}); err == nil || !strings.Contains(err.Error(), "protobuf") {
		t.Fatalf("decode of garbage protobuf: %v", err)
	}
}

// A compact informer: key handlers get keys, event handlers get the
// object from the watch as New and the one decoded from the cache as Old,
// and the Lister hands out fresh copies, with indexes and selectors
// answered from what was extracted at insert.
func TestCompactInformer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		w := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{Compact: true,
			Indexes: map[string]cache.IndexFunc[*corev1.Pod]{"app": cache.LabelIndex[*corev1.Pod]("app")}})
		q := queue.New(queue.Options[cache.ObjectKey]{})
		inf.AddKeyHandler(q, cache.KeyHandlerOptions{})
		var mu sync.Mutex
		var events []string
		inf.AddEventHandler(cache.EventHandler[*corev1.Pod]{
			OnAdd: func(p *corev1.Pod) {
				mu.Lock()
				events = append(events, "add "+p.Name+" "+p.Labels["app"])
				mu.Unlock()
			},
			OnUpdate: func(old, new *corev1.Pod) {
				mu.Lock()
				events = append(events, "update "+new.Name+" "+old.Labels["app"]+"->"+new.Labels["app"])
				mu.Unlock()
			},
			OnDelete: func(old *corev1.Pod) {
				mu.Lock()
				events = append(events, "delete "+old.Name+" "+old.Labels["app"])
				mu.Unlock()
			},
		}, cache.EventHandlerOptions{})
		defer run(t, inf)()
		// Each change is delivered before the next is sent: changes that
		// arrive together may be merged for the handler (per-key backlog),
		// and this test checks each one's decoded old and new objects.
		w.Add(pod("a", "x", "1", "app", "web"))
		w.Action("BOOKMARK", bookmark("2", true))
		synctest.Wait()
		w.Add(pod("a", "y", "3", "app", "db"))
		synctest.Wait()
		w.Modify(pod("a", "x", "4", "app", "api"))
		synctest.Wait()
		w.Delete(pod("a", "y", "5", "app", "db"))
		synctest.Wait()
		if !inf.Lister().Compact() {
			t.Fatal("Lister().Compact() false for a compact informer")
		}
		if got := drain(q); !slices.Equal(got, []string{"a/x", "a/y"}) {
			t.Fatalf("keys %v", got)
		}
		mu.Lock()
		got := slices.Clone(events)
		mu.Unlock()
		want := []string{"add x web", "add y db", "update x web->api", "delete y db"}
		if !slices.Equal(got, want) {
			t.Fatalf("events %q, want %q", got, want)
		}
		l := inf.Lister()
		a, ok := l.Get("a", "x")
		b, _ := l.Get("a", "x")
		if !ok || a == b || a.Labels["app"] != "api" || a.ResourceVersion != "4" {
			t.Fatalf("Get: %v %v (same object twice: %v)", a, ok, a == b)
		}
		if got := keysOf(l.ByIndex("app", "api")); !slices.Equal(got, []string{"a/x"}) {
			t.Fatalf("ByIndex(app, api) = %v", got)
		}
		if got := keysOf(l.ListInNamespace("a", labels.SelectorFromSet(labels.Set{"app": "api"}))); !slices.Equal(got, []string{"a/x"}) {
			t.Fatalf("ListInNamespace = %v", got)
		}
		if got, err := l.LoadListInNamespace("a", labels.SelectorFromSet(labels.Set{"app": "web"})); err != nil || len(got) != 0 {
			t.Fatalf("LoadListInNamespace(app=web) = %v, %v", keysOf(got), err)
		}
	})
}
