package cache_test

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/queue"
)

// An informer over a scripted source feeding a controller's queue. Against
// a cluster, use cache.TypedSource[*corev1.Pod](cfg, gvr, scope) instead.
func Example() {
	s := newScript()
	w := s.watcher()
	inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{})
	q := queue.New(queue.Options[cache.ObjectKey]{})
	inf.AddKeyHandler(q, cache.KeyHandlerOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { inf.Run(ctx); close(done) }()

	w.Add(pod("default", "web-0", "1"))
	w.Action(watch.Bookmark, bookmark("2", true)) // the end of the initial list
	if err := inf.WaitForSync(ctx); err != nil {
		panic(err)
	}
	key, _ := q.Get(ctx)
	p, _ := inf.Lister().Get("default", "web-0")
	fmt.Println(key, p.ResourceVersion)
	q.Done(key)

	cancel()
	<-done
	// Output: default/web-0 1
}
