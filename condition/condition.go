// Package condition maintains the status conditions of an object
// ([]metav1.Condition, the list under .status.conditions) the way the
// Kubernetes API conventions describe them:
//
//   - at most one condition per type;
//   - lastTransitionTime moves only when the status changes, so it says since
//     when the condition has held, not when a controller last looked;
//   - observedGeneration records the .metadata.generation the condition was
//     computed from, so a reader can tell a current condition from a stale one
//     (IsCurrent).
//
// Time is an argument (Set's now), never read from the wall clock, so callers
// and tests decide what "now" is. Nothing here talks to the API server: write
// the object's status with your client after Set reports a change.
//
// The functions are not safe for concurrent use on the same slice; a
// reconcile owns the object it is building.
package condition

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Limits from the field documentation of metav1.Condition (the OpenAPI
// validation the API server applies to CRDs that embed it).
const (
	// MaxTypeLength is the longest condition type accepted.
	MaxTypeLength = 316
	// MaxReasonLength is the longest reason accepted.
	MaxReasonLength = 1024
	// MaxMessageLength is the longest message accepted, in bytes.
	MaxMessageLength = 32768
)

var (
	// typePattern: an optional DNS-subdomain prefix and a slash, then a name
	// of letters, digits, '-', '_' and '.', starting and ending with a letter
	// or digit ("Ready", "example.com/Synced").
	typePattern = regexp.MustCompile(`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$`)
	// reasonPattern: CamelCase-ish; a letter first, then letters, digits,
	// '_', ',' or ':', not ending in ',' or ':' ("MinimumReplicasAvailable").
	reasonPattern = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)
)

// ErrInvalid is wrapped by every validation error, so callers can test for it
// with errors.Is. The error text names the bad field and value.
var ErrInvalid = errors.New("invalid condition")

// Validate reports whether c would be accepted by the API server's schema for
// metav1.Condition: type matches the qualified-name pattern and is at most
// MaxTypeLength characters; status is True, False or Unknown; reason matches
// ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$ and is 1..MaxReasonLength
// characters; message is at most MaxMessageLength bytes; observedGeneration
// is not negative. lastTransitionTime is not checked (Set fills it in).
// The error wraps ErrInvalid and names the first bad field.
func Validate(c metav1.Condition) error {
	switch {
	case c.Type == "":
		return fmt.Errorf("%w: type is empty", ErrInvalid)
	case len(c.Type) > MaxTypeLength:
		return fmt.Errorf("%w: type %q is %d characters, more than %d", ErrInvalid, c.Type, len(c.Type), MaxTypeLength)
	case !typePattern.MatchString(c.Type):
		return fmt.Errorf("%w: type %q: want a name of letters, digits, '-', '_', '.' starting and ending with a letter or digit, optionally prefixed by a DNS subdomain and '/' (e.g. Ready, example.com/Synced)", ErrInvalid, c.Type)
	}
	switch c.Status {
	case metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown:
	default:
		return fmt.Errorf("%w: condition %q: status %q: want True, False or Unknown", ErrInvalid, c.Type, c.Status)
	}
	switch {
	case c.Reason == "":
		return fmt.Errorf("%w: condition %q: reason is empty", ErrInvalid, c.Type)
	case len(c.Reason) > MaxReasonLength:
		return fmt.Errorf("%w: condition %q: reason is %d characters, more than %d", ErrInvalid, c.Type, len(c.Reason), MaxReasonLength)
	case !reasonPattern.MatchString(c.Reason):
		return fmt.Errorf("%w: condition %q: reason %q: want CamelCase (a letter, then letters, digits, '_', ',' or ':'; not ending in ',' or ':')", ErrInvalid, c.Type, c.Reason)
	}
	if len(c.Message) > MaxMessageLength {
		return fmt.Errorf("%w: condition %q: message is %d bytes, more than %d", ErrInvalid, c.Type, len(c.Message), MaxMessageLength)
	}
	if c.ObservedGeneration < 0 {
		return fmt.Errorf("%w: condition %q: observedGeneration %d is negative", ErrInvalid, c.Type, c.ObservedGeneration)
	}
	return nil
}

// Set puts c into *conds, replacing the condition of the same type or
// appending it (the order of the others is kept), and reports whether
// anything changed. c must pass Validate; otherwise *conds is left untouched
// and the error names the bad field.
//
// Status, reason, message and observedGeneration are copied from c (set
// c.ObservedGeneration to the object's .metadata.generation). The
// lastTransitionTime of c is ignored: it becomes now when the condition is
// new or its status changes, and is kept otherwise. now is truncated to whole
// seconds, the precision metav1.Time has on the wire, so the object in memory
// equals what the API server will return.
func Set(conds *[]metav1.Condition, c metav1.Condition, now time.Time) (changed bool, err error) {
	if conds == nil {
		return false, fmt.Errorf("set condition %q: conditions pointer is nil", c.Type)
	}
	if err := Validate(c); err != nil {
		return false, err
	}
	transition := metav1.NewTime(now.Truncate(time.Second))
	existing := Find(*conds, c.Type)
	if existing == nil {
		c.LastTransitionTime = transition
		*conds = append(*conds, c)
		return true, nil
	}
	if existing.Status != c.Status {
		existing.Status = c.Status
		existing.LastTransitionTime = transition
		changed = true
	}
	if existing.Reason != c.Reason {
		existing.Reason = c.Reason
		changed = true
	}
	if existing.Message != c.Message {
		existing.Message = c.Message
		changed = true
	}
	if existing.ObservedGeneration != c.ObservedGeneration {
		existing.ObservedGeneration = c.ObservedGeneration
		changed = true
	}
	return changed, nil
}

// Find returns the condition of type t in conds, or nil. The pointer points
// into conds: writes through it change the slice's element, and it is
// invalidated by anything that reallocates or reorders the slice (Set
// appending, Remove).
func Find(conds []metav1.Condition, t string) *metav1.Condition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// IsTrue reports whether conds has a condition of type t with status True.
// A missing condition is not true.
func IsTrue(conds []metav1.Condition, t string) bool {
	c := Find(conds, t)
	return c != nil && c.Status == metav1.ConditionTrue
}

// IsFalse reports whether conds has a condition of type t with status False.
// A missing condition (or one whose status is Unknown) is not false.
func IsFalse(conds []metav1.Condition, t string) bool {
	c := Find(conds, t)
	return c != nil && c.Status == metav1.ConditionFalse
}

// IsCurrent reports whether conds has a condition of type t computed from
// generation (its observedGeneration equals generation), whatever its status.
// Use it to tell whether a condition already reflects the object's latest
// spec: IsCurrent(obj.Status.Conditions, "Ready", obj.Generation).
func IsCurrent(conds []metav1.Condition, t string, generation int64) bool {
	c := Find(conds, t)
	return c != nil && c.ObservedGeneration == generation
}

// Remove deletes the condition of type t from *conds, keeping the order of
// the others, and reports whether there was one. A nil pointer removes
// nothing.
func Remove(conds *[]metav1.Condition, t string) bool {
	if conds == nil {
		return false
	}
	for i := range *conds {
		if (*conds)[i].Type == t {
			*conds = append((*conds)[:i], (*conds)[i+1:]...)
			return true
		}
	}
	return false
}
