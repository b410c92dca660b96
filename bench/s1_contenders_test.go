package bench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	skiffcache "github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/queue"
)

// startNaiveS1 is the loop people write first: client-go with its defaults
// (QPS 5, Burst 10, protobuf), a fresh List of the sources every
// s1PollInterval, and one PATCH of the derived object per source whose
// resourceVersion changed since the previous List, sent one after another.
func startNaiveS1(ctx context.Context, cfg *rest.Config, ns string) (func() error, error) {
	cfg.QPS, cfg.Burst = 0, 0 // client-go's defaults: 5 and 10
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	seen := map[string]string{} // source → resourceVersion at the last List
	list := func(ctx context.Context) ([]corev1.ConfigMap, error) {
		l, err := kube.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: s1RoleLabel + "=source"})
		if err != nil {
			return nil, fmt.Errorf("naive: list sources: %w", err)
		}
		return l.Items, nil
	}
	items, err := list(ctx)
	if err != nil {
		return nil, err
	}
	for _, cm := range items { // the derived objects start consistent
		seen[cm.Name] = cm.ResourceVersion
	}
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		tick := time.NewTicker(s1PollInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				errc <- nil
				return
			case <-tick.C:
			}
			items, err := list(ctx)
			if err != nil {
				errc <- err
				return
			}
			for i := range items {
				src := &items[i]
				if seen[src.Name] == src.ResourceVersion {
					continue
				}
				if _, err := kube.CoreV1().ConfigMaps(ns).Patch(ctx, derivedName(src.Name), types.MergePatchType, derivedPatch(src), metav1.PatchOptions{}); err != nil {
					errc <- fmt.Errorf("naive: patch %s: %w", derivedName(src.Name), err)
					return
				}
				seen[src.Name] = src.ResourceVersion
			}
		}
	}()
	return func() error {
		cancel()
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}, nil
}

// s1SkiffWorkers is how many reconciles the Skiff contender runs at once.
const s1SkiffWorkers = 4

// startSkiffS1 is the same job the Skiff way: one informer for the
// namespace's ConfigMaps through the typed client (watch-list, protobuf),
// keys into a Skiff queue (an event for a derived object re-checks its
// source), and a level-based reconcile that reads both objects from the
// cache and patches the derived object only when its hash is stale. The
// client is Skiff's: no client-side QPS limit. The coalescer is not used:
// each derived object has one writer and the queue already folds repeated
// changes of a source into one reconcile, so it would only add its window
// to every write.
func startSkiffS1(ctx context.Context, cfg *rest.Config, ns string) (func() error, error) {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, err
	}
	inf, err := client.InformerFor[*corev1.ConfigMap](c, skiffcache.Scope{Namespace: ns})
	if err != nil {
		return nil, err
	}
	q := queue.New(queue.Options[client.ObjectKey]{})
	inf.AddKeyHandler(q, skiffcache.KeyHandlerOptions{})
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { c.Factory().Run(ctx) })
	errc := make(chan error, s1SkiffWorkers)
	for range s1SkiffWorkers {
		wg.Go(func() {
			for {
				key, err := q.Get(ctx)
				if err != nil {
					return
				}
				err = reconcileS1(ctx, c, key)
				q.Done(key)
				if err != nil && ctx.Err() == nil {
					errc <- err
					return
				}
			}
		})
	}
	stop := func() error {
		cancel()
		q.ShutDown()
		wg.Wait()
		close(errc)
		return <-errc
	}
	if !waitFor(time.Minute, func() bool { return inf.HasSynced() && q.Len() == 0 }) {
		stop()
		return nil, errors.New("skiff: informer not synced after a minute")
	}
	return stop, nil
}

func reconcileS1(ctx context.Context, c *client.Client, key client.ObjectKey) error {
	name := strings.TrimPrefix(key.Name, "derived-")
	src, err := client.Get[*corev1.ConfigMap](ctx, c, client.ObjectKey{Namespace: key.Namespace, Name: name})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if src.Labels[s1RoleLabel] != "source" {
		return nil
	}
	d, err := client.Get[*corev1.ConfigMap](ctx, c, client.ObjectKey{Namespace: key.Namespace, Name: derivedName(name)})
	if err != nil {
		return fmt.Errorf("skiff: get %s: %w", derivedName(name), err)
	}
	if d.Data[s1HashKey] == dataHash(src.Data) {
		return nil
	}
	if err := c.Patch(ctx, d, client.RawPatch(types.MergePatchType, derivedPatch(src))); err != nil {
		return fmt.Errorf("skiff: patch %s: %w", d.Name, err)
	}
	return nil
}
