package foo

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
)

// Setup builds the Foo controller on mgr, whose Options.Scheme must know
// Foo (AddToScheme). opts may set workers, retry budget and so on; the name
// is "foo". ConfigMaps are watched only if they carry the managed-by label.
func Setup(mgr *manager.Manager, opts controller.Options[controller.Request]) (*controller.Controller[controller.Request], error) {
	return builder.Build(mgr, &Reconciler{Client: mgr.Client()},
		builder.Named("foo"),
		builder.WithOptions(opts),
		builder.Scope[*corev1.ConfigMap](cache.Scope{LabelSelector: ManagedByLabel}),
		builder.For[*Foo](builder.GenerationChanged[*Foo]()),
		builder.Owns[*corev1.ConfigMap](),
	)
}
