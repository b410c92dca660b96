package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// W1 fixture: AdmissionReview request bodies for the bench's pods, and the
// two handlers' logic, shared by every contender (the contenders differ
// only in the server and admission framework around them).

// The defaults the mutating handler sets.
const (
	w1Label      = "policy.bench.skiff.dev/defaulted"
	w1Annotation = "policy.bench.skiff.dev/revision"
)

var w1EphemeralDefault = resource.MustParse("256Mi")

// w1Default is the mutating handler: a label, an annotation, and an
// ephemeral-storage request on every container that has none (all of the
// bench's pods), so the patch has five operations.
func w1Default(p *corev1.Pod) {
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	p.Labels[w1Label] = "true"
	if p.Annotations == nil {
		p.Annotations = map[string]string{}
	}
	p.Annotations[w1Annotation] = "2026-11"
	for i := range p.Spec.Containers {
		c := &p.Spec.Containers[i]
		if _, ok := c.Resources.Requests[corev1.ResourceEphemeralStorage]; ok {
			continue
		}
		if c.Resources.Requests == nil {
			c.Resources.Requests = corev1.ResourceList{}
		}
		c.Resources.Requests[corev1.ResourceEphemeralStorage] = w1EphemeralDefault.DeepCopy()
	}
}

// w1Validate is the validating handler: it checks a few fields of the new
// pod (and, on update, that the old one names the same pod) and returns
// nil for every pod of the fixture.
func w1Validate(old, p *corev1.Pod) error {
	if p.Labels["app.kubernetes.io/name"] == "" {
		return errors.New("label app.kubernetes.io/name is required")
	}
	if len(p.Spec.Containers) == 0 {
		return errors.New("a pod needs a container")
	}
	for _, c := range p.Spec.Containers {
		if !strings.HasPrefix(c.Image, "registry.example.com/") {
			return fmt.Errorf("container %s: image %q is not from registry.example.com", c.Name, c.Image)
		}
		if c.Resources.Limits.Memory().IsZero() {
			return fmt.Errorf("container %s: no memory limit", c.Name)
		}
		if c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			return fmt.Errorf("container %s: privileged", c.Name)
		}
	}
	if old != nil && (old.Name != p.Name || old.UID != p.UID) {
		return fmt.Errorf("pod %s: the old object is pod %s", p.Name, old.Name)
	}
	return nil
}

// w1Review is one pre-encoded AdmissionReview request.
type w1Review struct {
	uid    string
	object []byte // the request's object (raw JSON)
	body   []byte // the whole AdmissionReview
}

// w1Reviews returns n AdmissionReviews for pods 0..n-1: CREATE with the
// new pod for mutating, UPDATE (old and new pod) for validating. Pods are
// benchPod with the fields the API server adds (uid, resourceVersion,
// creationTimestamp, managedFields, status on update): 8–12 KB of JSON
// each.
func w1Reviews(mutating bool, n int) ([]w1Review, error) {
	out := make([]w1Review, n)
	for i := range out {
		p := w1Pod(i)
		op := admissionv1.Create
		var oldRaw []byte
		opts := `{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kube-controller-manager"}`
		if !mutating {
			op = admissionv1.Update
			old := p.DeepCopy()
			old.ResourceVersion = fmt.Sprint(1000 + i)
			old.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable}
			p = old.DeepCopy()
			p.Annotations["kubernetes.io/change-cause"] += " (rollout)"
			p.Spec.Containers[0].Image += "-1"
			var err error
			if oldRaw, err = json.Marshal(old); err != nil {
				return nil, err
			}
			opts = `{"kind":"UpdateOptions","apiVersion":"meta.k8s.io/v1","fieldManager":"kubectl-client-side-apply"}`
		}
		raw, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		uid := fmt.Sprintf("0d8e5f3a-%04x-4c1b-9a77-%012x", i%0x10000, i)
		gvk := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
		gvr := metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
		rv := admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: types.UID(uid), Kind: gvk, Resource: gvr, RequestKind: &gvk, RequestResource: &gvr,
				Name: p.Name, Namespace: p.Namespace, Operation: op,
				UserInfo: authenticationv1.UserInfo{
					Username: "system:serviceaccount:kube-system:replicaset-controller",
					UID:      "6c1bd0a4-6a8e-4a7e-9d5e-0b6f1f3c2a11",
					Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
				},
				Object:    kruntime.RawExtension{Raw: raw},
				OldObject: kruntime.RawExtension{Raw: oldRaw},
				DryRun:    ptr(false),
				Options:   kruntime.RawExtension{Raw: []byte(opts)},
			},
		}
		body, err := json.Marshal(rv)
		if err != nil {
			return nil, err
		}
		out[i] = w1Review{uid: uid, object: raw, body: body}
	}
	return out, nil
}

// w1Pod is benchPod(i) as the API server holds it: namespaced, with uid,
// creationTimestamp and the managedFields of its applier.
func w1Pod(i int) *corev1.Pod {
	p := benchPod(i)
	p.Namespace = "shop"
	p.UID = types.UID(fmt.Sprintf("5f0c2b1e-%04x-4d3a-8b6e-%012x", i%0x10000, i))
	p.CreationTimestamp = metav1.Date(2026, 11, 26, 9, 0, i%60, 0, metav1.Now().Location())
	raw, _ := json.Marshal(p)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	delete(m, "status")
	md := m["metadata"].(map[string]any)
	for _, k := range []string{"creationTimestamp", "uid", "name", "namespace"} {
		delete(md, k)
	}
	fields, _ := json.Marshal(fieldSet(m))
	p.ManagedFields = []metav1.ManagedFieldsEntry{{
		Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1",
		Time: &p.CreationTimestamp, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: fields},
	}}
	return p
}

// fieldSet is the FieldsV1 set of the fields in v, as the API server
// writes it: "f:<name>" for object fields, `k:{"name":…}` for list items
// with a name, "v:<value>" for scalar list items, "." for a set member
// that has members.
func fieldSet(v any) map[string]any {
	out := map[string]any{}
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			out["f:"+k] = member(sub)
		}
	case []any:
		for i, item := range v {
			key := fmt.Sprintf("i:%d", i)
			switch it := item.(type) {
			case map[string]any:
				if name, ok := it["name"].(string); ok {
					key = `k:{"name":"` + name + `"}`
				}
			case string:
				key = "v:" + fmt.Sprintf("%q", it)
			}
			out[key] = member(item)
		}
	}
	return out
}

func member(v any) map[string]any {
	switch v.(type) {
	case map[string]any, []any:
		m := fieldSet(v)
		if len(m) > 0 {
			m["."] = map[string]any{}
		}
		return m
	}
	return map[string]any{}
}

// w1Answer is the part of an AdmissionReview response the checks read.
type w1Answer struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   struct {
		UID       string `json:"uid"`
		Allowed   bool   `json:"allowed"`
		Patch     []byte `json:"patch"`
		PatchType string `json:"patchType"`
	} `json:"response"`
}

// w1Check verifies a server's answer to rv: an allowed AdmissionReview
// response for rv's UID; for mutating, a JSON patch that turns rv's object
// into exactly what w1Default makes of it.
func w1Check(mutating bool, rv w1Review, status int, body []byte) error {
	if status != 200 {
		return fmt.Errorf("review %s: HTTP %d: %.200s", rv.uid, status, body)
	}
	var a w1Answer
	if err := json.Unmarshal(body, &a); err != nil {
		return fmt.Errorf("review %s: the answer is not an AdmissionReview: %v: %.200s", rv.uid, err, body)
	}
	if a.APIVersion != "admission.k8s.io/v1" || a.Kind != "AdmissionReview" || a.Response.UID != rv.uid || !a.Response.Allowed {
		return fmt.Errorf("review %s: answer %s/%s for uid %q, allowed %v", rv.uid, a.APIVersion, a.Kind, a.Response.UID, a.Response.Allowed)
	}
	if !mutating {
		if len(a.Response.Patch) != 0 {
			return fmt.Errorf("review %s: a validating answer with a patch", rv.uid)
		}
		return nil
	}
	if a.Response.PatchType != "JSONPatch" || len(a.Response.Patch) == 0 {
		return fmt.Errorf("review %s: patch type %q, %d bytes of patch", rv.uid, a.Response.PatchType, len(a.Response.Patch))
	}
	p, err := jsonpatch.DecodePatch(a.Response.Patch)
	if err != nil {
		return fmt.Errorf("review %s: decode the patch: %v", rv.uid, err)
	}
	patched, err := p.Apply(rv.object)
	if err != nil {
		return fmt.Errorf("review %s: apply the patch %s: %v", rv.uid, a.Response.Patch, err)
	}
	var got, want corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		return fmt.Errorf("review %s: the patched object: %v", rv.uid, err)
	}
	if err := json.Unmarshal(rv.object, &want); err != nil {
		return err
	}
	w1Default(&want)
	if !equality.Semantic.DeepEqual(&got, &want) {
		return fmt.Errorf("review %s: the patched pod differs from the defaulted pod; patch %s", rv.uid, a.Response.Patch)
	}
	return nil
}

// w1PatchOps lists a patch's operations as "op path", sorted, for tests.
func w1PatchOps(body []byte) ([]string, error) {
	var a w1Answer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, err
	}
	var ops []struct{ Op, Path string }
	if err := json.NewDecoder(bytes.NewReader(a.Response.Patch)).Decode(&ops); err != nil {
		return nil, err
	}
	out := make([]string, len(ops))
	for i, o := range ops {
		out[i] = o.Op + " " + o.Path
	}
	sort.Strings(out)
	return out, nil
}
