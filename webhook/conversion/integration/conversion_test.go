// Package integration tests the conversion webhook with the local control
// plane's API server calling it: a CRD with two served versions, v1 stored,
// converted by webhook/conversion over HTTPS.
package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook/conversion"
	"github.com/skiffkit/skiff/webhook/conversion/internal/boat"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{}, func(e *testenv.Env) error { env = e; return nil }))
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestConversionThroughTheAPIServer(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	cfg := env.Config()
	if _, err := testenv.ApplyCRDs(ctx, cfg, []byte(boat.CRD)); err != nil {
		t.Fatal(err)
	}
	scheme := runtime.NewScheme()
	if err := boat.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	w, err := conversion.New[*boat.V2](scheme, conversion.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := conversion.Spoke(w, boat.ToV2, boat.FromV2); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	var largest atomic.Int64 // the most objects the API server sent in one review
	mux.Handle("/convert", countObjects(&largest, w))
	srv := httptest.NewUnstartedServer(mux)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	if err := conversion.ConfigureCRD[*boat.V1](ctx, c, conversion.ClientConfig{URL: srv.URL + "/convert", CABundle: ca}); err != nil {
		t.Fatal(err)
	}
	ns := testenv.Namespace(t, cfg)

	// The API server picks up the new conversion a little after the CRD
	// changed: wait until a v1 object reads as v2 with its size converted
	// (without the webhook, the "None" strategy would leave replicas 0).
	probe := newV1(ns, "probe", 7, nil)
	if err := c.Create(ctx, probe); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, time.Minute, "the API server to convert through the webhook", func() (bool, error) {
		got, err := client.Get[*boat.V2](ctx, c, client.KeyOf(probe))
		if err != nil {
			return false, err
		}
		return got.Spec.Replicas == 7, fmt.Errorf("read as v2 with spec %+v", got.Spec)
	})

	t.Run("create as v1, read as v2", func(t *testing.T) {
		b := newV1(ns, "one", 3, map[string]string{boat.TierAnnotation: "gold", "note": "kept"})
		if err := c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		got, err := client.Get[*boat.V2](ctx, c, client.KeyOf(b))
		if err != nil {
			t.Fatal(err)
		}
		// (The typed client clears apiVersion/kind when it decodes; the API
		// server itself refuses a converted object of the wrong apiVersion.)
		if got.Spec != (boat.V2Spec{Replicas: 3, Tier: "gold"}) {
			t.Errorf("read as v2: %+v", got.Spec)
		}
		if got.UID != b.UID || got.Labels["app"] != "one" || !reflect.DeepEqual(got.Annotations, map[string]string{"note": "kept"}) {
			t.Errorf("metadata as v2: uid %s labels %v annotations %v", got.UID, got.Labels, got.Annotations)
		}
	})

	t.Run("create as v2, read as v1 and back", func(t *testing.T) {
		b := newV2(ns, "two", 5, "silver")
		if err := c.Create(ctx, b); err != nil {
			t.Fatal(err)
		}
		if b.Spec != (boat.V2Spec{Replicas: 5, Tier: "silver"}) {
			t.Errorf("create answer (converted from storage) %+v", b.Spec)
		}
		v1, err := client.Get[*boat.V1](ctx, c, client.KeyOf(b))
		if err != nil {
			t.Fatal(err)
		}
		if v1.Spec.Size != 5 || v1.Annotations[boat.TierAnnotation] != "silver" {
			t.Errorf("read as v1: %+v annotations %v", v1.Spec, v1.Annotations)
		}
		v2, err := client.Get[*boat.V2](ctx, c, client.KeyOf(b))
		if err != nil {
			t.Fatal(err)
		}
		if v2.Spec != b.Spec || len(v2.Annotations) != 0 {
			t.Errorf("v2 → storage v1 → v2 lost something: %+v annotations %v", v2.Spec, v2.Annotations)
		}
	})

	t.Run("round trip v1 to v2 to v1 is lossless", func(t *testing.T) {
		orig := newV1(ns, "three", 9, map[string]string{boat.TierAnnotation: "bronze", "x": "y"})
		if err := c.Create(ctx, orig); err != nil {
			t.Fatal(err)
		}
		v2, err := client.Get[*boat.V2](ctx, c, client.KeyOf(orig))
		if err != nil {
			t.Fatal(err)
		}
		v2.Labels["touched"] = "by-v2" // a real write through v2: v2 → v1 for storage
		if err := c.Update(ctx, v2); err != nil {
			t.Fatal(err)
		}
		back, err := client.Get[*boat.V1](ctx, c, client.KeyOf(orig))
		if err != nil {
			t.Fatal(err)
		}
		if back.Spec != orig.Spec || !reflect.DeepEqual(back.Annotations, orig.Annotations) {
			t.Errorf("after v1 → v2 → v1: spec %+v annotations %v, want %+v %v", back.Spec, back.Annotations, orig.Spec, orig.Annotations)
		}
		if back.Labels["touched"] != "by-v2" || back.UID != orig.UID {
			t.Errorf("the v2 write did not land: labels %v uid %s", back.Labels, back.UID)
		}
	})

	t.Run("list as v2", func(t *testing.T) {
		for i := range 25 {
			if err := c.Create(ctx, newV1(ns, fmt.Sprintf("many-%02d", i), i, nil)); err != nil {
				t.Fatal(err)
			}
		}
		list, err := client.List[*boat.V2](ctx, c, client.InNamespace(ns))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, b := range list {
			var i int
			if _, err := fmt.Sscanf(b.Name, "many-%02d", &i); err == nil {
				n++
				if b.Spec.Replicas != i || b.APIVersion != "conversion.test.skiff.dev/v2" {
					t.Errorf("%s as v2: %s %+v", b.Name, b.APIVersion, b.Spec)
				}
			}
		}
		if n != 25 {
			t.Errorf("listed %d of the 25 Boats as v2", n)
		}
		// kube-apiserver 1.36 converts a list item by item as it decodes them
		// from storage, one object per review; reviews of many objects are
		// covered by the unit tests.
		t.Logf("largest review the API server sent: %d objects", largest.Load())
	})

	t.Run("a failing conversion is an API error", func(t *testing.T) {
		err := c.Create(ctx, newV2(ns, "doomed", 1, boat.FailTier))
		if err == nil {
			t.Fatal("created a Boat whose conversion to the storage version fails")
		}
		for _, want := range []string{`tier "explode" cannot be converted`, "convert hub v2 to v1", "doomed"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
		t.Logf("the API server said: %v (status %d)", err, statusCode(err))
		if _, err := client.Get[*boat.V1](ctx, c, client.ObjectKey{Namespace: ns, Name: "doomed"}); !apierrors.IsNotFound(err) {
			t.Errorf("the doomed Boat exists: %v", err)
		}
	})

	t.Run("ConfigureCRD names what it cannot find", func(t *testing.T) {
		scheme.AddKnownTypeWithName(boat.V1Version.WithKind("Ghost"), &ghost{})
		err := conversion.ConfigureCRD[*ghost](ctx, c, conversion.ClientConfig{URL: srv.URL + "/convert"})
		if err == nil || !strings.Contains(err.Error(), "serves no resource of kind Ghost") {
			t.Errorf("CRD not installed: %v", err)
		}
		err = conversion.ConfigureCRD[*unregistered](ctx, c, conversion.ClientConfig{URL: srv.URL + "/convert"})
		if err == nil || !strings.Contains(err.Error(), "not registered") {
			t.Errorf("type not in the scheme: %v", err)
		}
	})

	for _, result := range []string{"success", "failure"} {
		if n := requests(t, reg, result); n < 1 {
			t.Errorf("skiff_conversion_requests_total{result=%q} = %v after the API server called", result, n)
		}
	}
	if n := requests(t, reg, "bad_request"); n != 0 {
		t.Errorf("the API server's requests got %v answers of 400", n)
	}
}

// countObjects records the largest number of objects in a review passed to h.
func countObjects(largest *atomic.Int64, h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		var rv struct {
			Request struct {
				Objects []json.RawMessage `json:"objects"`
			} `json:"request"`
		}
		if json.Unmarshal(body, &rv) == nil {
			for n := int64(len(rv.Request.Objects)); ; {
				cur := largest.Load()
				if n <= cur || largest.CompareAndSwap(cur, n) {
					break
				}
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(rw, r)
	})
}

func statusCode(err error) int32 {
	if s, ok := err.(apierrors.APIStatus); ok {
		return s.Status().Code
	}
	return 0
}

// requests reads skiff_conversion_requests_total{result} from reg.
func requests(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "skiff_conversion_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no skiff_conversion_requests_total{result=%q}", result)
	return 0
}

func newV1(ns, name string, size int, annotations map[string]string) *boat.V1 {
	b := &boat.V1{Spec: boat.V1Spec{Size: size}}
	b.Namespace, b.Name = ns, name
	b.Labels = map[string]string{"app": name}
	b.Annotations = annotations
	return b
}

func newV2(ns, name string, replicas int, tier string) *boat.V2 {
	b := &boat.V2{Spec: boat.V2Spec{Replicas: replicas, Tier: tier}}
	b.Namespace, b.Name = ns, name
	b.Labels = map[string]string{"app": name}
	return b
}

// ghost is registered in the scheme but has no CRD; unregistered is not
// registered at all.
type (
	ghost        struct{ boat.V1 }
	unregistered struct{ boat.V1 }
)

func (g *ghost) DeepCopyObject() runtime.Object { return &ghost{*g.V1.DeepCopyObject().(*boat.V1)} }
func (u *unregistered) DeepCopyObject() runtime.Object {
	return &unregistered{*u.V1.DeepCopyObject().(*boat.V1)}
}
