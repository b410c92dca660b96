package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// reviewAPIVersion is the only AdmissionReview version served; generated
// configurations ask the API server for it (admissionReviewVersions: [v1]).
const reviewAPIVersion = "admission.k8s.io/v1"

// Operation is what the API server was asked to do: Create, Update, Delete
// or Connect.
type Operation = admissionv1.Operation

// The operations of an admission request.
const (
	Create  = admissionv1.Create
	Update  = admissionv1.Update
	Delete  = admissionv1.Delete
	Connect = admissionv1.Connect
)

// wireReview is an AdmissionReview as it arrives: objects stay raw JSON so
// that they are decoded once, straight into the handler's type.
type wireReview struct {
	APIVersion string       `json:"apiVersion"`
	Kind       string       `json:"kind"`
	Request    *wireRequest `json:"request"`
}

type wireRequest struct {
	UID         types.UID                   `json:"uid"`
	Kind        metav1.GroupVersionKind     `json:"kind"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource"`
	Name        string                      `json:"name"`
	Namespace   string                      `json:"namespace"`
	Operation   Operation                   `json:"operation"`
	UserInfo    authenticationv1.UserInfo   `json:"userInfo"`
	Object      json.RawMessage             `json:"object"`
	OldObject   json.RawMessage             `json:"oldObject"`
	DryRun      *bool                       `json:"dryRun"`
}

// BadRequestError is why a request body was refused before any handler
// saw it; the server answers HTTP 400 with Message and counts Reason in
// skiff_webhook_bad_requests_total.
type BadRequestError struct {
	// Reason is a short label: body_too_large, not_json,
	// not_admission_review, api_version, no_request, no_uid, operation,
	// kind, object.
	Reason string
	// Message says what was wrong, naming the bad input.
	Message string
	// UID is the request's UID when it was readable, so the answer can
	// carry it.
	UID types.UID
}

func (e *BadRequestError) Error() string { return e.Message }

func badRequest(reason string, uid types.UID, format string, args ...any) *BadRequestError {
	return &BadRequestError{Reason: reason, UID: uid, Message: fmt.Sprintf(format, args...)}
}

// decodeReview parses body as an admission.k8s.io/v1 AdmissionReview with a
// request. It never panics, whatever body holds; a refusal is a
// *BadRequestError.
func decodeReview(body []byte) (*wireRequest, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 || body[0] != '{' {
		return nil, badRequest("not_json", "", "the body is not a JSON object (%s)", preview(body))
	}
	var rv wireReview
	if err := json.Unmarshal(body, &rv); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return nil, badRequest("not_admission_review", "", "the body is not an AdmissionReview: field %q: %v", typeErr.Field, err)
		}
		return nil, badRequest("not_json", "", "the body is not valid JSON: %v", err)
	}
	if rv.Kind != "AdmissionReview" {
		return nil, badRequest("not_admission_review", "", "the body is not an AdmissionReview (kind %q)", rv.Kind)
	}
	if rv.APIVersion != reviewAPIVersion {
		return nil, badRequest("api_version", "", "AdmissionReview apiVersion %q is not served; only %s is (set admissionReviewVersions: [v1])", rv.APIVersion, reviewAPIVersion)
	}
	req := rv.Request
	if req == nil {
		return nil, badRequest("no_request", "", "the AdmissionReview has no request")
	}
	if req.UID == "" {
		return nil, badRequest("no_uid", "", "the AdmissionReview request has no uid")
	}
	switch req.Operation {
	case Create, Update, Delete, Connect:
	default:
		return nil, badRequest("operation", req.UID, "unknown operation %q in request %s", req.Operation, req.UID)
	}
	return req, nil
}

// preview is the start of b, for error messages.
func preview(b []byte) string {
	const n = 32
	if len(b) > n {
		return fmt.Sprintf("%q...", b[:n])
	}
	return fmt.Sprintf("%q", b)
}

// present reports whether a raw object was sent (not absent, not null).
func present(raw json.RawMessage) bool { return len(raw) > 0 && !bytes.Equal(raw, []byte("null")) }

// Response is a handler's decision. The zero value denies with no reason;
// build one with Allow, Deny or DenyWithCode.
type Response struct {
	// Allowed admits the request.
	Allowed bool
	// Code is the HTTP status the API server returns to its client on a
	// denial. Default (0) for a denial: 403 Forbidden.
	Code int32
	// Reason is the message a denied client sees.
	Reason string
	// Warnings are shown to the client (kubectl prints them) whether or
	// not the request is allowed.
	Warnings []string
}

// Allow admits the request, with optional warnings.
func Allow(warnings ...string) Response { return Response{Allowed: true, Warnings: warnings} }

// Deny refuses the request with reason and HTTP 403.
func Deny(reason string) Response { return Response{Reason: reason, Code: http.StatusForbidden} }

// DenyWithCode refuses the request with reason and the given HTTP code
// (400 to 599).
func DenyWithCode(code int32, reason string) Response { return Response{Reason: reason, Code: code} }

// WithWarnings returns r with warnings added.
func (r Response) WithWarnings(warnings ...string) Response {
	r.Warnings = append(append([]string(nil), r.Warnings...), warnings...)
	return r
}

// Request is one admission request, with its objects decoded into T.
type Request[T any] struct {
	// UID identifies the request; the answer carries it back.
	UID types.UID
	// Operation is Create, Update, Delete or Connect.
	Operation Operation
	// Kind is the kind of Object: T's group/version/kind (other kinds are
	// refused before the handler runs), except for Connect, whose object
	// is the connect options (PodExecOptions, say).
	Kind schema.GroupVersionKind
	// Resource and SubResource are what the request was sent to
	// ("pods", "status").
	Resource    schema.GroupVersionResource
	SubResource string
	// Namespace and Name of the object. Name may be empty on Create when
	// the client asked for generateName.
	Namespace, Name string
	// Object is the new object: set on Create and Update, the zero value
	// (nil) on Delete (a DELETE carries only the old object) and Connect.
	// A mutating handler changes this object; it is its own copy.
	Object T
	// OldObject is the existing object: set on Update and Delete, the zero
	// value (nil) on Create and Connect.
	OldObject T
	// RawObject is the request's object as sent (raw JSON; for Connect the
	// connect options). Shared: do not modify.
	RawObject []byte
	// UserInfo is who made the request.
	UserInfo authenticationv1.UserInfo
	// DryRun is true when the request will not be persisted. A handler
	// with side effects (it writes elsewhere) must skip them when DryRun
	// is true, and its webhook must declare SideEffects NoneOnDryRun.
	DryRun bool
}

// wireResponse is the AdmissionReview the server answers with.
type wireResponse struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Response   wireResponseInner `json:"response"`
}

type wireResponseInner struct {
	UID       types.UID   `json:"uid"`
	Allowed   bool        `json:"allowed"`
	Status    *wireStatus `json:"status,omitempty"`
	Patch     []byte      `json:"patch,omitempty"`
	PatchType *string     `json:"patchType,omitempty"`
	Warnings  []string    `json:"warnings,omitempty"`
}

type wireStatus struct {
	Code    int32  `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

var jsonPatchType = string(admissionv1.PatchTypeJSONPatch)

// encodeResponse is the AdmissionReview answering uid with r (and patch,
// for a mutation that changed something).
func encodeResponse(uid types.UID, r Response, patch []byte) ([]byte, error) {
	out := wireResponse{APIVersion: reviewAPIVersion, Kind: "AdmissionReview",
		Response: wireResponseInner{UID: uid, Allowed: r.Allowed, Warnings: r.Warnings}}
	if !r.Allowed {
		code := r.Code
		if code == 0 {
			code = http.StatusForbidden
		}
		out.Response.Status = &wireStatus{Code: code, Message: r.Reason}
	} else if r.Reason != "" {
		out.Response.Status = &wireStatus{Message: r.Reason}
	}
	if r.Allowed && len(patch) > 0 {
		out.Response.Patch = patch
		out.Response.PatchType = &jsonPatchType
	}
	return json.Marshal(out)
}
