package builder_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
)

// unregistered is a well-formed object type that no scheme knows.
type unregistered struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

func (u *unregistered) DeepCopyObject() runtime.Object {
	out := *u
	u.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	return &out
}

// TestBuildErrorsAreClear: every misuse fails Build with an error that
// says what is wrong (the substrings below), and registers no controller.
func TestBuildErrorsAreClear(t *testing.T) {
	r := controller.ReconcileFunc[request](func(context.Context, request) (controller.Result, error) { return controller.Result{}, nil })
	// A hand-built informer: from a client of its own, not the manager's.
	own, err := client.New(env.Config(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	handBuilt, err := client.InformerFor[*corev1.ConfigMap](own, cache.Scope{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	// No Config given and none to be found (the manager would otherwise
	// look for one as kubectl does).
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	noConfig, err := manager.New(manager.Options{Addr: "-", Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mgr  *manager.Manager // nil: a new manager with the control plane's Config
		opts []builder.Option
		want []string
	}{
		{"no For", nil, []builder.Option{builder.Named("x")}, []string{`controller "x"`, "exactly one For", "got 0"}},
		{"two Fors", nil, []builder.Option{builder.For[*corev1.ConfigMap](), builder.For[*corev1.Secret]()}, []string{"exactly one For", "got 2", "For[*v1.ConfigMap]", "For[*v1.Secret]"}},
		{"Owns without a typed For", nil, []builder.Option{builder.Named("x"), builder.ForInformer(handBuilt), builder.Owns[*corev1.Secret]()}, []string{"Owns[*v1.Secret]", "needs a typed For"}},
		{"ForInformer without a name", nil, []builder.Option{builder.ForInformer(handBuilt)}, []string{"ForInformer needs Named"}},
		{"For of a type not in the scheme", nil, []builder.Option{builder.For[*unregistered]()}, []string{"*builder_test.unregistered", "not registered in the client's scheme"}},
		{"Owns of a type not in the scheme", nil, []builder.Option{builder.For[*corev1.ConfigMap](), builder.Owns[*unregistered]()}, []string{"*builder_test.unregistered", "not registered"}},
		{"Watches without a func", nil, []builder.Option{builder.For[*corev1.ConfigMap](), builder.Watches[*corev1.Secret](nil)}, []string{"Watches[*v1.Secret]", "mapping func"}},
		{"Named empty", nil, []builder.Option{builder.Named(""), builder.For[*corev1.ConfigMap]()}, []string{`Named("")`}},
		{"manager without Config", noConfig, []builder.Option{builder.For[*corev1.ConfigMap]()}, []string{"informer of *v1.ConfigMap", "no API server config"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mgr := tc.mgr
			if mgr == nil {
				mgr = newManager(t, manager.Options{})
			}
			c, err := builder.Build(mgr, r, tc.opts...)
			if err == nil {
				t.Fatalf("Build succeeded (controller %q), want an error", c.Name())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if n := len(mgr.State().Controllers); n != 0 {
				t.Errorf("a failed Build registered %d controllers", n)
			}
			if n := len(mgr.Factory().Informers()); n != 0 {
				t.Errorf("a failed Build left %d informers in the manager's factory", n)
			}
		})
	}
	if _, err := builder.Build(nil, r, builder.For[*corev1.ConfigMap]()); err == nil || !strings.Contains(err.Error(), "nil manager") {
		t.Errorf("nil manager: err = %v", err)
	}
}
