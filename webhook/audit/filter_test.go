package audit

import (
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/skiffkit/skiff/controller"
)

var configMaps = schema.GroupResource{Resource: "configmaps"}

// event is a successful ResponseComplete update of configmap ns/name by
// alice (group devs); change edits it.
func event(change func(*auditv1.Event)) *auditv1.Event {
	ev := &auditv1.Event{
		Stage: auditv1.StageResponseComplete,
		Verb:  "update",
		User:  authnv1.UserInfo{Username: "alice", Groups: []string{"devs", "system:authenticated"}},
		ObjectRef: &auditv1.ObjectReference{
			Resource: "configmaps", Namespace: "ns", Name: "name", APIVersion: "v1",
		},
		ResponseStatus: &metav1.Status{Code: 200},
	}
	if change != nil {
		change(ev)
	}
	return ev
}

func TestMatch(t *testing.T) {
	tests := []struct {
		name   string
		gr     schema.GroupResource
		filter Filter
		change func(*auditv1.Event)
		want   bool
	}{
		{"zero filter passes a successful update", configMaps, Filter{}, nil, true},
		{"other resource", schema.GroupResource{Resource: "secrets"}, Filter{}, nil, false},
		{"same resource name, other group", schema.GroupResource{Group: "example.com", Resource: "configmaps"}, Filter{}, nil, false},
		{"no objectRef", configMaps, Filter{}, func(e *auditv1.Event) { e.ObjectRef = nil }, false},
		{"default verbs: create", configMaps, Filter{}, func(e *auditv1.Event) { e.Verb = "create" }, true},
		{"default verbs: patch", configMaps, Filter{}, func(e *auditv1.Event) { e.Verb = "patch" }, true},
		{"default verbs: delete", configMaps, Filter{}, func(e *auditv1.Event) { e.Verb = "delete" }, true},
		{"default verbs exclude get", configMaps, Filter{}, func(e *auditv1.Event) { e.Verb = "get" }, false},
		{"default verbs exclude deletecollection", configMaps, Filter{}, func(e *auditv1.Event) { e.Verb = "deletecollection" }, false},
		{"chosen verbs", configMaps, Filter{Verbs: []Verb{VerbDelete}}, nil, false},
		{"default stage excludes RequestReceived", configMaps, Filter{}, func(e *auditv1.Event) { e.Stage = auditv1.StageRequestReceived; e.ResponseStatus = nil }, false},
		{"chosen stage RequestReceived, no status", configMaps, Filter{Stages: []auditv1.Stage{auditv1.StageRequestReceived}}, func(e *auditv1.Event) { e.Stage = auditv1.StageRequestReceived; e.ResponseStatus = nil }, true},
		{"namespace in set", configMaps, Filter{Namespaces: []string{"x", "ns"}}, nil, true},
		{"namespace not in set", configMaps, Filter{Namespaces: []string{"x"}}, nil, false},
		{"user in set", configMaps, Filter{Users: []string{"alice"}}, nil, true},
		{"user not in set", configMaps, Filter{Users: []string{"bob"}}, nil, false},
		{"excluded user", configMaps, Filter{ExcludeUsers: []string{"alice"}}, nil, false},
		{"impersonated user is the one filtered", configMaps, Filter{ExcludeUsers: []string{"bob"}}, func(e *auditv1.Event) { e.ImpersonatedUser = &authnv1.UserInfo{Username: "bob"} }, false},
		{"impersonator not excluded when impersonating", configMaps, Filter{ExcludeUsers: []string{"alice"}}, func(e *auditv1.Event) { e.ImpersonatedUser = &authnv1.UserInfo{Username: "bob"} }, true},
		{"group in set", configMaps, Filter{Groups: []string{"ops", "devs"}}, nil, true},
		{"group not in set", configMaps, Filter{Groups: []string{"ops"}}, nil, false},
		{"excluded group", configMaps, Filter{ExcludeGroups: []string{"devs"}}, nil, false},
		{"status subresource by default", configMaps, Filter{}, func(e *auditv1.Event) { e.ObjectRef.Subresource = "status" }, true},
		{"other subresource not by default", configMaps, Filter{}, func(e *auditv1.Event) { e.ObjectRef.Subresource = "scale" }, false},
		{"chosen subresource", configMaps, Filter{Subresources: []string{"scale"}}, func(e *auditv1.Event) { e.ObjectRef.Subresource = "scale" }, true},
		{"failed request", configMaps, Filter{}, func(e *auditv1.Event) { e.ResponseStatus = &metav1.Status{Code: 409} }, false},
		{"failure status without code", configMaps, Filter{}, func(e *auditv1.Event) { e.ResponseStatus = &metav1.Status{Status: metav1.StatusFailure} }, false},
		{"failed request with IncludeFailed", configMaps, Filter{IncludeFailed: true}, func(e *auditv1.Event) { e.ResponseStatus = &metav1.Status{Code: 403} }, true},
		{"201 created", configMaps, Filter{}, func(e *auditv1.Event) { e.Verb = "create"; e.ResponseStatus = &metav1.Status{Code: 201} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMatcher(tt.gr, tt.filter)
			if got := m.match(event(tt.change)); got != tt.want {
				t.Fatalf("match = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewMatcherDoesNotAliasTheCallersFilter(t *testing.T) {
	ns := []string{"a"}
	m := newMatcher(configMaps, Filter{Namespaces: ns})
	ns[0] = "ns"
	if m.match(event(nil)) {
		t.Fatal("changing the caller's slice after Watch changed the filter")
	}
}

func TestKeyOf(t *testing.T) {
	tests := []struct {
		name     string
		change   func(*auditv1.Event)
		want     controller.Request
		wantSkip string
	}{
		{"name from objectRef", nil, controller.Request{Namespace: "ns", Name: "name"}, ""},
		{"cluster-scoped", func(e *auditv1.Event) { e.ObjectRef.Namespace = "" }, controller.Request{Name: "name"}, ""},
		{"generateName create with response object", func(e *auditv1.Event) {
			e.Verb, e.ObjectRef.Name = "create", ""
			e.ResponseObject = &runtime.Unknown{Raw: []byte(`{"kind":"ConfigMap","metadata":{"name":"gen-x7k2","namespace":"ns"}}`)}
		}, controller.Request{Namespace: "ns", Name: "gen-x7k2"}, ""},
		{"generateName create at Metadata level", func(e *auditv1.Event) { e.Verb, e.ObjectRef.Name = "create", "" }, controller.Request{}, SkipNoName},
		{"response object that is not JSON", func(e *auditv1.Event) {
			e.Verb, e.ObjectRef.Name = "create", ""
			e.ResponseObject = &runtime.Unknown{Raw: []byte(`{"metadata":`)}
		}, controller.Request{}, SkipNoName},
		{"response object of an update is not used", func(e *auditv1.Event) {
			e.ObjectRef.Name = ""
			e.ResponseObject = &runtime.Unknown{Raw: []byte(`{"metadata":{"name":"x"}}`)}
		}, controller.Request{}, SkipNoName},
		{"deletecollection", func(e *auditv1.Event) { e.Verb, e.ObjectRef.Name = "deletecollection", "" }, controller.Request{}, SkipNoName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skip := keyOf(event(tt.change))
			if got != tt.want || skip != tt.wantSkip {
				t.Fatalf("keyOf = %v, %q; want %v, %q", got, skip, tt.want, tt.wantSkip)
			}
		})
	}
}
