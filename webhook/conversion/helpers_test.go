package conversion_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/webhook/conversion"
	"github.com/skiffkit/skiff/webhook/conversion/internal/boat"
)

func boatScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := boat.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// boatWebhook is the webhook of the tests: hub v2, spoke v1.
func boatWebhook(t testing.TB, o conversion.Options) *conversion.Webhook[*boat.V2] {
	t.Helper()
	w, err := conversion.New[*boat.V2](boatScheme(t), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := conversion.Spoke(w, boat.ToV2, boat.FromV2); err != nil {
		t.Fatal(err)
	}
	return w
}

// wireReview is a ConversionReview as a test sends and reads it.
type wireReview struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"`
	Request    *wireRequest  `json:"request,omitempty"`
	Response   *wireResponse `json:"response,omitempty"`
}

type wireRequest struct {
	UID               string `json:"uid"`
	DesiredAPIVersion string `json:"desiredAPIVersion"`
	Objects           []any  `json:"objects"`
}

type wireResponse struct {
	UID              string            `json:"uid"`
	ConvertedObjects []json.RawMessage `json:"convertedObjects"`
	Result           struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	} `json:"result"`
}

func reviewBody(t testing.TB, desired string, objs ...any) []byte {
	t.Helper()
	b, err := json.Marshal(wireReview{
		APIVersion: "apiextensions.k8s.io/v1", Kind: "ConversionReview",
		Request: &wireRequest{UID: "uid-1", DesiredAPIVersion: desired, Objects: objs},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body to h and returns the recorded answer.
func post(h http.Handler, body []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/convert", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(rec, req)
	return rec
}

// convert posts a review and decodes the 200 answer.
func convert(t testing.TB, h http.Handler, desired string, objs ...any) *wireResponse {
	t.Helper()
	rec := post(h, reviewBody(t, desired, objs...))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", rec.Code, rec.Body)
	}
	var rv wireReview
	if err := json.Unmarshal(rec.Body.Bytes(), &rv); err != nil {
		t.Fatalf("decode answer %s: %v", rec.Body, err)
	}
	if rv.APIVersion != "apiextensions.k8s.io/v1" || rv.Kind != "ConversionReview" || rv.Response == nil {
		t.Fatalf("answer is not a v1 ConversionReview response: %s", rec.Body)
	}
	if rv.Response.UID != "uid-1" {
		t.Fatalf("answer uid %q, want uid-1", rv.Response.UID)
	}
	return rv.Response
}

func v1Boat(ns, name string, size int, annotations map[string]string) *boat.V1 {
	b := &boat.V1{Spec: boat.V1Spec{Size: size}}
	b.APIVersion, b.Kind = boat.V1Version.String(), "Boat"
	b.Namespace, b.Name, b.UID = ns, name, types.UID("uid-v1-"+name)
	b.Labels = map[string]string{"app": name}
	b.Annotations = annotations
	b.ResourceVersion, b.Generation = "42", 3
	return b
}

func v2Boat(ns, name string, replicas int, tier string) *boat.V2 {
	b := &boat.V2{Spec: boat.V2Spec{Replicas: replicas, Tier: tier}}
	b.APIVersion, b.Kind = boat.V2Version.String(), "Boat"
	b.Namespace, b.Name, b.UID = ns, name, types.UID("uid-v2-"+name)
	b.Labels = map[string]string{"app": name}
	b.ResourceVersion, b.Generation = "43", 1
	return b
}
