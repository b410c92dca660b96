package event

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validate/content"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// Widget stands for a user's CRD type.
type Widget struct {
	metav1.TypeMeta
	metav1.ObjectMeta
}

func (w *Widget) DeepCopyObject() runtime.Object { c := *w; return &c }

var widgetGV = schema.GroupVersion{Group: "demo.skiff.dev", Version: "v1alpha1"}

func widgetScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	s.AddKnownTypes(widgetGV, &Widget{})
	return s
}

func TestReference(t *testing.T) {
	withWidgets := []*runtime.Scheme{widgetScheme(), clientgoscheme.Scheme}
	builtinOnly := []*runtime.Scheme{clientgoscheme.Scheme}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("demo.skiff.dev/v1")
	u.SetKind("Foo")
	u.SetNamespace("ns")
	u.SetName("u1")
	var nilCM *corev1.ConfigMap
	tests := []struct {
		name    string
		obj     Object
		schemes []*runtime.Scheme
		want    corev1.ObjectReference
		err     string
	}{
		{"configmap", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cm", UID: "u", ResourceVersion: "7"}}, builtinOnly,
			corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: "ns", Name: "cm", UID: "u", ResourceVersion: "7"}, ""},
		{"deployment", &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "d"}}, builtinOnly,
			corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns", Name: "d"}, ""},
		{"cluster-scoped node", &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, builtinOnly,
			corev1.ObjectReference{APIVersion: "v1", Kind: "Node", Name: "n1"}, ""},
		{"CRD type in Options.Scheme", &Widget{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "w"}}, withWidgets,
			corev1.ObjectReference{APIVersion: "demo.skiff.dev/v1alpha1", Kind: "Widget", Namespace: "ns", Name: "w"}, ""},
		{"built-in still found with a user scheme", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}, withWidgets,
			corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: "ns", Name: "p"}, ""},
		{"unstructured", u, builtinOnly,
			corev1.ObjectReference{APIVersion: "demo.skiff.dev/v1", Kind: "Foo", Namespace: "ns", Name: "u1"}, ""},
		{"CRD type not registered", &Widget{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "w"}}, builtinOnly,
			corev1.ObjectReference{}, "*event.Widget ns/w: kind not found in the scheme"},
		{"unstructured without kind", &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": "x"}}}, builtinOnly,
			corev1.ObjectReference{}, "kind not found"},
		{"nil", nil, builtinOnly, corev1.ObjectReference{}, "nil"},
		{"typed nil", nilCM, builtinOnly, corev1.ObjectReference{}, "nil *v1.ConfigMap"},
		{"no name", &corev1.ConfigMap{}, builtinOnly, corev1.ObjectReference{}, "has no name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reference(tt.obj, tt.schemes)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("reference = %+v, %v; want an error containing %q", got, err, tt.err)
				}
				if strings.Contains(tt.err, "kind not found") && !errors.Is(err, ErrUnknownKind) {
					t.Errorf("error %v does not wrap ErrUnknownKind", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("reference: %v", err)
			}
			if got != tt.want {
				t.Errorf("reference = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestTruncateNote(t *testing.T) {
	tests := []struct {
		name string
		in   string
	}{
		{"short", "hello"},
		{"exactly the limit", strings.Repeat("x", MaxNoteLength)},
		{"one over", strings.Repeat("x", MaxNoteLength+1)},
		{"multi-byte at the cut", strings.Repeat("é", MaxNoteLength)},
		{"64 KiB", strings.Repeat("y", 64<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := truncateNote(tt.in)
			if len(got) > MaxNoteLength {
				t.Fatalf("len %d > %d", len(got), MaxNoteLength)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("result is not valid UTF-8")
			}
			if len(tt.in) <= MaxNoteLength {
				if got != tt.in {
					t.Fatalf("a note within the limit was changed")
				}
				return
			}
			if !strings.HasSuffix(got, truncatedMarker) || !strings.HasPrefix(tt.in, strings.TrimSuffix(got, truncatedMarker)) {
				t.Fatalf("cut note %q... is not a prefix plus the marker", got[:20])
			}
		})
	}
}

func TestNamePrefix(t *testing.T) {
	tests := []struct{ in, want string }{
		{"my-app", "my-app-"},
		{"My.App", "my-app-"},
		{"system:controller:foo", "system-controller-foo-"},
		{"--x--", "x-"},
		{"::", "event-"},
		{strings.Repeat("a", 300), strings.Repeat("a", maxNameBase) + "-"},
		{strings.Repeat("a", maxNameBase-1) + ".b", strings.Repeat("a", maxNameBase-1) + "-"},
		{"ünïcode", "n-code-"},
	}
	for _, tt := range tests {
		got := namePrefix(tt.in)
		if got != tt.want {
			t.Errorf("namePrefix(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if msgs := content.IsDNS1123Subdomain(strings.TrimSuffix(got, "-") + "a"); len(msgs) > 0 {
			t.Errorf("namePrefix(%q) = %q is not a valid generateName (a DNS subdomain but for the trailing '-'): %v", tt.in, got, msgs)
		}
		if msgs := content.IsDNS1123Subdomain(got + "x7k2p"); len(msgs) > 0 {
			t.Errorf("namePrefix(%q)+suffix = %q is not a DNS subdomain: %v", tt.in, got+"x7k2p", msgs)
		}
	}
}

func FuzzNamePrefix(f *testing.F) {
	for _, s := range []string{"a", "My.App", "system:x", "-", strings.Repeat("ab.", 40)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := namePrefix(name)
		if len(got) > maxNameBase+1 {
			t.Fatalf("namePrefix(%q) = %q longer than %d", name, got, maxNameBase+1)
		}
		if msgs := content.IsDNS1123Subdomain(strings.TrimSuffix(got, "-") + "a"); len(msgs) > 0 {
			t.Fatalf("namePrefix(%q) = %q is not a valid generateName: %v", name, got, msgs)
		}
		if msgs := content.IsDNS1123Subdomain(got + "x7k2p"); len(msgs) > 0 {
			t.Fatalf("namePrefix(%q)+suffix = %q: %v", name, got+"x7k2p", msgs)
		}
	})
}
