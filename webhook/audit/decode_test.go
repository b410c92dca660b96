package audit

import (
	"errors"
	"strings"
	"testing"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/skiffkit/skiff/controller"
)

const validBatch = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[
{"level":"Metadata","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/configmaps/one","verb":"update",
 "user":{"username":"alice","groups":["devs"]},"sourceIPs":["127.0.0.1"],
 "objectRef":{"resource":"configmaps","namespace":"ns","name":"one","apiVersion":"v1"},
 "responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-02T03:04:05.123456Z","stageTimestamp":"2026-01-02T03:04:05.223456Z",
 "annotations":{"authorization.k8s.io/decision":"allow"},"someFieldFromTheFuture":true}]}`

func TestDecodeEventList(t *testing.T) {
	list, err := DecodeEventList([]byte(validBatch))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("got %d items, want 1", len(list.Items))
	}
	ev := list.Items[0]
	if ev.ObjectRef == nil || ev.ObjectRef.Name != "one" || ev.User.Username != "alice" || ev.ResponseStatus.Code != 200 {
		t.Fatalf("decoded %+v", ev)
	}
	if ev.StageTimestamp.Time.Nanosecond() != 223456000 {
		t.Fatalf("stage timestamp %v lost its microseconds", ev.StageTimestamp)
	}
}

func TestDecodeEventListRejects(t *testing.T) {
	tests := []struct {
		name, body, reason, mention string
	}{
		{"empty", ``, RejectNotJSON, "not JSON"},
		{"not JSON", `hello`, RejectNotJSON, "not JSON"},
		{"truncated", validBatch[:100], RejectNotJSON, "not JSON"},
		{"trailing data", validBatch + `{}`, RejectNotJSON, "not JSON"},
		{"array", `[1,2]`, RejectWrongType, "not a JSON object"},
		{"string", `"EventList"`, RejectWrongType, "not a JSON object"},
		{"no kind", `{"items":[]}`, RejectWrongType, `kind ""`},
		{"wrong kind", `{"kind":"Policy","apiVersion":"audit.k8s.io/v1"}`, RejectWrongType, `kind "Policy"`},
		{"old version", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[]}`, RejectWrongType, "audit.k8s.io/v1beta1"},
		{"admission review", `{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{}}`, RejectWrongType, "AdmissionReview"},
		{"items not a list", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":{}}`, RejectInvalid, "decode"},
		{"bad timestamp", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"stageTimestamp":"yesterday"}]}`, RejectInvalid, "decode"},
		{"kind of wrong type", `{"kind":7,"apiVersion":"audit.k8s.io/v1"}`, RejectWrongType, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeEventList([]byte(tt.body))
			var be *BatchError
			if !errors.As(err, &be) {
				t.Fatalf("err = %v, want a *BatchError", err)
			}
			if be.Reason != tt.reason || !strings.Contains(err.Error(), tt.mention) {
				t.Fatalf("err = %v (reason %q), want reason %q mentioning %q", err, be.Reason, tt.reason, tt.mention)
			}
		})
	}
}

func TestDecodeEmptyList(t *testing.T) {
	list, err := DecodeEventList([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":null}`))
	if err != nil || len(list.Items) != 0 {
		t.Fatalf("got %v, %v; want an empty list", list, err)
	}
}

// FuzzDecodeEventList feeds the decoder arbitrary bodies: it must never
// panic, must return either a list or a *BatchError with a known reason,
// and every list it accepts must be safe to dispatch.
func FuzzDecodeEventList(f *testing.F) {
	f.Add([]byte(validBatch))
	f.Add([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"objectRef":null,"verb":"create","responseObject":{"metadata":{"name":7}}}]}`))
	f.Add([]byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"stage":"ResponseComplete","verb":"create","objectRef":{"resource":"configmaps"},"responseObject":{"metadata":{"name":"g"}},"impersonatedUser":{"username":"x"}}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"kind":"EventList"`))
	f.Add([]byte("\xff\xfe"))
	known := map[string]bool{RejectNotJSON: true, RejectWrongType: true, RejectInvalid: true}
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := DecodeEventList(data)
		if err != nil {
			var be *BatchError
			if !errors.As(err, &be) || !known[be.Reason] {
				t.Fatalf("err = %v, want a *BatchError with a known reason", err)
			}
			if list != nil {
				t.Fatal("got a list and an error")
			}
			return
		}
		if list == nil {
			t.Fatal("nil list without an error")
		}
		r, _ := New(Options{})
		r.watches.Store(&[]*watch{{
			m:    newMatcher(configMaps, Filter{Verbs: []Verb{VerbCreate, VerbUpdate, VerbDelete, VerbDeleteCollection}, IncludeFailed: true}),
			emit: func(controller.Request, *auditv1.Event) {},
		}})
		r.dispatch(list.Items)
	})
}
