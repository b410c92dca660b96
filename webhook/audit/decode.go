package audit

import (
	"encoding/json"
	"errors"
	"fmt"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
)

// Reasons a batch is rejected (label "reason" of
// skiff_audit_batches_rejected_total, and BatchError.Reason).
const (
	RejectMethod      = "method"       // not a POST
	RejectContentType = "content_type" // a Content-Type other than JSON
	RejectTooLarge    = "too_large"    // body over Options.MaxBodyBytes
	RejectRead        = "read"         // the body could not be read
	RejectNotJSON     = "not_json"     // not well-formed JSON
	RejectWrongType   = "wrong_type"   // JSON, but not an audit.k8s.io/v1 EventList
	RejectInvalid     = "invalid"      // an EventList whose fields do not decode
)

// BatchError says why a batch was rejected. Reason is one of the Reject*
// constants.
type BatchError struct {
	Reason string
	Err    error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("audit batch rejected (%s): %v", e.Reason, e.Err)
}
func (e *BatchError) Unwrap() error { return e.Err }

// wantAPIVersion and wantKind are what the API server's audit webhook
// backend sends with its default --audit-webhook-version.
const (
	wantAPIVersion = "audit.k8s.io/v1"
	wantKind       = "EventList"
)

// DecodeEventList decodes one batch as the API server's audit webhook
// backend sends it: a JSON audit.k8s.io/v1 EventList. Unknown fields are
// ignored (newer servers add some). Any other input returns a *BatchError
// naming what was wrong; it never panics.
func DecodeEventList(data []byte) (*auditv1.EventList, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) || !json.Valid(data) {
			return nil, &BatchError{RejectNotJSON, fmt.Errorf("body is not JSON: %w", err)}
		}
		return nil, &BatchError{RejectWrongType, fmt.Errorf("body is not a JSON object with apiVersion and kind: %w", err)}
	}
	if head.APIVersion != wantAPIVersion || head.Kind != wantKind {
		return nil, &BatchError{RejectWrongType, fmt.Errorf("got apiVersion %q kind %q, want apiVersion %q kind %q (set --audit-webhook-version=%s)",
			head.APIVersion, head.Kind, wantAPIVersion, wantKind, wantAPIVersion)}
	}
	var list auditv1.EventList
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, &BatchError{RejectInvalid, fmt.Errorf("decode %s %s: %w", wantAPIVersion, wantKind, err)}
	}
	return &list, nil
}
