package event

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Limits the API server enforces on events.k8s.io/v1 Events (its event
// validation: reason, action and reportingInstance at most 128 characters,
// note at most 1 KiB).
const (
	MaxReasonLength   = 128
	MaxActionLength   = 128
	MaxInstanceLength = 128
	MaxNoteLength     = 1024
)

// truncatedMarker ends a note that was cut to MaxNoteLength.
const truncatedMarker = " ...(truncated)"

// Object is what an Event can be about: a Kubernetes object with metadata,
// given as its Go type — *corev1.ConfigMap, *appsv1.Deployment, a pointer to
// your CRD struct, or *unstructured.Unstructured with apiVersion and kind set.
type Object interface {
	metav1.Object
	runtime.Object
}

// ErrUnknownKind is wrapped by the error Event returns when the regarding
// object's Go type is in neither Options.Scheme nor client-go's scheme.
var ErrUnknownKind = errors.New("kind not found in the scheme")

// reference builds the ObjectReference of obj, its kind looked up in the
// schemes in order.
func reference(obj Object, schemes []*runtime.Scheme) (corev1.ObjectReference, error) {
	if obj == nil {
		return corev1.ObjectReference{}, errors.New("regarding object is nil")
	}
	if v := reflect.ValueOf(obj); v.Kind() == reflect.Pointer && v.IsNil() {
		return corev1.ObjectReference{}, fmt.Errorf("regarding object is a nil %T", obj)
	}
	if obj.GetName() == "" {
		return corev1.ObjectReference{}, fmt.Errorf("regarding %T has no name", obj)
	}
	var lastErr error
	for _, s := range schemes {
		gvks, _, err := s.ObjectKinds(obj)
		if err != nil {
			lastErr = err
			continue
		}
		for _, gvk := range gvks {
			if gvk.Version == "" || gvk.Version == runtime.APIVersionInternal {
				continue
			}
			apiVersion, kind := gvk.ToAPIVersionAndKind()
			return corev1.ObjectReference{
				APIVersion:      apiVersion,
				Kind:            kind,
				Namespace:       obj.GetNamespace(),
				Name:            obj.GetName(),
				UID:             obj.GetUID(),
				ResourceVersion: obj.GetResourceVersion(),
			}, nil
		}
	}
	return corev1.ObjectReference{}, fmt.Errorf("regarding %T %s: %w (register the type in Options.Scheme): %v",
		obj, objectName(obj), ErrUnknownKind, lastErr)
}

func objectName(obj metav1.Object) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return obj.GetNamespace() + "/" + obj.GetName()
}

// truncateNote cuts note to at most MaxNoteLength bytes, on a UTF-8
// boundary, ending it with a marker when it was cut.
func truncateNote(note string) string {
	if len(note) <= MaxNoteLength {
		return note
	}
	cut := MaxNoteLength - len(truncatedMarker)
	for cut > 0 && !utf8.RuneStart(note[cut]) {
		cut--
	}
	return note[:cut] + truncatedMarker
}

// maxNameBase keeps "<base>-" within the 58 characters the API server's
// name generator uses before it appends its 5 random characters, so the
// server never cuts the base itself.
const maxNameBase = 57

// namePrefix is the metadata.generateName of an Event about an object named
// name: the name lowercased, every character other than a-z and 0-9 turned
// into '-', cut to maxNameBase, with no '-' at either end, then a '.'; the
// server appends 5 random characters. The result is always a valid DNS
// subdomain ("my-app.x7k2p").
func namePrefix(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if b.Len() == maxNameBase {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	base := strings.Trim(b.String(), "-")
	if base == "" {
		base = "event"
	}
	return base + "-"
}
