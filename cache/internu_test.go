package cache

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "sigs.k8s.io/json"
)

// unstructuredFoo is custom resource i as the API server serves it:
// labels and annotations repeat across objects (one set per app), name,
// UID and resourceVersion are unique, and so is the spec (its message
// names the object). Its metadata has eight members, a full map group
// (see groupFull).
func unstructuredFoo(t testing.TB, i int) *unstructured.Unstructured {
	t.Helper()
	app := fmt.Sprintf("svc-%d", i%3)
	b := fmt.Appendf(nil, `{"apiVersion":"demo.skiff.dev/v1","kind":"Foo",
		"metadata":{"name":"%[1]s-foo-%[2]d","namespace":"bench","uid":"uid-%[2]d","resourceVersion":"%[3]d",
			"creationTimestamp":"2026-11-26T10:00:00Z",
			"labels":{"app":"%[1]s","team":"t1","tier":"web"},
			"annotations":{"owner":"%[1]s@example.com"},
			"ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":"%[1]s","uid":"dep-%[1]s","controller":true}]},
		"spec":{"message":"foo %[2]d","replicas":3,"ratio":0.5,"ports":[80,443],"template":{"image":"%[1]s:1.0","args":["--v=2"]},"none":null}}`,
		app, i, 1000+i)
	var m map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(b, &m); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

// jsonOf is v's JSON, which tells 0 and -0 apart (reflect.DeepEqual does
// not).
func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInternUnstructuredKeepsObjectsEqual(t *testing.T) {
	in := newInterner()
	for i := range 20 {
		u := unstructuredFoo(t, i)
		if n := len(u.Object["metadata"].(map[string]any)); n != groupSlots {
			t.Fatalf("the fixture's metadata has %d members, want %d (a full group)", n, groupSlots)
		}
		want := u.DeepCopy()
		in.object(u, false)
		if !reflect.DeepEqual(u.Object, want.Object) || jsonOf(t, u.Object) != jsonOf(t, want.Object) {
			t.Fatalf("object %d changed by interning:\n got %s\nwant %s", i, jsonOf(t, u.Object), jsonOf(t, want.Object))
		}
		// Still what unstructured's helpers and DeepCopy accept.
		if u.GetName() != want.GetName() || u.GetLabels()["app"] != fmt.Sprintf("svc-%d", i%3) || u.DeepCopy() == nil {
			t.Fatalf("object %d: helpers read %q %v", i, u.GetName(), u.GetLabels())
		}
	}
}

func TestInternUnstructuredShares(t *testing.T) {
	in := newInterner()
	var us []*unstructured.Unstructured
	for i := range 9 {
		u := unstructuredFoo(t, i)
		in.object(u, false)
		us = append(us, u)
	}
	labels := func(u *unstructured.Unstructured) map[string]any {
		return u.Object["metadata"].(map[string]any)["labels"].(map[string]any)
	}
	owners := func(u *unstructured.Unstructured) []any {
		return u.Object["metadata"].(map[string]any)["ownerReferences"].([]any)
	}
	template := func(u *unstructured.Unstructured) map[string]any {
		return u.Object["spec"].(map[string]any)["template"].(map[string]any)
	}
	// Objects 0, 3 and 6 have the same labels: the first is only seen,
	// the second kept, the third gets the second's.
	if mapPointer(labels(us[6])) != mapPointer(labels(us[3])) || mapPointer(template(us[6])) != mapPointer(template(us[3])) {
		t.Error("equal labels or spec templates of objects 3 and 6 are not one map")
	}
	if &owners(us[6])[0] != &owners(us[3])[0] || cap(owners(us[6])) != len(owners(us[6])) {
		t.Error("equal owner references of objects 3 and 6 are not one clipped slice")
	}
	if mapPointer(labels(us[6])) == mapPointer(labels(us[4])) {
		t.Error("different labels share a map")
	}
	// Unique parts are not shared, nor kept in the tables.
	if mapPointer(us[6].Object["spec"].(map[string]any)) == mapPointer(us[3].Object["spec"].(map[string]any)) {
		t.Error("specs with different messages share a map")
	}
	// Per app: labels, annotations, the owner reference and its slice,
	// the template; for all: the ports and the template's args.
	if in.nmaps != 3*5+2 {
		t.Errorf("tables hold %d subtrees after 9 objects with 17 repeating ones: unique ones are kept, or repeating ones lost", in.nmaps)
	}
	// Strings: keys and short values share their bytes, values their box.
	md3, md6 := us[3].Object["metadata"].(map[string]any), us[6].Object["metadata"].(map[string]any)
	if !same(mapKey(md3, "namespace"), mapKey(md6, "namespace")) {
		t.Error("metadata keys are not interned")
	}
	ns3, ns6 := md3["namespace"], md6["namespace"]
	if (*[2]uintptr)(unsafeEface(&ns3))[1] != (*[2]uintptr)(unsafeEface(&ns6))[1] {
		t.Error("equal namespaces are boxed twice")
	}
	if _, ok := in.boxes["uid-6"]; ok {
		t.Error("a UID was interned; names, UIDs and resourceVersions are unique per object")
	}
}

func TestInternUnstructuredKeepsTypesApart(t *testing.T) {
	in := newInterner()
	for _, tc := range [][2]string{
		{`{"spec":{"a":{"v":1}}}`, `{"spec":{"a":{"v":1.0}}}`},
		{`{"spec":{"a":{"v":0.0}}}`, `{"spec":{"a":{"v":-0.0}}}`},
		{`{"spec":{"a":{"v":"1"}}}`, `{"spec":{"a":{"v":1}}}`},
		{`{"spec":{"a":{"v":[]}}}`, `{"spec":{"a":{"v":{}}}}`},
		{`{"spec":{"a":{"v":null}}}`, `{"spec":{"a":{"v":false}}}`},
	} {
		var objs []*unstructured.Unstructured
		for _, s := range []string{tc[0], tc[0], tc[1], tc[1]} {
			var m map[string]any
			if err := kjson.UnmarshalCaseSensitivePreserveInts([]byte(s), &m); err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{Object: m}
			in.object(u, false)
			objs = append(objs, u)
		}
		for k, want := range []string{tc[0], tc[0], tc[1], tc[1]} {
			var w map[string]any
			_ = kjson.UnmarshalCaseSensitivePreserveInts([]byte(want), &w)
			if got := jsonOf(t, objs[k].Object); got != jsonOf(t, w) || !reflect.DeepEqual(objs[k].Object, w) {
				t.Errorf("%s after interning %s: got %s", want, tc[0], got)
			}
		}
	}
}

// TestInternUnstructuredKeepsNilApart: a Transform may leave typed nil
// maps and slices (unstructured.SetNestedSlice(obj, nil, ...) does); they
// must not be shared with empty ones, nor empty ones with them.
func TestInternUnstructuredKeepsNilApart(t *testing.T) {
	for _, order := range [][2]any{
		{[]any(nil), []any{}}, {[]any{}, []any(nil)},
		{map[string]any(nil), map[string]any{}}, {map[string]any{}, map[string]any(nil)},
	} {
		in := newInterner()
		var objs []*unstructured.Unstructured
		for k := range 6 {
			u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"x": order[k%2]}}}
			in.object(u, false)
			objs = append(objs, u)
		}
		for k, u := range objs {
			got := u.Object["spec"].(map[string]any)["x"]
			if reflect.ValueOf(got).IsNil() != reflect.ValueOf(order[k%2]).IsNil() {
				t.Errorf("object %d: %#v became %#v", k, order[k%2], got)
			}
		}
	}
}

// TestInternUnstructuredBudget: kept subtrees are bounded in bytes, and a
// subtree over treeMaxSize is not kept (its parts are).
func TestInternUnstructuredBudget(t *testing.T) {
	in := newInterner()
	filler := strings.Repeat("x", 100)
	for i := range 40000 {
		// Each spec is seen twice in a row, so the doorkeeper lets it in.
		m := map[string]any{"spec": map[string]any{"i": int64(i / 2), "a": filler, "b": filler + "b", "c": filler + "c"}}
		in.object(&unstructured.Unstructured{Object: m}, false)
		if in.treeBytes > treeBudget {
			t.Fatalf("after %d objects the kept subtrees take %d bytes, over the %d budget", i, in.treeBytes, treeBudget)
		}
	}
	if in.nmaps == 0 || in.nmaps >= 20000 {
		t.Errorf("%d subtrees kept of 20000 distinct ones seen twice: want some, and fewer than all (the budget)", in.nmaps)
	}
	big := map[string]any{}
	for k := range 30 {
		big[fmt.Sprint("k", k)] = strings.Repeat("y", 200)
	}
	for range 3 {
		in.object(&unstructured.Unstructured{Object: map[string]any{"spec": maps.Clone(big)}}, false)
	}
	for _, c := range in.maps {
		for _, v := range c {
			if m, ok := v.(map[string]any); ok && len(m) == 30 {
				t.Fatalf("a subtree of %d bytes was kept (limit %d)", 30*(32+16+200), treeMaxSize)
			}
		}
	}
}

// TestInternKeepsFullGroupsSmall: Go keeps a map of up to groupSlots
// entries in one group, and writing to a full one, even to a key it has,
// grows it into a table twice the size. Interning such a map (labels, an
// unstructured object's metadata) must not.
func TestInternKeepsFullGroupsSmall(t *testing.T) {
	heapOf := func(build func(i int) any) float64 {
		const n = 2000
		keep := make([]any, n)
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		for i := range keep {
			keep[i] = build(i)
		}
		runtime.GC()
		runtime.ReadMemStats(&m1)
		runtime.KeepAlive(keep)
		return float64(m1.HeapAlloc-m0.HeapAlloc) / n
	}
	in := newInterner()
	// Unique values, so nothing is shared and only the map's own size
	// (and its keys, which interning frees) counts.
	labels := func(i int) map[string]string {
		m := map[string]string{}
		for k := range groupSlots {
			m[fmt.Sprint("key-", k)] = fmt.Sprint(i)
		}
		return m
	}
	fields := func(i int) map[string]any {
		m := map[string]any{}
		for k := range groupSlots {
			m[fmt.Sprint("key-", k)] = int64(i) // never boxed below 256, and equal within one map
		}
		return m
	}
	for _, tc := range []struct {
		name          string
		plain, intern func(i int) any
	}{
		{"labels", func(i int) any { return labels(i) }, func(i int) any {
			in.mu.Lock()
			defer in.mu.Unlock()
			return in.strMap(labels(i))
		}},
		{"unstructured", func(i int) any { return fields(i % 200) }, func(i int) any {
			in.mu.Lock()
			defer in.mu.Unlock()
			return in.unstructured(fields(i % 200))
		}},
	} {
		plain, interned := heapOf(tc.plain), heapOf(tc.intern)
		t.Logf("%s: a map of %d entries takes %.0f bytes decoded, %.0f interned", tc.name, groupSlots, plain, interned)
		if interned > plain+32 {
			t.Errorf("%s: interning grew a map of %d entries from %.0f to %.0f bytes", tc.name, groupSlots, plain, interned)
		}
	}
}

// unsafeEface is the two words of the interface at p.
func unsafeEface(p *any) *[2]uintptr { return (*[2]uintptr)(unsafe.Pointer(p)) }

// FuzzInternUnstructured: interning any JSON object, alone or after others
// whose subtrees it may share, leaves it equal to its decode.
func FuzzInternUnstructured(f *testing.F) {
	for _, s := range []string{
		`{"metadata":{"name":"a","labels":{"x":"1"}},"spec":{"a":[1,2.5,"s",null,true,{"b":-0.0}]}}`,
		`{"metadata":{"name":"b","labels":{"x":"1"}},"spec":{"a":[1,2.5,"s",null,true,{"b":0}]}}`,
		`{"a":{"b":{"c":{}}},"d":[[],[{}]],"e":1e300,"f":-9223372036854775808}`,
		`{"k0":1,"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1}`,
	} {
		f.Add([]byte(s), []byte(`{"metadata":{"labels":{"x":"1"}},"spec":{"a":[1,2.5,"s",null,true,{"b":0}]}}`))
	}
	f.Fuzz(func(t *testing.T, a, b []byte) {
		in := newInterner()
		var objs, wants []map[string]any
		for _, doc := range [][]byte{a, b, a, b, a} {
			var m, w map[string]any
			if kjson.UnmarshalCaseSensitivePreserveInts(doc, &m) != nil || m == nil {
				return
			}
			_ = kjson.UnmarshalCaseSensitivePreserveInts(doc, &w)
			u := &unstructured.Unstructured{Object: m}
			in.object(u, false)
			objs, wants = append(objs, u.Object), append(wants, w)
		}
		for k := range objs {
			if !reflect.DeepEqual(objs[k], wants[k]) || jsonOf(t, objs[k]) != jsonOf(t, wants[k]) {
				t.Fatalf("object %d after interning: %s, want %s", k, jsonOf(t, objs[k]), jsonOf(t, wants[k]))
			}
		}
	})
}
