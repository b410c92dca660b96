package shard

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Lister lists one resource; cache.ListerWatcher satisfies it, and ListFunc
// adapts a typed client's List.
type Lister interface {
	List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)
}

// ListFunc adapts a function to Lister, e.g. for a typed client:
//
//	shard.ListFunc(func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
//		return cs.CoreV1().ConfigMaps("").List(ctx, o)
//	})
type ListFunc func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error)

// List calls f.
func (f ListFunc) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	return f(ctx, opts)
}

// ServerShards reports whether the server filters l's resource by shard
// selector (KEP-5866, feature gate ShardedListAndWatch). It lists one object
// with a selector over the whole space: a server that applies it echoes it
// in the list's metadata.shardInfo; a server without the feature drops the
// unknown parameter and answers the plain list, without shardInfo (checked
// against kube-apiserver v1.36.3 with the gate off). An error means the
// list itself failed (the answer is unknown; callers should not assume
// either way).
func ServerShards(ctx context.Context, l Lister) (bool, error) {
	sel, _ := Selector(UID, []Range{{0, 0}})
	obj, err := l.List(ctx, metav1.ListOptions{ShardSelector: sel, Limit: 1})
	if err != nil {
		return false, fmt.Errorf("shard: list with a shard selector to detect server support: %w", err)
	}
	lm, err := meta.ListAccessor(obj)
	if err != nil {
		return false, fmt.Errorf("shard: detect server support: %T is not a list: %w", obj, err)
	}
	lmeta, ok := lm.(interface{ GetShardInfo() *metav1.ShardInfo })
	if !ok {
		return false, fmt.Errorf("shard: detect server support: %T has no shardInfo accessor", lm)
	}
	info := lmeta.GetShardInfo()
	return info != nil && info.Selector == sel, nil
}
