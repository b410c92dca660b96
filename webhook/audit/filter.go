package audit

import (
	"encoding/json"
	"slices"

	"k8s.io/apimachinery/pkg/runtime/schema"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/skiffkit/skiff/controller"
)

// Verb is the Kubernetes API verb of an audited request.
type Verb string

// The verbs of writes. Reads (get, list, watch) are verbs too, but audit
// events for them rarely make useful triggers.
const (
	VerbCreate           Verb = "create"
	VerbUpdate           Verb = "update"
	VerbPatch            Verb = "patch"
	VerbDelete           Verb = "delete"
	VerbDeleteCollection Verb = "deletecollection"
)

// DefaultVerbs are the verbs a Filter with no Verbs matches: the writes that
// name one object.
var DefaultVerbs = []Verb{VerbCreate, VerbUpdate, VerbPatch, VerbDelete}

// Filter says which audit events of a watched type become keys. The zero
// value matches successful create, update, patch and delete requests on the
// object itself or its status, by anyone, in any namespace, at stage
// ResponseComplete. Every list is a set: an event passes a list if it
// matches any entry, and an empty list passes every event.
type Filter struct {
	// Namespaces limits events to objects in these namespaces (the
	// objectRef's namespace; "" is cluster-scoped). Default: any.
	Namespaces []string
	// Verbs limits events to these verbs. Default: DefaultVerbs.
	// VerbDeleteCollection events name no object, so they are counted as
	// skipped (reason "no_name"), never enqueued.
	Verbs []Verb
	// Users limits events to requests by these user names. The user is the
	// impersonated one when the request impersonated. Default: any.
	Users []string
	// ExcludeUsers drops events of requests by these user names — put the
	// controller's own identity here (for a service account:
	// "system:serviceaccount:<namespace>:<name>") so its own writes do not
	// trigger it again. Default: none.
	ExcludeUsers []string
	// Groups limits events to requests by users in any of these groups.
	// Default: any.
	Groups []string
	// ExcludeGroups drops events of requests by users in any of these
	// groups. Default: none.
	ExcludeGroups []string
	// Subresources limits events to these subresources of the type; ""
	// is the object itself. Default: "" and "status".
	Subresources []string
	// Stages limits events to these stages. Default: ResponseComplete only
	// (the request is finished and its result known; each request then
	// makes at most one key).
	Stages []auditv1.Stage
	// IncludeFailed also passes events whose response status is not 2xx
	// (denied, conflicting, invalid requests: nothing changed). Events that
	// carry no response status (stages before ResponseComplete) pass either
	// way. Default false: successful requests only.
	IncludeFailed bool
}

var (
	defaultSubresources = []string{"", "status"}
	defaultStages       = []auditv1.Stage{auditv1.StageResponseComplete}
)

// matcher is a Filter for one group/resource with its defaults applied.
type matcher struct {
	resource schema.GroupResource
	f        Filter
}

func newMatcher(gr schema.GroupResource, f Filter) matcher {
	f.Namespaces = slices.Clone(f.Namespaces)
	f.Verbs = slices.Clone(f.Verbs)
	if len(f.Verbs) == 0 {
		f.Verbs = slices.Clone(DefaultVerbs)
	}
	f.Users, f.ExcludeUsers = slices.Clone(f.Users), slices.Clone(f.ExcludeUsers)
	f.Groups, f.ExcludeGroups = slices.Clone(f.Groups), slices.Clone(f.ExcludeGroups)
	f.Subresources = slices.Clone(f.Subresources)
	if len(f.Subresources) == 0 {
		f.Subresources = defaultSubresources
	}
	f.Stages = slices.Clone(f.Stages)
	if len(f.Stages) == 0 {
		f.Stages = defaultStages
	}
	return matcher{resource: gr, f: f}
}

// match reports whether ev passes the filter. It reads ev only.
func (m *matcher) match(ev *auditv1.Event) bool {
	ref := ev.ObjectRef
	if ref == nil || ref.APIGroup != m.resource.Group || ref.Resource != m.resource.Resource {
		return false
	}
	f := &m.f
	if !slices.Contains(f.Stages, ev.Stage) ||
		!slices.Contains(f.Verbs, Verb(ev.Verb)) ||
		!slices.Contains(f.Subresources, ref.Subresource) ||
		!anyOrContains(f.Namespaces, ref.Namespace) {
		return false
	}
	user := ev.User
	if ev.ImpersonatedUser != nil {
		user = *ev.ImpersonatedUser
	}
	if !anyOrContains(f.Users, user.Username) || slices.Contains(f.ExcludeUsers, user.Username) {
		return false
	}
	if len(f.Groups) > 0 && !intersects(f.Groups, user.Groups) {
		return false
	}
	if intersects(f.ExcludeGroups, user.Groups) {
		return false
	}
	if !f.IncludeFailed && ev.ResponseStatus != nil {
		if c := ev.ResponseStatus.Code; c != 0 && (c < 200 || c > 299) {
			return false
		}
		if c := ev.ResponseStatus.Code; c == 0 && ev.ResponseStatus.Status == "Failure" {
			return false
		}
	}
	return true
}

func anyOrContains(set []string, s string) bool { return len(set) == 0 || slices.Contains(set, s) }

func intersects(a, b []string) bool {
	for _, s := range a {
		if slices.Contains(b, s) {
			return true
		}
	}
	return false
}

// Reasons a matching event makes no key (label "reason" of
// skiff_audit_events_skipped_total).
const (
	// SkipNoName: the event names no object — a deletecollection, or a
	// create with generateName whose audit level (below RequestResponse)
	// leaves out the response object that carries the generated name.
	SkipNoName = "no_name"
)

// keyOf returns the key of the object ev is about, or a skip reason. The
// name comes from the objectRef; for a create that had none (generateName),
// from the response object's metadata when the policy level logged it.
func keyOf(ev *auditv1.Event) (controller.Request, string) {
	ref := ev.ObjectRef
	key := controller.Request{Namespace: ref.Namespace, Name: ref.Name}
	if key.Name != "" {
		return key, ""
	}
	if Verb(ev.Verb) == VerbCreate && ev.ResponseObject != nil && len(ev.ResponseObject.Raw) > 0 {
		var obj struct {
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if json.Unmarshal(ev.ResponseObject.Raw, &obj) == nil && obj.Metadata.Name != "" {
			key.Name = obj.Metadata.Name
			if key.Namespace == "" {
				key.Namespace = obj.Metadata.Namespace
			}
			return key, ""
		}
	}
	return controller.Request{}, SkipNoName
}
