package conversion_test

import (
	"encoding/json"
	"testing"

	utiljson "k8s.io/apimachinery/pkg/util/json"

	"github.com/skiffkit/skiff/webhook/conversion"
	"github.com/skiffkit/skiff/webhook/conversion/internal/boat"
)

// FuzzServe feeds arbitrary bodies to the webhook: it never panics (a panic
// would be a 500), answers 200 or 400, and a 200 is a v1 ConversionReview
// response that converted every object or failed with a message.
func FuzzServe(f *testing.F) {
	f.Add(reviewBody(f, "conversion.test.skiff.dev/v2", v1Boat("ns", "a", 1, map[string]string{boat.TierAnnotation: "gold"})))
	f.Add(reviewBody(f, "conversion.test.skiff.dev/v1", v2Boat("ns", "b", 2, "silver"), v1Boat("ns", "c", 3, nil)))
	f.Add(reviewBody(f, "conversion.test.skiff.dev/v9", map[string]any{"apiVersion": 1}))
	f.Add([]byte(`{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":{"uid":"u","desiredAPIVersion":"conversion.test.skiff.dev/v2","objects":[null,1,"x",{"apiVersion":"conversion.test.skiff.dev/v1","kind":"Boat","metadata":{"labels":{"a":1}}}]}}`))
	f.Add([]byte(`{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","request":null}`))
	f.Add([]byte(`{"kind":"ConversionReview","apiVersion":"apiextensions.k8s.io/v1","request":{"uid":"u","objects":[{"apiVersion":"conversion.test.skiff.dev/v1","kind":"Boat","spec":{"size":1e400}}]}}`))
	f.Add([]byte(`[`))
	f.Add([]byte{})
	w := boatWebhook(f, conversion.Options{MaxBodyBytes: 1 << 16})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := post(w, body)
		switch rec.Code {
		case 400:
			return
		case 200:
		default:
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		var in struct {
			Request struct {
				UID     string            `json:"uid"`
				Objects []json.RawMessage `json:"objects"`
			} `json:"request"`
		}
		// Field names are case-sensitive, as the API server's own decoding is.
		if err := utiljson.Unmarshal(body, &in); err != nil {
			t.Fatalf("accepted a body that is not a JSON review (%v): %q", err, body)
		}
		var out wireReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("200 answer is not a ConversionReview (%v): %s", err, rec.Body)
		}
		switch out.Response.Result.Status {
		case "Success":
			if len(out.Response.ConvertedObjects) != len(in.Request.Objects) {
				t.Fatalf("converted %d objects of %d", len(out.Response.ConvertedObjects), len(in.Request.Objects))
			}
		case "Failure":
			if out.Response.Result.Message == "" {
				t.Fatal("Failure without a message")
			}
		default:
			t.Fatalf("result status %q", out.Response.Result.Status)
		}
	})
}
