package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"

	"github.com/skiffkit/skiff/queue"
)

// queueImpl is the common surface the queue benchmarks drive. Every contender
// pays the same interface-call overhead.
type queueImpl interface {
	Add(k string)
	AddAfter(k string, d time.Duration)
	Get() (string, bool) // false once shut down
	Done(k string)
	Len() int // also a barrier: controller-runtime applies buffered adds first
	ShutDown()
}

type skiffQueue struct{ q *queue.Queue[string] }

func (s skiffQueue) Add(k string)                       { s.q.Add(k) }
func (s skiffQueue) AddAfter(k string, d time.Duration) { s.q.AddAfter(k, d) }
func (s skiffQueue) Done(k string)                      { s.q.Done(k) }
func (s skiffQueue) ShutDown()                          { s.q.ShutDown() }
func (s skiffQueue) Len() int                           { return s.q.Len() }
func (s skiffQueue) Get() (string, bool) {
	k, err := s.q.Get(context.Background())
	return k, err == nil
}

// DoneAndGet is Skiff's combined worker-loop step (no equivalent in the
// anchors); only the impl=skiff/loop=doneandget variant of Q1 uses it.
func (s skiffQueue) DoneAndGet(done string) (string, bool) {
	k, err := s.q.DoneAndGet(context.Background(), done)
	return k, err == nil
}

// doneAndGetter is implemented by contenders with a combined Done+Get.
type doneAndGetter interface {
	DoneAndGet(done string) (string, bool)
}

// clientGoQueue adapts client-go's rate-limiting queue (Get returns shutdown=true).
type clientGoQueue struct {
	q workqueue.TypedRateLimitingInterface[string]
}

func (c clientGoQueue) Add(k string)                       { c.q.Add(k) }
func (c clientGoQueue) AddAfter(k string, d time.Duration) { c.q.AddAfter(k, d) }
func (c clientGoQueue) Done(k string)                      { c.q.Done(k) }
func (c clientGoQueue) ShutDown()                          { c.q.ShutDown() }
func (c clientGoQueue) Len() int                           { return c.q.Len() }
func (c clientGoQueue) Get() (string, bool) {
	k, shutdown := c.q.Get()
	return k, !shutdown
}

// noopMetrics is a workqueue.MetricsProvider that records nothing, so the
// controller-runtime queue runs with the same (absent) metrics as the others.
type noopMetrics struct{}
type noopMetric struct{}

func (noopMetric) Inc()            {}
func (noopMetric) Dec()            {}
func (noopMetric) Set(float64)     {}
func (noopMetric) Observe(float64) {}

func (noopMetrics) NewDepthMetric(string) workqueue.GaugeMetric            { return noopMetric{} }
func (noopMetrics) NewAddsMetric(string) workqueue.CounterMetric           { return noopMetric{} }
func (noopMetrics) NewLatencyMetric(string) workqueue.HistogramMetric      { return noopMetric{} }
func (noopMetrics) NewWorkDurationMetric(string) workqueue.HistogramMetric { return noopMetric{} }
func (noopMetrics) NewUnfinishedWorkSecondsMetric(string) workqueue.SettableGaugeMetric {
	return noopMetric{}
}
func (noopMetrics) NewLongestRunningProcessorSecondsMetric(string) workqueue.SettableGaugeMetric {
	return noopMetric{}
}
func (noopMetrics) NewRetriesMetric(string) workqueue.CounterMetric { return noopMetric{} }

var queueImpls = []struct {
	name string
	new  func() queueImpl
}{
	{"skiff", func() queueImpl { return skiffQueue{queue.New(queue.Options[string]{})} }},
	{"clientgo", func() queueImpl {
		return clientGoQueue{workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())}
	}},
	{"ctrlruntime", func() queueImpl {
		return clientGoQueue{priorityqueue.New[string]("bench", func(o *priorityqueue.Opts[string]) {
			o.MetricProvider = noopMetrics{}
		})}
	}},
}

// benchSize picks the quick or the full size (SKIFF_BENCH_SIZE=quick|full).
func benchSize(quick, full int) int {
	if os.Getenv("SKIFF_BENCH_SIZE") == "full" {
		return full
	}
	return quick
}

func keyNames(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("namespace-%d/object-%06d", i%16, i)
	}
	return keys
}

// allocCounter measures heap allocations over the timed part of a benchmark.
type allocCounter struct{ start uint64 }

func (a *allocCounter) begin() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	a.start = ms.Mallocs
}

func (a *allocCounter) perItem(items int) float64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.Mallocs-a.start) / float64(items)
}

// BenchmarkQueueThroughput (Q1): 2 producers and 2 consumers; each op is a
// round of `keys` Adds over keys/2 distinct keys (half are duplicates). A
// round ends when every key has been processed after its last Add.
//
// Consumers run Get, the bookkeeping, then Done. The variant
// impl=skiff/loop=doneandget does the same work with Skiff's DoneAndGet, the
// natural worker loop of its API, which replaces each Done and the following
// Get by one call; the anchors have no equivalent.
func BenchmarkQueueThroughput(b *testing.B) {
	n := benchSize(10_000, 100_000)
	distinct := n / 2
	keys := keyNames(distinct)
	index := make(map[string]int, distinct)
	for i, k := range keys {
		index[k] = i
	}
	type contender struct {
		name       string
		new        func() queueImpl
		doneAndGet bool
	}
	var contenders []contender
	for _, impl := range queueImpls {
		contenders = append(contenders, contender{name: impl.name, new: impl.new})
		if impl.name == "skiff" {
			contenders = append(contenders, contender{name: "skiff/loop=doneandget", new: impl.new, doneAndGet: true})
		}
	}
	for _, impl := range contenders {
		b.Run("impl="+impl.name, func(b *testing.B) {
			q := impl.new()
			var (
				round     atomic.Int64
				announced = make([]atomic.Int64, distinct) // round<<2 | adds announced this round
				marked    = make([]atomic.Int64, distinct) // last round the key counted as finished
				remaining atomic.Int64
				finished  = make(chan struct{}, 1)
			)
			var consumers sync.WaitGroup
			for range 2 {
				consumers.Go(func() {
					k, ok := q.Get()
					for ok {
						i := index[k]
						v := announced[i].Load()
						if r, m := v>>2, marked[i].Load(); v&3 == 2 && m < r && marked[i].CompareAndSwap(m, r) {
							if remaining.Add(-1) == 0 {
								finished <- struct{}{}
							}
						}
						if impl.doneAndGet {
							k, ok = q.(doneAndGetter).DoneAndGet(k)
						} else {
							q.Done(k)
							k, ok = q.Get()
						}
					}
				})
			}
			var allocs allocCounter
			b.ReportAllocs()
			b.ResetTimer()
			allocs.begin()
			for range b.N {
				r := round.Add(1)
				remaining.Store(int64(distinct))
				var producers sync.WaitGroup
				for p := range 2 {
					producers.Go(func() {
						// Producer p adds every key once, in an interleaved order,
						// so each key gets two adds from two producers.
						for j := range distinct {
							i := (j*7919 + p*distinct/2) % distinct
							for {
								old, next := announced[i].Load(), r<<2|1
								if old>>2 == r {
									next = old + 1
								}
								if announced[i].CompareAndSwap(old, next) {
									break
								}
							}
							q.Add(keys[i])
						}
					})
				}
				producers.Wait()
				<-finished
			}
			b.StopTimer()
			items := b.N * n
			b.ReportMetric(float64(items)/b.Elapsed().Seconds(), "items/s")
			b.ReportMetric(allocs.perItem(items), "allocs/item")
			q.ShutDown()
			consumers.Wait()
		})
	}
}

// BenchmarkQueueAddAfter (Q2): each op adds n distinct keys with seeded random
// delays in [0, 10ms) and drains them with 2 consumers.
func BenchmarkQueueAddAfter(b *testing.B) {
	n := benchSize(100_000, 1_000_000)
	keys := keyNames(n)
	r := rand.New(rand.NewPCG(1, 2))
	delays := make([]time.Duration, n)
	for i := range delays {
		delays[i] = time.Duration(r.Int64N(int64(10 * time.Millisecond)))
	}
	for _, impl := range queueImpls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			q := impl.new()
			var processed atomic.Int64
			finished := make(chan struct{}, 1)
			var consumers sync.WaitGroup
			for range 2 {
				consumers.Go(func() {
					for {
						k, ok := q.Get()
						if !ok {
							return
						}
						q.Done(k)
						if processed.Add(1) == int64(n) {
							finished <- struct{}{}
						}
					}
				})
			}
			var allocs allocCounter
			b.ReportAllocs()
			b.ResetTimer()
			allocs.begin()
			for range b.N {
				processed.Store(0)
				for i, k := range keys {
					q.AddAfter(k, delays[i])
				}
				<-finished
			}
			b.StopTimer()
			items := b.N * n
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(items), "ns/item")
			b.ReportMetric(allocs.perItem(items), "allocs/item")
			q.ShutDown()
			consumers.Wait()
		})
	}
}

// BenchmarkQueueContended (Q3): 64 workers each take a key, work 1 ms and
// mark it done, on a queue preloaded with n keys; each op is one Add from the
// benchmark goroutine (keys drawn from 2n, so half hit queued keys). The timed
// part ends with Len(), which makes controller-runtime apply the adds it has
// only buffered so far, so every contender is timed for the same work.
//
// Workers are stopped before ShutDown, not by it: controller-runtime's queue
// can hand an item to a Get that has already returned for the shutdown and
// then block forever while holding its locks, which hung this harness. So the
// benchmark sets stop, adds one fresh key per worker so that every blocked
// Get returns, waits for the workers (each returns after its next Get), and
// only then shuts the queue down.
func BenchmarkQueueContended(b *testing.B) {
	const workers = 64
	n := benchSize(100_000, 1_000_000)
	keys := keyNames(2 * n)
	wake := make([]string, workers)
	for i := range wake {
		wake[i] = fmt.Sprintf("wake-%d", i)
	}
	for _, impl := range queueImpls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			q := impl.new()
			for _, k := range keys[:n] {
				q.Add(k)
			}
			var (
				running sync.WaitGroup
				stop    atomic.Bool
			)
			for range workers {
				running.Go(func() {
					for {
						k, ok := q.Get()
						if !ok {
							return
						}
						if stop.Load() {
							q.Done(k)
							return
						}
						time.Sleep(time.Millisecond)
						q.Done(k)
					}
				})
			}
			r := rand.New(rand.NewPCG(3, 4))
			picks := make([]int32, 1<<16)
			for i := range picks {
				picks[i] = int32(r.IntN(len(keys)))
			}
			var allocs allocCounter
			b.ReportAllocs()
			b.ResetTimer()
			allocs.begin()
			for i := range b.N {
				q.Add(keys[picks[i&(len(picks)-1)]])
			}
			q.Len()
			b.StopTimer()
			b.ReportMetric(allocs.perItem(b.N), "allocs/item")
			stop.Store(true)
			for _, k := range wake {
				q.Add(k)
			}
			running.Wait()
			q.ShutDown()
		})
	}
}
