// Command deployments reconciles Deployments and owns their ReplicaSets: the
// smallest useful controller, compared line for line with controller-runtime
// in docs/migrating-from-controller-runtime.md.
package main

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
)

type reconciler struct{ c *client.Client }

func (r *reconciler) Reconcile(ctx context.Context, req controller.Request) (controller.Result, error) {
	dep, err := client.Get[*appsv1.Deployment](ctx, r.c, req)
	if err != nil {
		return controller.Result{}, client.IgnoreNotFound(err)
	}
	rss, err := client.List[*appsv1.ReplicaSet](ctx, r.c, client.InNamespace(req.Namespace))
	if err != nil {
		return controller.Result{}, err
	}
	controller.Logger(ctx).Info("reconciled", "deployment", dep.Name, "replicaSets", len(rss))
	return controller.Result{}, nil
}

func main() {
	mgr, err := manager.New(manager.Options{})
	if err != nil {
		panic(err)
	}
	if _, err := builder.Build(mgr, &reconciler{mgr.Client()}, builder.For[*appsv1.Deployment](), builder.Owns[*appsv1.ReplicaSet]()); err != nil {
		panic(err)
	}
	if err := mgr.Start(manager.SignalContext()); err != nil {
		panic(err)
	}
}
