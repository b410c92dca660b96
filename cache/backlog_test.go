package cache

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// bpod is a test object: life tells apart objects that had the same key
// (a delete and a create again), rv its versions.
func bpod(name string, life, rv int) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Namespace: "ns", Name: name, ResourceVersion: strconv.Itoa(rv), UID: types.UID("life-" + strconv.Itoa(life)),
	}}
}

func bkey(name string) ObjectKey { return ObjectKey{Namespace: "ns", Name: name} }

func show(cs []Change[*corev1.Pod]) string {
	var s string
	for _, c := range cs {
		switch c.Type {
		case Added:
			s += fmt.Sprintf("add@%s ", c.New.ResourceVersion)
		case Updated:
			s += fmt.Sprintf("update@%s->%s ", c.Old.ResourceVersion, c.New.ResourceVersion)
		case Deleted:
			s += fmt.Sprintf("delete@%s ", c.Old.ResourceVersion)
		}
	}
	return s
}

// What one key's changes merge into while it waits.
func TestBacklogMergesPerKey(t *testing.T) {
	p := func(life, rv int) *corev1.Pod { return bpod("x", life, rv) }
	add := func(n *corev1.Pod) Change[*corev1.Pod] {
		return Change[*corev1.Pod]{Type: Added, Key: bkey("x"), New: n}
	}
	upd := func(o, n *corev1.Pod) Change[*corev1.Pod] {
		return Change[*corev1.Pod]{Type: Updated, Key: bkey("x"), Old: o, New: n}
	}
	del := func(o *corev1.Pod) Change[*corev1.Pod] {
		return Change[*corev1.Pod]{Type: Deleted, Key: bkey("x"), Old: o}
	}
	cases := []struct {
		name    string
		changes []Change[*corev1.Pod]
		want    string
	}{
		{"add", []Change[*corev1.Pod]{add(p(1, 1))}, "add@1 "},
		{"add, updates", []Change[*corev1.Pod]{add(p(1, 1)), upd(p(1, 1), p(1, 2)), upd(p(1, 2), p(1, 3))}, "add@3 "},
		{"add, delete", []Change[*corev1.Pod]{add(p(1, 1)), del(p(1, 1))}, ""},
		{"updates", []Change[*corev1.Pod]{upd(p(1, 1), p(1, 2)), upd(p(1, 2), p(1, 3))}, "update@1->3 "},
		{"update, delete", []Change[*corev1.Pod]{upd(p(1, 1), p(1, 2)), del(p(1, 2))}, "delete@2 "},
		{"delete", []Change[*corev1.Pod]{del(p(1, 1))}, "delete@1 "},
		{"delete, add", []Change[*corev1.Pod]{del(p(1, 1)), add(p(2, 2))}, "delete@1 add@2 "},
		{"update, delete, add, update", []Change[*corev1.Pod]{upd(p(1, 1), p(1, 2)), del(p(1, 2)), add(p(2, 3)), upd(p(2, 3), p(2, 4))}, "delete@2 add@4 "},
		{"delete, add, delete", []Change[*corev1.Pod]{del(p(1, 1)), add(p(2, 2)), del(p(2, 2))}, "delete@1 "},
		{"add, delete, add", []Change[*corev1.Pod]{add(p(1, 1)), del(p(1, 1)), add(p(2, 2))}, "add@2 "},
	}
	for _, tc := range cases {
		var b backlog[*corev1.Pod]
		for i, c := range tc.changes {
			if merged := b.push(c); merged != (i > 0) {
				t.Errorf("%s: push %d merged=%v", tc.name, i, merged)
			}
		}
		got, marker, ok := b.pop(nil)
		if !ok || marker || show(got) != tc.want {
			t.Errorf("%s: pop = %q marker=%v ok=%v, want %q", tc.name, show(got), marker, ok, tc.want)
		}
		if _, _, ok := b.pop(nil); ok || b.keys() != 0 || b.slots() != 0 {
			t.Errorf("%s: backlog not empty after one pop: keys %d slots %d", tc.name, b.keys(), b.slots())
		}
	}
}

// Keys come out in the order they first waited; a marker keeps its place.
func TestBacklogOrder(t *testing.T) {
	var b backlog[*corev1.Pod]
	b.push(Change[*corev1.Pod]{Type: Added, Key: bkey("a"), New: bpod("a", 1, 1)})
	b.push(Change[*corev1.Pod]{Type: Added, Key: bkey("b"), New: bpod("b", 1, 2)})
	b.pushMarker()
	b.push(Change[*corev1.Pod]{Type: Updated, Key: bkey("a"), Old: bpod("a", 1, 1), New: bpod("a", 1, 3)})
	b.push(Change[*corev1.Pod]{Type: Added, Key: bkey("c"), New: bpod("c", 1, 4)})
	var got []string
	for {
		cs, marker, ok := b.pop(nil)
		if !ok {
			break
		}
		if marker {
			got = append(got, "marker")
			continue
		}
		got = append(got, cs[0].Key.Name+":"+show(cs))
	}
	want := fmt.Sprint([]string{"a:add@3 ", "b:add@2 ", "marker", "c:add@4 "})
	if fmt.Sprint(got) != want {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// Property: for random change streams over a few keys (as a store emits
// them) with pops interleaved at random, a handler that applies what pop
// returns
//   - never sees a change that does not fit what it knew (an add of a key
//     it has, an update or delete of one it lacks, an update whose old is
//     not its object, an update joining two lives of a key, a delete whose
//     old is another life than the one it knew);
//   - ends, once the backlog is drained, with exactly the store's state
//     (no key lost, every key at its last version);
//   - and the backlog never holds more slots than keys (plus markers),
//     however many changes were pushed.
func TestBacklogProperty(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for round := range 300 {
		nKeys := 1 + rng.IntN(8)
		store := map[string]*corev1.Pod{}
		handler := map[string]*corev1.Pod{}
		var b backlog[*corev1.Pod]
		rv, life, markers := 0, 0, 0
		apply := func() bool {
			cs, marker, ok := b.pop(nil)
			if !ok {
				return false
			}
			if marker {
				markers--
				return true
			}
			for _, c := range cs {
				k := c.Key.Name
				have, known := handler[k]
				switch c.Type {
				case Added:
					if known {
						t.Fatalf("round %d: add of %s@%s, handler has @%s", round, k, c.New.ResourceVersion, have.ResourceVersion)
					}
					handler[k] = c.New
				case Updated:
					if !known || have != c.Old || c.Old.UID != c.New.UID {
						t.Fatalf("round %d: update of %s %s->%s does not fit what the handler knew (%v)", round, k, c.Old.ResourceVersion, c.New.ResourceVersion, have)
					}
					handler[k] = c.New
				case Deleted:
					if !known || have.UID != c.Old.UID {
						t.Fatalf("round %d: delete of %s (life %s) does not fit what the handler knew (%v)", round, k, c.Old.UID, have)
					}
					delete(handler, k)
				}
			}
			return true
		}
		for range rng.IntN(400) {
			if rng.IntN(3) == 0 {
				apply()
				continue
			}
			if rng.IntN(50) == 0 {
				b.pushMarker()
				markers++
				continue
			}
			k := fmt.Sprint("k", rng.IntN(nKeys))
			rv++
			old, exists := store[k]
			var c Change[*corev1.Pod]
			switch {
			case !exists:
				life++
				store[k] = bpod(k, life, rv)
				c = Change[*corev1.Pod]{Type: Added, Key: bkey(k), New: store[k]}
			case rng.IntN(4) == 0:
				delete(store, k)
				c = Change[*corev1.Pod]{Type: Deleted, Key: bkey(k), Old: old}
			default:
				n := bpod(k, 0, rv)
				n.UID = old.UID
				store[k] = n
				c = Change[*corev1.Pod]{Type: Updated, Key: bkey(k), Old: old, New: n}
			}
			b.push(c)
			if b.slots() > b.keys()+markers || b.keys() > nKeys {
				t.Fatalf("round %d: %d slots for %d keys and %d markers (%d possible keys)", round, b.slots(), b.keys(), markers, nKeys)
			}
		}
		for apply() {
		}
		if len(handler) != len(store) {
			t.Fatalf("round %d: handler has %d keys, store %d", round, len(handler), len(store))
		}
		for k, o := range store {
			if handler[k] != o {
				t.Fatalf("round %d: handler has %s at %v, store at @%s", round, k, handler[k], o.ResourceVersion)
			}
		}
	}
}

// Memory stays bounded by the keys, not the changes: 200,000 changes to
// ten keys leave at most ten slots waiting, and the slot slice does not
// grow without bound while pops go on.
func TestBacklogBoundedByKeys(t *testing.T) {
	var b backlog[*corev1.Pod]
	objs := make([]*corev1.Pod, 10)
	for i := range objs {
		objs[i] = bpod(fmt.Sprint("k", i), 1, 0)
		b.push(Change[*corev1.Pod]{Type: Added, Key: KeyOf(objs[i]), New: objs[i]})
	}
	maxCap := 0
	for i := range 200_000 {
		o := objs[i%10]
		n := bpod(o.Name, 1, i+1)
		b.push(Change[*corev1.Pod]{Type: Updated, Key: KeyOf(o), Old: o, New: n})
		objs[i%10] = n
		if i%3 == 0 {
			b.pop(nil)
		}
		if b.slots() > 10 || b.keys() > 10 {
			t.Fatalf("after %d changes: %d slots, %d keys waiting; want at most 10", i, b.slots(), b.keys())
		}
		maxCap = max(maxCap, cap(b.order))
	}
	if maxCap > 2048 {
		t.Fatalf("slot slice grew to capacity %d for 10 keys", maxCap)
	}
}
