package cache

import (
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// BenchmarkStoreReads fills a store with 2000 realistic pods (transformed
// and interned as an informer does) and reports what the store holds per
// pod and what reads cost:
//
//	store=plain:   decoded objects (the default mode)
//	store=compact: Options.Compact (protobuf bytes, decoded on read)
//
// live-B/obj is the live heap the filled store adds (after two GCs);
// get-p50-ns and get-p99-ns time single Gets of random pods; list-ms is one
// List of every pod. One op = fill, measure, read.
func BenchmarkStoreReads(b *testing.B) {
	const n = 2000
	for _, mode := range []string{"plain", "compact"} {
		b.Run("store="+mode, func(b *testing.B) {
			var live, get50, get99, list float64
			for b.Loop() {
				o := StoreOptions[*corev1.Pod]{}
				if mode == "compact" {
					o.Codec = DefaultCodec[*corev1.Pod]()
				}
				in := newInterner()
				before := liveHeap()
				s, w := NewStore(o)
				for i := range n {
					p := DefaultTransform(realisticPod(i))
					if mode == "plain" {
						in.object(p, false)
					}
					w.Upsert(p)
				}
				live += float64(liveHeap()-before) / n
				rng := rand.New(rand.NewPCG(1, 2))
				keys := make([]ObjectKey, 20000)
				for i := range keys {
					keys[i] = KeyOf(realisticPod(rng.IntN(n)))
				}
				ds := make([]time.Duration, len(keys))
				for i, k := range keys {
					t0 := time.Now()
					_, ok := s.Get(k)
					ds[i] = time.Since(t0)
					if !ok {
						b.Fatalf("Get %v: missing", k)
					}
				}
				slices.Sort(ds)
				get50 += float64(ds[len(ds)/2].Nanoseconds())
				get99 += float64(ds[len(ds)*99/100].Nanoseconds())
				t0 := time.Now()
				if got := len(s.List(nil)); got != n {
					b.Fatalf("List: %d", got)
				}
				list += float64(time.Since(t0).Microseconds()) / 1000
				runtime.KeepAlive(in)
			}
			b.ReportMetric(live/float64(b.N), "live-B/obj")
			b.ReportMetric(get50/float64(b.N), "get-p50-ns")
			b.ReportMetric(get99/float64(b.N), "get-p99-ns")
			b.ReportMetric(list/float64(b.N), "list-ms")
		})
	}
}
