package conversion

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ReviewAPIVersion is the only ConversionReview version the webhook speaks;
// the CRD's conversionReviewVersions must list it (Stanza does).
const ReviewAPIVersion = "apiextensions.k8s.io/v1"

// review is the wire form of an apiextensions.k8s.io/v1 ConversionReview.
type review struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Request    *request  `json:"request,omitempty"`
	Response   *response `json:"response,omitempty"`
}

type request struct {
	UID               types.UID         `json:"uid"`
	DesiredAPIVersion string            `json:"desiredAPIVersion"`
	Objects           []json.RawMessage `json:"objects"`
}

type response struct {
	UID              types.UID         `json:"uid"`
	ConvertedObjects []json.RawMessage `json:"convertedObjects"`
	Result           metav1.Status     `json:"result"`
}

// badRequest is a request the webhook cannot answer with a ConversionReview:
// it becomes HTTP 400 with the message.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

// decodeReview parses a ConversionReview request body. Any error is a
// *badRequest naming what is wrong.
func decodeReview(body []byte) (*request, error) {
	var rv review
	if err := utiljson.Unmarshal(body, &rv); err != nil {
		return nil, &badRequest{fmt.Sprintf("request body is not a JSON ConversionReview: %v", err)}
	}
	if rv.Kind != "ConversionReview" {
		return nil, &badRequest{fmt.Sprintf("request body is kind %q (apiVersion %q), not a ConversionReview", rv.Kind, rv.APIVersion)}
	}
	if rv.APIVersion != ReviewAPIVersion {
		return nil, &badRequest{fmt.Sprintf("ConversionReview apiVersion %q is not supported: only %s (set the CRD's conversionReviewVersions to [v1])", rv.APIVersion, ReviewAPIVersion)}
	}
	if rv.Request == nil {
		return nil, &badRequest{"ConversionReview has no request"}
	}
	if rv.Request.UID == "" {
		return nil, &badRequest{"ConversionReview request has no uid"}
	}
	return rv.Request, nil
}

// answer converts every object of req and returns the response: Success with
// the converted objects in request order, or Failure with a message naming
// the first object that could not be converted.
func (w *Webhook[H]) answer(req *request) *review {
	resp := &response{UID: req.UID, ConvertedObjects: []json.RawMessage{}, Result: metav1.Status{Status: metav1.StatusSuccess}}
	out, err := w.convertAll(req)
	if err != nil {
		resp.Result = metav1.Status{Status: metav1.StatusFailure, Message: err.Error()}
	} else {
		resp.ConvertedObjects = out
	}
	return &review{APIVersion: ReviewAPIVersion, Kind: "ConversionReview", Response: resp}
}

func (w *Webhook[H]) convertAll(req *request) ([]json.RawMessage, error) {
	desired, err := schema.ParseGroupVersion(req.DesiredAPIVersion)
	if err != nil || req.DesiredAPIVersion == "" {
		return nil, fmt.Errorf("desired apiVersion %q is not a group/version", req.DesiredAPIVersion)
	}
	w.mu.RLock()
	to, ok := w.versions[desired.Version]
	w.mu.RUnlock()
	if desired.Group != w.gk.Group || !ok {
		return nil, fmt.Errorf("desired apiVersion %q is unknown to this webhook: it converts %v between versions %v", req.DesiredAPIVersion, w.gk, w.versionNames())
	}
	out := make([]json.RawMessage, len(req.Objects))
	for i, raw := range req.Objects {
		c, err := w.convert(raw, to)
		if err != nil {
			return nil, fmt.Errorf("object %d of %d%s: %w", i, len(req.Objects), describeRaw(raw), err)
		}
		out[i] = c
	}
	return out, nil
}

func (w *Webhook[H]) versionNames() []string {
	var names []string
	for _, gvk := range w.Versions() {
		names = append(names, gvk.Version)
	}
	return names
}

// header is what the webhook reads of an object before knowing its type.
type header struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"metadata"`
}

// describeRaw names an object for an error message (" (ns/name, apiVersion
// Kind)"), or returns "" when it cannot be read.
func describeRaw(raw []byte) string {
	var h header
	if utiljson.Unmarshal(raw, &h) != nil {
		return ""
	}
	name := h.Metadata.Name
	if h.Metadata.Namespace != "" {
		name = h.Metadata.Namespace + "/" + name
	}
	return fmt.Sprintf(" (%s, %s %s)", name, h.APIVersion, h.Kind)
}

// convert turns one object into version to, through the hub.
func (w *Webhook[H]) convert(raw []byte, to *version) ([]byte, error) {
	var h header
	if err := utiljson.Unmarshal(raw, &h); err != nil {
		return nil, fmt.Errorf("not a JSON object: %v", err)
	}
	gv, err := schema.ParseGroupVersion(h.APIVersion)
	if err != nil || h.APIVersion == "" {
		return nil, fmt.Errorf("apiVersion %q is not a group/version", h.APIVersion)
	}
	if gk := gv.WithKind(h.Kind).GroupKind(); gk != w.gk {
		return nil, fmt.Errorf("kind %v is unknown to this webhook: it converts %v", gk, w.gk)
	}
	w.mu.RLock()
	from, ok := w.versions[gv.Version]
	hub := w.versions[w.hubVersion]
	w.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("version %s is unknown to this webhook: it converts %v between versions %v", gv.Version, w.gk, w.versionNames())
	}
	if from == to {
		return raw, nil // already in the desired version: nothing to do, nothing to lose
	}
	src := from.newObj()
	if err := utiljson.Unmarshal(raw, src); err != nil {
		return nil, fmt.Errorf("decode as %T: %v", src, err)
	}
	srcMeta, _ := objectMeta(src)
	before := srcMeta.DeepCopy()

	mid := src
	if from != hub {
		mid = hub.newObj()
		copyMeta(src, mid)
		if err := from.toHub(src, mid); err != nil {
			return nil, fmt.Errorf("convert %s to hub %s: %w", from.gvk.Version, hub.gvk.Version, err)
		}
	}
	dst := mid
	if to != hub {
		dst = to.newObj()
		copyMeta(mid, dst)
		if err := to.fromHub(mid, dst); err != nil {
			return nil, fmt.Errorf("convert hub %s to %s: %w", hub.gvk.Version, to.gvk.Version, err)
		}
	}
	dstMeta, ok := objectMeta(dst)
	if !ok {
		return nil, errors.New("conversion left no metadata") // unreachable: describe checked the type
	}
	if err := checkMeta(before, dstMeta); err != nil {
		return nil, fmt.Errorf("convert %s to %s: %w", from.gvk.Version, to.gvk.Version, err)
	}
	dst.GetObjectKind().SetGroupVersionKind(to.gvk)
	b, err := json.Marshal(dst)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %v", dst, err)
	}
	return b, nil
}

// copyMeta sets dst's metadata to a deep copy of src's.
func copyMeta(src, dst Object) {
	s, _ := objectMeta(src)
	d, _ := objectMeta(dst)
	s.DeepCopyInto(d)
}

// metaRule is a metadata field a conversion must keep.
type metaRule struct {
	name string
	get  func(*metav1.ObjectMeta) any
}

// keptMeta lists every ObjectMeta field except annotations. The API server
// restores all of them but labels from the original object anyway (and
// rejects a changed name, namespace or uid), so a conversion that changes
// one is a bug whose effect would silently vanish or fail later: refuse it
// here, by name. Labels are kept too, although the server would accept new
// ones: an object's labels are how it is selected, and must not depend on
// the version it is read at.
var keptMeta = []metaRule{
	{"name", func(m *metav1.ObjectMeta) any { return m.Name }},
	{"namespace", func(m *metav1.ObjectMeta) any { return m.Namespace }},
	{"uid", func(m *metav1.ObjectMeta) any { return m.UID }},
	{"labels", func(m *metav1.ObjectMeta) any { return m.Labels }},
	{"generateName", func(m *metav1.ObjectMeta) any { return m.GenerateName }},
	{"resourceVersion", func(m *metav1.ObjectMeta) any { return m.ResourceVersion }},
	{"generation", func(m *metav1.ObjectMeta) any { return m.Generation }},
	{"creationTimestamp", func(m *metav1.ObjectMeta) any { return m.CreationTimestamp }},
	{"deletionTimestamp", func(m *metav1.ObjectMeta) any { return m.DeletionTimestamp }},
	{"deletionGracePeriodSeconds", func(m *metav1.ObjectMeta) any { return m.DeletionGracePeriodSeconds }},
	{"ownerReferences", func(m *metav1.ObjectMeta) any { return m.OwnerReferences }},
	{"finalizers", func(m *metav1.ObjectMeta) any { return m.Finalizers }},
	{"managedFields", func(m *metav1.ObjectMeta) any { return m.ManagedFields }},
	{"selfLink", func(m *metav1.ObjectMeta) any { return m.SelfLink }},
}

// checkMeta refuses a conversion that changed anything in metadata but the
// annotations, or left annotations the API server would reject.
func checkMeta(before, after *metav1.ObjectMeta) error {
	for _, r := range keptMeta {
		if b, a := r.get(before), r.get(after); !apiequality.Semantic.DeepEqual(b, a) {
			return fmt.Errorf("the conversion changed metadata.%s (from %v to %v); a conversion must keep all metadata but annotations", r.name, show(b), show(a))
		}
	}
	if maps.Equal(before.Annotations, after.Annotations) {
		return nil
	}
	if errs := apivalidation.ValidateAnnotations(after.Annotations, field.NewPath("metadata", "annotations")); len(errs) > 0 {
		return fmt.Errorf("the conversion left invalid annotations: %v", errs.ToAggregate())
	}
	return nil
}

// show renders a metadata value for an error message.
func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
