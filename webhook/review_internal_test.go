package webhook

import (
	"encoding/json"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var cmGVK = schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}

func newCM() *corev1.ConfigMap { return new(corev1.ConfigMap) }

func TestDecodeReview(t *testing.T) {
	const obj = `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}`
	req := func(op, kind, object, old string) string {
		s := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"` + op + `","kind":` + kind
		if object != "" {
			s += `,"object":` + object
		}
		if old != "" {
			s += `,"oldObject":` + old
		}
		return s + `}}`
	}
	const cmKind = `{"group":"","version":"v1","kind":"ConfigMap"}`
	for _, tc := range []struct {
		name, body, reason string
		check              func(t *testing.T, r Request[*corev1.ConfigMap])
	}{
		{"empty", "", "not_json", nil},
		{"array", "[1]", "not_json", nil},
		{"truncated", `{"apiVersion":"admission.k8s.io/v1"`, "not_json", nil},
		{"no kind", `{"apiVersion":"admission.k8s.io/v1"}`, "not_admission_review", nil},
		{"v1beta1", `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}`, "api_version", nil},
		{"request is a string", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":"x"}`, "not_admission_review", nil},
		{"null request", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`, "no_request", nil},
		{"no uid", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}`, "no_uid", nil},
		{"bad operation", req("PATCH", cmKind, obj, ""), "operation", nil},
		{"other kind", req("CREATE", `{"group":"apps","version":"v1","kind":"Deployment"}`, obj, ""), "kind", nil},
		{"other version", req("CREATE", `{"group":"","version":"v2","kind":"ConfigMap"}`, obj, ""), "kind", nil},
		{"create without object", req("CREATE", cmKind, "", ""), "object", nil},
		{"create with null object", req("CREATE", cmKind, "null", ""), "object", nil},
		{"object of the wrong shape", req("CREATE", cmKind, `{"data":[1]}`, ""), "object", nil},
		{"delete without old", req("DELETE", cmKind, "", ""), "object", nil},
		{"create", req("CREATE", cmKind, obj, ""), "", func(t *testing.T, r Request[*corev1.ConfigMap]) {
			if r.Object.Data["k"] != "v" || r.OldObject != nil || r.DryRun || string(r.RawObject) != obj {
				t.Fatalf("%+v", r)
			}
		}},
		{"delete", req("DELETE", cmKind, "null", obj), "", func(t *testing.T, r Request[*corev1.ConfigMap]) {
			if r.Object != nil || r.OldObject.Name != "a" {
				t.Fatalf("%+v", r)
			}
		}},
		{"connect", req("CONNECT", `{"group":"","version":"v1","kind":"PodExecOptions"}`, `{"command":["sh"]}`, ""), "", func(t *testing.T, r Request[*corev1.ConfigMap]) {
			if r.Object != nil || r.Kind.Kind != "PodExecOptions" || string(r.RawObject) != `{"command":["sh"]}` {
				t.Fatalf("%+v", r)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, err := decodeReview([]byte(tc.body))
			var r Request[*corev1.ConfigMap]
			if err == nil {
				r, err = typedRequest(w, cmGVK, newCM)
			}
			var bad *BadRequestError
			switch {
			case tc.reason == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.reason != "" && (!errors.As(err, &bad) || bad.Reason != tc.reason):
				t.Fatalf("= %v, want a bad request for %s", err, tc.reason)
			case tc.check != nil:
				tc.check(t, r)
			}
		})
	}
}

func TestEncodeResponse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		r     Response
		patch []byte
		want  string
	}{
		{"allow", Allow(), nil, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true}}`},
		{"allow with patch and warning", Allow("w"), []byte(`[]`), `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":true,"patch":"W10=","patchType":"JSONPatch","warnings":["w"]}}`},
		{"deny", Deny("no"), []byte(`[]`), `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":false,"status":{"code":403,"message":"no"}}}`},
		{"zero value denies with 403", Response{}, nil, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":false,"status":{"code":403}}}`},
		{"deny with code", DenyWithCode(422, "bad").WithWarnings("x"), nil, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"u","allowed":false,"status":{"code":422,"message":"bad"},"warnings":["x"]}}`},
	} {
		got, err := encodeResponse("u", tc.r, tc.patch)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %s, %v\nwant %s", tc.name, got, err, tc.want)
		}
	}
}

// FuzzDecodeRequest feeds the decoder what the network might send: it must
// answer or refuse, never panic, and a refusal is always a BadRequestError.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CREATE","kind":{"version":"v1","kind":"ConfigMap"},"object":{"data":{"a":"b"}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"UPDATE","kind":{"version":"v1","kind":"ConfigMap"},"object":{},"oldObject":{"metadata":{"name":"x"}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"DELETE","kind":{"version":"v1","kind":"ConfigMap"},"oldObject":{}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","operation":"CONNECT","kind":{"version":"v1","kind":"PodExecOptions"},"object":{}}}`,
		`{}`, `[]`, `null`, ``, `{"request":{}}`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w, err := decodeReview(body)
		if err == nil {
			_, err = typedRequest(w, cmGVK, newCM)
		}
		var bad *BadRequestError
		if err != nil && (!errors.As(err, &bad) || bad.Reason == "" || bad.Message == "") {
			t.Fatalf("refusal %v is not a complete BadRequestError", err)
		}
		if err == nil && !json.Valid(body) {
			t.Fatalf("accepted invalid JSON %q", body)
		}
	})
}
