package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// applyMergePatch is the RFC 7386 MergePatch algorithm, written directly
// from the RFC's pseudo-code, as the reference for the property test.
func applyMergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	}
	out := map[string]any{}
	for k, v := range tm {
		out[k] = v
	}
	for k, v := range pm {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = applyMergePatch(out[k], v)
	}
	return out
}

// randValue makes a small random JSON value over few keys, so that patches
// often touch the same keys; nulls only where allowNull.
func randValue(r *rand.Rand, depth int, allowNull bool) any {
	n := 5
	if !allowNull {
		n = 4
	}
	switch k := r.IntN(n); {
	case k == 0 && depth > 0:
		return randObject(r, depth-1, allowNull)
	case k == 1:
		return float64(r.IntN(3))
	case k == 2:
		return []any{"x", float64(r.IntN(2))}
	case k == 4:
		return nil
	default:
		return fmt.Sprintf("s%d", r.IntN(3))
	}
}

func randObject(r *rand.Rand, depth int, allowNull bool) map[string]any {
	m := map[string]any{}
	for range r.IntN(4) {
		m[string(rune('a'+r.IntN(4)))] = randValue(r, depth, allowNull)
	}
	return m
}

func roundTrip(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestComposeMergePatchesProperty: for random documents and patches,
// applying the composition equals applying the two patches in turn, and
// composition fails only in the one case the doc names.
func TestComposeMergePatchesProperty(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	composed, refused := 0, 0
	for i := range 5000 {
		doc := randObject(r, 3, false)
		a, b := randObject(r, 3, true), randObject(r, 3, true)
		ab, _ := json.Marshal(a)
		bb, _ := json.Marshal(b)
		c, err := ComposeMergePatches(ab, bb)
		if errors.Is(err, ErrNotComposable) {
			refused++
			if !hasObjectOverNonObject(a, b) {
				t.Fatalf("case %d: refused %s then %s, which compose", i, ab, bb)
			}
			continue
		}
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		composed++
		var cv any
		if err := json.Unmarshal(c, &cv); err != nil {
			t.Fatal(err)
		}
		want := roundTrip(t, applyMergePatch(applyMergePatch(doc, a), b))
		got := roundTrip(t, applyMergePatch(doc, cv))
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("case %d: doc %v, patches %s then %s: composed %s gives %v, in turn %v", i, doc, ab, bb, c, got, want)
		}
		// Inputs unchanged.
		ab2, _ := json.Marshal(a)
		bb2, _ := json.Marshal(b)
		if string(ab2) != string(ab) || string(bb2) != string(bb) {
			t.Fatalf("case %d: inputs changed", i)
		}
	}
	if composed < 500 || refused < 50 {
		t.Fatalf("generator too narrow: %d composed, %d refused", composed, refused)
	}
}

// hasObjectOverNonObject reports whether b sets, at some path a also sets,
// an object where a has a non-object: the case composition cannot express.
func hasObjectOverNonObject(a, b map[string]any) bool {
	for k, bv := range b {
		bm, ok := bv.(map[string]any)
		av, inA := a[k]
		if !ok || !inA {
			continue
		}
		am, ok := av.(map[string]any)
		if !ok || hasObjectOverNonObject(am, bm) {
			return true
		}
	}
	return false
}

func TestComposeMergePatchesTable(t *testing.T) {
	for _, tc := range []struct{ a, b, want, err string }{
		{a: `{"x":1}`, b: `{"y":2}`, want: `{"x":1,"y":2}`},
		{a: `{"x":1}`, b: `{"x":2}`, want: `{"x":2}`},
		{a: `{"x":1}`, b: `{"x":null}`, want: `{"x":null}`},
		{a: `{"x":null}`, b: `{"x":1}`, want: `{"x":1}`},
		{a: `{"m":{"a":1}}`, b: `{"m":{"b":2}}`, want: `{"m":{"a":1,"b":2}}`},
		{a: `{"m":{"a":1}}`, b: `{"m":[1]}`, want: `{"m":[1]}`},
		{a: `{"m":null}`, b: `{"m":{"a":1}}`, err: "not-composable"},
		{a: `{"m":[1]}`, b: `{"m":{"a":1}}`, err: "not-composable"},
		{a: `[1]`, b: `{}`, err: "first patch"},
		{a: `{}`, b: `"x"`, err: "second patch"},
		{a: `{`, b: `{}`, err: "first patch"},
	} {
		got, err := ComposeMergePatches([]byte(tc.a), []byte(tc.b))
		switch {
		case tc.err == "not-composable":
			if !errors.Is(err, ErrNotComposable) {
				t.Errorf("%s + %s: err %v, want ErrNotComposable", tc.a, tc.b, err)
			}
		case tc.err != "":
			if err == nil || errors.Is(err, ErrNotComposable) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s + %s: err %v, want one naming %q", tc.a, tc.b, err, tc.err)
			}
		case err != nil || string(got) != tc.want:
			t.Errorf("%s + %s = %s, %v; want %s", tc.a, tc.b, got, err, tc.want)
		}
	}
}
