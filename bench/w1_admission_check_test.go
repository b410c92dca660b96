package bench

import (
	"encoding/json"
	"slices"
	"testing"
)

// The W1 fixture's reviews are deterministic and realistic: pods of 8–12
// KB of JSON, UPDATE reviews carrying both objects, CREATE reviews an
// oldObject of null (as the API server sends it).
func TestW1Reviews(t *testing.T) {
	for _, mutating := range []bool{true, false} {
		a, err := w1Reviews(mutating, 20)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := w1Reviews(mutating, 20)
		t.Logf("mutating %v: pod 0 is %d B of JSON, its AdmissionReview %d B", mutating, len(a[0].object), len(a[0].body))
		for i, rv := range a {
			if string(rv.body) != string(b[i].body) {
				t.Fatalf("review %d differs between calls", i)
			}
			if n := len(rv.object); n < 8000 || n > 12000 {
				t.Errorf("mutating %v: review %d: the pod is %d B of JSON, want 8–12 KB", mutating, i, n)
			}
			var r struct {
				Request struct {
					Operation string
					Object    json.RawMessage
					OldObject json.RawMessage
				}
			}
			if err := json.Unmarshal(rv.body, &r); err != nil {
				t.Fatal(err)
			}
			wantOp, wantOld := "CREATE", false
			if !mutating {
				wantOp, wantOld = "UPDATE", true
			}
			if r.Request.Operation != wantOp || (len(r.Request.OldObject) > 0 && string(r.Request.OldObject) != "null") != wantOld || len(r.Request.Object) == 0 {
				t.Errorf("mutating %v: review %d: operation %s, old object %d B", mutating, i, r.Request.Operation, len(r.Request.OldObject))
			}
		}
	}
}

// Both contenders answer the sample correctly (w1Check applies the
// mutating patch and compares), with the same patch operations — so
// neither can win the benchmark by answering less.
func TestW1ContendersAnswer(t *testing.T) {
	certs, err := newW1Certs()
	if err != nil {
		t.Fatal(err)
	}
	for _, mutating := range []bool{true, false} {
		sample, err := w1Reviews(mutating, 4)
		if err != nil {
			t.Fatal(err)
		}
		var ops [][]string
		for _, impl := range w1Impls {
			url, stop, err := impl.start(mutating, certs)
			if err != nil {
				t.Fatal(err)
			}
			if err := w1Verify(url, certs, mutating, sample); err != nil {
				t.Errorf("%s: %v", impl.name, err)
			}
			if mutating {
				c := certs.client()
				_, body, err := w1Post(c, url, sample[0].body)
				c.CloseIdleConnections()
				if err != nil {
					t.Fatal(err)
				}
				o, err := w1PatchOps(body)
				if err != nil {
					t.Fatal(err)
				}
				if len(o) != 5 {
					t.Errorf("%s: patch %v, want 5 operations (label, annotation, 3 container requests)", impl.name, o)
				}
				ops = append(ops, o)
			}
			if err := stop(); err != nil {
				t.Errorf("%s: stop: %v", impl.name, err)
			}
		}
		if mutating && !slices.Equal(ops[0], ops[1]) {
			t.Errorf("the contenders' patches differ: %v vs %v", ops[0], ops[1])
		}
	}
	// A wrong answer is caught: an allowed answer without the patch.
	rv, _ := w1Reviews(true, 1)
	bad := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"` + rv[0].uid + `","allowed":true}}`)
	if err := w1Check(true, rv[0], 200, bad); err == nil {
		t.Error("w1Check accepted a mutating answer without a patch")
	}
}
