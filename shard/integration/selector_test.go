// Package integration tests package shard against the local control plane
// with the ShardedListAndWatch feature gate on.
package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/shard"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	o := testenv.Options{Controllers: "none", APIServerArgs: []string{"--feature-gates=ShardedListAndWatch=true"}}
	os.Exit(testenv.RunTests(m, o, func(e *testenv.Env) error { env = e; return nil }))
}

func clientset(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func createConfigMaps(t *testing.T, cs kubernetes.Interface, ns string, n int) map[string]uint64 {
	t.Helper()
	ctx := context.Background()
	want := map[string]uint64{}
	for i := range n {
		cm, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%03d", i)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want[cm.Name] = shard.HashOf(cm, shard.UID)
	}
	return want
}

// listShard lists ns's ConfigMaps with a shard selector over ranges and
// checks every object returned lies in them by the client-side hash.
func listShard(t *testing.T, cs kubernetes.Interface, ns string, ranges []shard.Range) map[string]bool {
	t.Helper()
	sel, ok := shard.Selector(shard.UID, ranges)
	if !ok {
		t.Fatalf("no selector for %v", ranges)
	}
	list, err := cs.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{ShardSelector: sel})
	if err != nil {
		t.Fatalf("list with %d ranges (%d bytes of selector): %v", len(ranges), len(sel), err)
	}
	if list.ShardInfo == nil || list.ShardInfo.Selector != sel {
		t.Fatalf("list with shard selector: shardInfo %+v, want the selector echoed", list.ShardInfo)
	}
	got := map[string]bool{}
	for i := range list.Items {
		cm := &list.Items[i]
		if h := shard.HashOf(cm, shard.UID); !shard.InRanges(h, ranges) {
			t.Errorf("%s (hash %016x) returned for %v", cm.Name, h, ranges)
		}
		got[cm.Name] = true
	}
	return got
}

// The server places objects where Hash says: two halves split the objects
// disjointly and completely, and so do the many-range selectors of a
// 3-member ring.
func TestServerShardSelectorMatchesHash(t *testing.T) {
	cs := clientset(t, env.Config())
	ns := testenv.Namespace(t, env.Config())
	want := createConfigMaps(t, cs, ns, 60)

	check := func(name string, parts [][]shard.Range) {
		seen := map[string]int{}
		for _, rs := range parts {
			for n := range listShard(t, cs, ns, rs) {
				seen[n]++
			}
		}
		for n := range want {
			if seen[n] != 1 {
				t.Errorf("%s: %s returned by %d shards, want 1", name, n, seen[n])
			}
		}
		if len(seen) != len(want) {
			t.Errorf("%s: %d objects over all shards, want %d", name, len(seen), len(want))
		}
	}
	lower, upper := []shard.Range{{Start: 0, End: 1 << 63}}, []shard.Range{{Start: 1 << 63, End: 0}}
	check("halves", [][]shard.Range{lower, upper})
	low := listShard(t, cs, ns, lower)
	t.Logf("halves: %d + %d of %d", len(low), len(want)-len(low), len(want))

	ring, err := shard.NewRing([]shard.Member{{ID: "a"}, {ID: "b"}, {ID: "c", Weight: 0.05}})
	if err != nil {
		t.Fatal(err)
	}
	var parts [][]shard.Range
	most := 0
	for _, m := range ring.Members() {
		parts = append(parts, ring.Ranges(m.ID))
		most = max(most, len(ring.Ranges(m.ID)))
	}
	check("ring", parts)
	sel, _ := shard.Selector(shard.UID, parts[0])
	t.Logf("ring selectors: up to %d ranges; member a's selector is %d bytes", most, len(sel))

	// The server's own check of the format this package avoids.
	_, err = cs.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{
		ShardSelector: "shardRange(object.metadata.uid, '0x0', '0x8000000000000000')"})
	if err == nil || !strings.Contains(err.Error(), "16-digit") {
		t.Errorf("short hex bound: err = %v, want the server's 16-digit error", err)
	}
}

// Namespace sharding hashes the namespace name.
func TestServerShardSelectorNamespace(t *testing.T) {
	cs := clientset(t, env.Config())
	ns := testenv.Namespace(t, env.Config())
	createConfigMaps(t, cs, ns, 3)
	h := shard.Hash(ns)
	for _, tc := range []struct {
		r    shard.Range
		want int
	}{{shard.Range{Start: h, End: h + 1}, 3}, {shard.Range{Start: h + 1, End: h + 2}, 0}} {
		sel, _ := shard.Selector(shard.Namespace, []shard.Range{tc.r})
		list, err := cs.CoreV1().ConfigMaps(ns).List(context.Background(), metav1.ListOptions{ShardSelector: sel})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != tc.want {
			t.Errorf("namespace %s (hash %016x) range %v: %d objects, want %d", ns, h, tc.r, len(list.Items), tc.want)
		}
	}
}

func configMapLister(cs kubernetes.Interface) shard.Lister {
	return shard.ListFunc(func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return cs.CoreV1().ConfigMaps("").List(ctx, o)
	})
}

// ServerShards says yes with the gate on, and no on a control plane started
// without it (which answers the plain list).
func TestServerShardsDetects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	on, err := shard.ServerShards(ctx, configMapLister(clientset(t, env.Config())))
	if err != nil || !on {
		t.Fatalf("gate on: ServerShards = %v, %v; want true", on, err)
	}
	plain, err := testenv.Start(ctx, testenv.Options{Controllers: "none"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // registered first, so it runs after the namespace cleanup
		if err := plain.Stop(); err != nil {
			t.Error(err)
		}
	})
	cs := clientset(t, plain.Config())
	ns := testenv.Namespace(t, plain.Config())
	createConfigMaps(t, cs, ns, 4)
	off, err := shard.ServerShards(ctx, configMapLister(cs))
	if err != nil || off {
		t.Fatalf("gate off: ServerShards = %v, %v; want false", off, err)
	}
	sel, _ := shard.Selector(shard.UID, []shard.Range{{Start: 0, End: 1}})
	list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{ShardSelector: sel})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gate off: a selector matching almost nothing returns %d of 4 objects, shardInfo %v", len(list.Items), list.ShardInfo)
	if len(list.Items) != 4 || list.ShardInfo != nil {
		t.Errorf("gate off: %d objects, shardInfo %v; want the unfiltered 4 and none", len(list.Items), list.ShardInfo)
	}
}

// cuttable is a rest.Config whose connection can be cut: every request
// fails once cut is set, as for a replica partitioned from the API server.
func cuttable(cfg *rest.Config, cut *atomic.Bool) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if cut.Load() {
				return nil, fmt.Errorf("test: connection cut")
			}
			return rt.RoundTrip(r)
		})
	})
	return c
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
