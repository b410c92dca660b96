package foo

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
)

// Operator is the wired-up Foo controller.
type Operator struct {
	Controller *controller.Controller[string]
	Foos       *cache.Informer[*unstructured.Unstructured]
	ConfigMaps *cache.Informer[*corev1.ConfigMap]
}

// Setup builds the Foo controller on mgr: an informer for Foos (JSON, all
// namespaces) and one for the ConfigMaps it manages (protobuf,
// label-selected), both from f (nil: the manager's shared factory), and the
// controller with opts (Name defaults to "foo").
func Setup(mgr *manager.Manager, f *cache.Factory, cfg *rest.Config, opts controller.Options[string]) (*Operator, error) {
	if f == nil {
		f = mgr.Factory()
	}
	if opts.Name == "" {
		opts.Name = "foo"
	}
	fooSrc, err := cache.UnstructuredSource(cfg, GVR, cache.Scope{})
	if err != nil {
		return nil, err
	}
	cmSrc, err := cache.TypedSource[*corev1.ConfigMap](cfg, schema.GroupVersionResource{Version: "v1", Resource: "configmaps"},
		cache.Scope{LabelSelector: ManagedByLabel})
	if err != nil {
		return nil, err
	}
	foos := cache.InformerFor(f, fooSrc, cache.Options[*unstructured.Unstructured]{Name: "foos.demo.skiff.dev"})
	cms := cache.InformerFor(f, cmSrc, cache.Options[*corev1.ConfigMap]{Name: "configmaps"})

	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("foo operator: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("foo operator: %w", err)
	}
	r := &Reconciler{
		GetFoo:       foos.Lister().Get,
		GetConfigMap: cms.Lister().Get,
		Kube:         kube,
		Dynamic:      dyn,
	}
	c, err := builder.Build(mgr, r, opts,
		builder.For(foos, builder.GenerationChanged[*unstructured.Unstructured]()),
		builder.Owns(cms, GVR.Group, "Foo"),
	)
	if err != nil {
		return nil, err
	}
	return &Operator{Controller: c, Foos: foos, ConfigMaps: cms}, nil
}
