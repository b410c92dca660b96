package conversion_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/skiffkit/skiff/webhook/conversion"
	"github.com/skiffkit/skiff/webhook/conversion/internal/boat"
)

func decodeAs[T any](t *testing.T, raw json.RawMessage) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	return v
}

func TestConvertManyObjectsOfMixedVersions(t *testing.T) {
	w := boatWebhook(t, conversion.Options{})
	in := []any{
		v1Boat("ns", "a", 3, map[string]string{boat.TierAnnotation: "gold", "keep": "me"}),
		v2Boat("ns", "b", 5, "silver"), // already v2: returned as is
		v1Boat("ns", "c", 0, nil),
	}
	resp := convert(t, w, "conversion.test.skiff.dev/v2", in...)
	if resp.Result.Status != "Success" {
		t.Fatalf("result %+v, want Success", resp.Result)
	}
	if len(resp.ConvertedObjects) != 3 {
		t.Fatalf("%d converted objects, want 3", len(resp.ConvertedObjects))
	}
	a := decodeAs[boat.V2](t, resp.ConvertedObjects[0])
	want := boat.V2{Spec: boat.V2Spec{Replicas: 3, Tier: "gold"}}
	want.APIVersion, want.Kind = "conversion.test.skiff.dev/v2", "Boat"
	want.ObjectMeta = in[0].(*boat.V1).ObjectMeta
	want.Annotations = map[string]string{"keep": "me"}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("object 0:\n got %+v\nwant %+v", a, want)
	}
	if b := decodeAs[boat.V2](t, resp.ConvertedObjects[1]); !reflect.DeepEqual(&b, in[1]) {
		t.Errorf("object 1 (already v2) changed: %+v", b)
	}
	if c := decodeAs[boat.V2](t, resp.ConvertedObjects[2]); c.Name != "c" || c.APIVersion != "conversion.test.skiff.dev/v2" || c.Spec != (boat.V2Spec{}) {
		t.Errorf("object 2: %+v", c)
	}
}

func TestConvertDownKeepsTierInAnnotation(t *testing.T) {
	w := boatWebhook(t, conversion.Options{})
	resp := convert(t, w, "conversion.test.skiff.dev/v1", v2Boat("ns", "b", 7, "gold"))
	if resp.Result.Status != "Success" {
		t.Fatalf("result %+v", resp.Result)
	}
	got := decodeAs[boat.V1](t, resp.ConvertedObjects[0])
	if got.APIVersion != "conversion.test.skiff.dev/v1" || got.Kind != "Boat" {
		t.Errorf("apiVersion/kind %s %s", got.APIVersion, got.Kind)
	}
	if got.Spec.Size != 7 || got.Annotations[boat.TierAnnotation] != "gold" || got.UID != "uid-v2-b" || got.Labels["app"] != "b" {
		t.Errorf("converted %+v", got)
	}
}

// TestRoundTripIsLossless converts random v1 Boats up and back down and
// random v2 Boats down and back up: nothing may change (seeded; the seed is
// logged).
func TestRoundTripIsLossless(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	w := boatWebhook(t, conversion.Options{})
	tiers := []string{"", "gold", "silver", "a-b.c"}
	for i := range 200 {
		ann := map[string]string{}
		if r.IntN(2) == 0 {
			ann["other"] = "x"
		}
		if tier := tiers[r.IntN(len(tiers))]; tier != "" {
			ann[boat.TierAnnotation] = tier
		}
		if len(ann) == 0 {
			ann = nil
		}
		orig := v1Boat("ns", "b", r.IntN(1000), ann)
		up := convert(t, w, "conversion.test.skiff.dev/v2", orig)
		down := convert(t, w, "conversion.test.skiff.dev/v1", json.RawMessage(up.ConvertedObjects[0]))
		if got := decodeAs[boat.V1](t, down.ConvertedObjects[0]); !reflect.DeepEqual(&got, orig) {
			t.Fatalf("case %d: v1→v2→v1\n got %+v\nwant %+v", i, got, orig)
		}
		orig2 := v2Boat("ns", "c", r.IntN(1000), tiers[r.IntN(len(tiers))])
		down2 := convert(t, w, "conversion.test.skiff.dev/v1", orig2)
		up2 := convert(t, w, "conversion.test.skiff.dev/v2", json.RawMessage(down2.ConvertedObjects[0]))
		if got := decodeAs[boat.V2](t, up2.ConvertedObjects[0]); !reflect.DeepEqual(&got, orig2) {
			t.Fatalf("case %d: v2→v1→v2\n got %+v\nwant %+v", i, got, orig2)
		}
	}
}

func TestFailureResults(t *testing.T) {
	other := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"}, ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "ns"}}
	otherGroup := v1Boat("ns", "g", 1, nil)
	otherGroup.APIVersion = "elsewhere.example.com/v1"
	v9 := v1Boat("ns", "nine", 1, nil)
	v9.APIVersion = "conversion.test.skiff.dev/v9"
	cases := []struct {
		name    string
		desired string
		objs    []any
		want    []string // substrings of the message
	}{
		{"unknown desired version", "conversion.test.skiff.dev/v3", []any{v1Boat("ns", "a", 1, nil)},
			[]string{`desired apiVersion "conversion.test.skiff.dev/v3" is unknown`, "Boat.conversion.test.skiff.dev", "v2", "v1"}},
		{"desired version of another group", "apps/v1", []any{v1Boat("ns", "a", 1, nil)},
			[]string{`desired apiVersion "apps/v1" is unknown`}},
		{"desired version not a group/version", "a/b/c", []any{v1Boat("ns", "a", 1, nil)},
			[]string{`desired apiVersion "a/b/c" is not a group/version`}},
		{"empty desired version", "", []any{v1Boat("ns", "a", 1, nil)},
			[]string{`desired apiVersion "" is not a group/version`}},
		{"unknown kind", "conversion.test.skiff.dev/v2", []any{v1Boat("ns", "a", 1, nil), other},
			[]string{"object 1 of 2 (ns/cm, v1 ConfigMap)", "kind ConfigMap is unknown to this webhook"}},
		{"kind of another group", "conversion.test.skiff.dev/v2", []any{otherGroup},
			[]string{"object 0 of 1 (ns/g, elsewhere.example.com/v1 Boat)", "kind Boat.elsewhere.example.com is unknown"}},
		{"unknown source version", "conversion.test.skiff.dev/v2", []any{v9},
			[]string{"object 0 of 1 (ns/nine", "version v9 is unknown"}},
		{"object not an object", "conversion.test.skiff.dev/v2", []any{"just a string"},
			[]string{"object 0 of 1: not a JSON object"}},
		{"object of wrong shape", "conversion.test.skiff.dev/v2", []any{map[string]any{"apiVersion": "conversion.test.skiff.dev/v1", "kind": "Boat", "spec": map[string]any{"size": "big"}}},
			[]string{"object 0 of 1", "decode as *boat.V1"}},
		{"conversion function fails going up", "conversion.test.skiff.dev/v2", []any{v1Boat("ns", "x", 1, map[string]string{boat.TierAnnotation: boat.FailTier})},
			[]string{"object 0 of 1 (ns/x, conversion.test.skiff.dev/v1 Boat)", "convert v1 to hub v2", `tier "explode" cannot be converted`}},
		{"conversion function fails going down", "conversion.test.skiff.dev/v1", []any{v2Boat("ns", "y", 1, boat.FailTier)},
			[]string{"object 0 of 1 (ns/y, conversion.test.skiff.dev/v2 Boat)", "convert hub v2 to v1", `tier "explode" cannot be converted`}},
	}
	w := boatWebhook(t, conversion.Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := convert(t, w, c.desired, c.objs...)
			if resp.Result.Status != "Failure" {
				t.Fatalf("result %+v, want Failure", resp.Result)
			}
			for _, s := range c.want {
				if !strings.Contains(resp.Result.Message, s) {
					t.Errorf("message %q does not contain %q", resp.Result.Message, s)
				}
			}
			if len(resp.ConvertedObjects) != 0 {
				t.Errorf("a failed review returned %d objects", len(resp.ConvertedObjects))
			}
		})
	}
}

// TestMetadataIsProtected: a conversion may change annotations (validly),
// nothing else in metadata.
func TestMetadataIsProtected(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*boat.V2)
		want   string // "" means Success
	}{
		{"annotation added", func(b *boat.V2) { b.Annotations = map[string]string{"new": "ok"} }, ""},
		{"name", func(b *boat.V2) { b.Name = "renamed" }, `changed metadata.name (from "a" to "renamed")`},
		{"namespace", func(b *boat.V2) { b.Namespace = "other" }, "changed metadata.namespace"},
		{"uid", func(b *boat.V2) { b.UID = "u2" }, "changed metadata.uid"},
		{"label added", func(b *boat.V2) { b.Labels["x"] = "y" }, "changed metadata.labels"},
		{"labels dropped", func(b *boat.V2) { b.Labels = nil }, "changed metadata.labels"},
		{"resourceVersion", func(b *boat.V2) { b.ResourceVersion = "1" }, "changed metadata.resourceVersion"},
		{"finalizers", func(b *boat.V2) { b.Finalizers = []string{"f"} }, "changed metadata.finalizers"},
		{"whole metadata reset", func(b *boat.V2) { b.ObjectMeta = metav1.ObjectMeta{} }, "changed metadata.name"},
		{"invalid annotation key", func(b *boat.V2) { b.Annotations = map[string]string{"not a key!": "v"} }, "invalid annotations"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := conversion.New[*boat.V2](boatScheme(t), conversion.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = conversion.Spoke(w, func(src *boat.V1, dst *boat.V2) error {
				c.mutate(dst)
				return nil
			}, boat.FromV2)
			if err != nil {
				t.Fatal(err)
			}
			resp := convert(t, w, "conversion.test.skiff.dev/v2", v1Boat("ns", "a", 1, nil))
			if c.want == "" {
				if resp.Result.Status != "Success" {
					t.Fatalf("result %+v, want Success", resp.Result)
				}
				return
			}
			if resp.Result.Status != "Failure" || !strings.Contains(resp.Result.Message, c.want) {
				t.Fatalf("result %+v, want Failure containing %q", resp.Result, c.want)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	valid := reviewBody(t, "conversion.test.skiff.dev/v2", v1Boat("ns", "a", 1, nil))
	noUID := bytes.Replace(valid, []byte(`"uid":"uid-1"`), []byte(`"uid":""`), 1)
	cases := []struct {
		name        string
		method      string
		contentType string
		body        string
		code        int
		want        string
	}{
		{"not JSON", "POST", "application/json", "<xml/>", 400, "not a JSON ConversionReview"},
		{"empty body", "POST", "application/json", "", 400, "not a JSON ConversionReview"},
		{"trailing data", "POST", "application/json", string(valid) + "{}", 400, "not a JSON ConversionReview"},
		{"JSON array", "POST", "application/json", "[]", 400, "not a JSON ConversionReview"},
		{"another kind", "POST", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u"}}`, 400, `kind "AdmissionReview"`},
		{"v1beta1 review", "POST", "application/json", `{"apiVersion":"apiextensions.k8s.io/v1beta1","kind":"ConversionReview","request":{"uid":"u"}}`, 400, `apiVersion "apiextensions.k8s.io/v1beta1" is not supported`},
		{"no request", "POST", "application/json", `{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview"}`, 400, "has no request"},
		{"no uid", "POST", "application/json", string(noUID), 400, "has no uid"},
		{"objects not a list", "POST", "application/json", `{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{"uid":"u","objects":{}}}`, 400, "not a JSON ConversionReview"},
		{"wrong content type", "POST", "text/plain", string(valid), 400, `content type "text/plain"`},
		{"oversized", "POST", "application/json", string(valid) + strings.Repeat(" ", 2048), 400, "request body larger than 1024 bytes"},
		{"GET", "GET", "", "", 405, "method GET not allowed"},
	}
	w := boatWebhook(t, conversion.Options{MaxBodyBytes: 1024})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(c.method, "/convert", strings.NewReader(c.body))
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			w.ServeHTTP(rec, req)
			if rec.Code != c.code || !strings.Contains(rec.Body.String(), c.want) {
				t.Fatalf("got %d %q, want %d containing %q", rec.Code, rec.Body, c.code, c.want)
			}
			if !strings.Contains(rec.Body.String(), "Boat.conversion.test.skiff.dev") {
				t.Errorf("message %q does not name the webhook's kind", rec.Body)
			}
		})
	}
	if rec := post(w, valid); rec.Code != 200 {
		t.Fatalf("the valid review got %d: %s", rec.Code, rec.Body)
	}
}

func TestPanicIs500AndTheHandlerKeepsServing(t *testing.T) {
	var logs bytes.Buffer
	w, err := conversion.New[*boat.V2](boatScheme(t), conversion.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	err = conversion.Spoke(w, func(src *boat.V1, dst *boat.V2) error {
		if src.Spec.Size < 0 {
			panic("negative size")
		}
		return boat.ToV2(src, dst)
	}, boat.FromV2)
	if err != nil {
		t.Fatal(err)
	}
	rec := post(w, reviewBody(t, "conversion.test.skiff.dev/v2", v1Boat("ns", "a", -1, nil)))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "panic while converting: negative size") {
		t.Fatalf("got %d %q, want 500 naming the panic", rec.Code, rec.Body)
	}
	if resp := convert(t, w, "conversion.test.skiff.dev/v2", v1Boat("ns", "a", 1, nil)); resp.Result.Status != "Success" {
		t.Fatalf("after a panic: %+v", resp.Result)
	}
	if !strings.Contains(logs.String(), "conversion webhook panicked") || !strings.Contains(logs.String(), "negative size") {
		t.Errorf("the panic was not logged: %q", logs.String())
	}
}

type notRegistered struct{ boat.V2 }

func (n *notRegistered) DeepCopyObject() runtime.Object { return n }

// pointerMeta embeds *ObjectMeta: a new one has no metadata to copy into.
type pointerMeta struct {
	metav1.TypeMeta
	*metav1.ObjectMeta
}

func (p *pointerMeta) DeepCopyObject() runtime.Object { return p }

func TestRegistrationErrors(t *testing.T) {
	s := boatScheme(t)
	if _, err := conversion.New[*notRegistered](s, conversion.Options{}); err == nil || !strings.Contains(err.Error(), "notRegistered is not registered in the scheme") {
		t.Errorf("unregistered hub: %v", err)
	}
	if _, err := conversion.New[*boat.V2](nil, conversion.Options{}); err == nil {
		t.Error("nil scheme accepted")
	}
	if _, err := conversion.New[*boat.V2](s, conversion.Options{MaxBodyBytes: -1}); err == nil || !strings.Contains(err.Error(), "MaxBodyBytes") {
		t.Errorf("negative MaxBodyBytes: %v", err)
	}
	w, err := conversion.New[*boat.V2](s, conversion.Options{})
	if err != nil {
		t.Fatal(err)
	}
	same := func(src, dst *boat.V2) error { return nil }
	if err := conversion.Spoke(w, same, same); err == nil || !strings.Contains(err.Error(), "hub's version v2") {
		t.Errorf("spoke at the hub's version: %v", err)
	}
	s.AddKnownTypeWithName(schema.GroupVersionKind{Group: "x.example.com", Version: "v1", Kind: "ConfigMap"}, &corev1.ConfigMap{})
	toCM := func(*corev1.ConfigMap, *boat.V2) error { return nil }
	fromCM := func(*boat.V2, *corev1.ConfigMap) error { return nil }
	if err := conversion.Spoke(w, toCM, fromCM); err == nil || !strings.Contains(err.Error(), "not a version of the hub's kind Boat.conversion.test.skiff.dev") {
		t.Errorf("spoke of another kind: %v", err)
	}
	if err := conversion.Spoke(w, boat.ToV2, boat.FromV2); err != nil {
		t.Fatal(err)
	}
	if err := conversion.Spoke(w, boat.ToV2, boat.FromV2); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Errorf("second spoke for v1: %v", err)
	}
	if err := conversion.Spoke[*boat.V1](w, nil, boat.FromV2); err == nil {
		t.Error("nil conversion function accepted")
	}
	if got := w.Versions(); len(got) != 2 || got[0].Version != "v2" || got[1].Version != "v1" {
		t.Errorf("Versions() = %v, want hub v2 then v1", got)
	}
	s.AddKnownTypeWithName(schema.GroupVersionKind{Group: "y.example.com", Version: "v1", Kind: "P"}, &pointerMeta{})
	if _, err := conversion.New[*pointerMeta](s, conversion.Options{}); err == nil || !strings.Contains(err.Error(), "does not embed metav1.ObjectMeta") {
		t.Errorf("hub without embedded ObjectMeta: %v", err)
	}
}
