package event_test

import (
	"context"
	"log"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/event"
)

// The recorder's owner runs it; reconciles call Event and move on.
// (No Output: it needs a cluster. The integration tests run the same calls.)
func Example() {
	var cfg *rest.Config // from testenv, a kubeconfig or rest.InClusterConfig()
	rec, err := event.New(event.Options{
		Config:     cfg,
		Controller: "example.com/foo-operator",
		Registerer: prometheus.DefaultRegisterer,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rec.Run(ctx) }()

	var cm *corev1.ConfigMap // the object the reconcile acted on
	if err := rec.Eventf(cm, event.Normal, "ConfigMapCreated", "Create", "created %s", cm.Name); err != nil {
		log.Print(err) // a bad argument, or ErrBufferFull
	}

	stop()
	<-done
}
