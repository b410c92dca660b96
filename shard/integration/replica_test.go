package integration

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/shard"
	"github.com/skiffkit/skiff/testenv"
)

const (
	leaseDuration = 3 * time.Second
	renewDeadline = 2 * time.Second
	retryPeriod   = 200 * time.Millisecond
)

type replica struct {
	r    *shard.Replica
	cut  atomic.Bool
	stop context.CancelFunc
	done chan error
}

// holders records which replica processes each item; it fails the test the
// moment two do at once.
type holders struct {
	t        *testing.T
	mu       sync.Mutex
	by       map[int]string
	admitted map[string]int
}

func (h *holders) enter(item int, id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if other, ok := h.by[item]; ok {
		h.t.Errorf("item %d admitted by %s while %s processes it", item, id, other)
	}
	h.by[item] = id
	h.admitted[id]++
}

func (h *holders) leave(item int) { h.mu.Lock(); delete(h.by, item); h.mu.Unlock() }

type group struct {
	t     *testing.T
	ns    string
	items []shard.Item
	h     *holders
	wg    sync.WaitGroup
	reps  []*replica
}

func (g *group) start(id string) *replica {
	rp := &replica{done: make(chan error, 1)}
	r, err := shard.New(clientset(g.t, cuttable(env.Config(), &rp.cut)), shard.Options{
		Namespace: g.ns, Group: "workers", Identity: id,
		LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
	})
	if err != nil {
		g.t.Fatal(err)
	}
	rp.r = r
	ctx, cancel := context.WithCancel(context.Background())
	rp.stop = cancel
	go func() { rp.done <- r.Run(ctx) }()
	// Two workers per replica reconcile random items through Acquire; each
	// takes its own half of the items, as a queue never hands one key to two
	// workers.
	for w := range 2 {
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(len(id)), uint64(w)))
			for ctx.Err() == nil {
				i := rng.IntN(len(g.items)/2)*2 + w
				wctx, release, ok := r.Acquire(ctx, g.items[i])
				if !ok {
					time.Sleep(time.Millisecond) // a worker idling between keys, not a wait for a condition
					continue
				}
				g.h.enter(i, id)
				select { // the reconcile's work
				case <-time.After(time.Duration(rng.IntN(5)) * time.Millisecond):
				case <-wctx.Done():
				}
				g.h.leave(i)
				release()
			}
		}()
	}
	g.reps = append(g.reps, rp)
	return rp
}

// settled reports whether the running replicas are all active on one ring
// with exactly them as members, and every slot has exactly one owner.
func (g *group) settled(running []*replica) (bool, error) {
	var version string
	for _, rp := range running {
		a := rp.r.Assignment()
		if !a.Active {
			return false, fmt.Errorf("%s not active", rp.r.ID())
		}
		if version != "" && a.Version != version {
			return false, fmt.Errorf("%s on ring %s, another on %s", rp.r.ID(), a.Version, version)
		}
		version = a.Version
		if len(a.Members) != len(running) {
			return false, fmt.Errorf("%s sees %d members, %d run", rp.r.ID(), len(a.Members), len(running))
		}
	}
	for s := range shard.Slots {
		it := shard.Item{Hash: uint64(s)<<56 | 0xabcdef}
		n := 0
		for _, rp := range running {
			if rp.r.Owns(it) {
				n++
			}
		}
		if n != 1 {
			return false, fmt.Errorf("slot %d owned by %d replicas", s, n)
		}
	}
	return true, nil
}

func TestReplicasShareKillJoinStop(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	g := &group{t: t, ns: ns, h: &holders{t: t, by: map[int]string{}, admitted: map[string]int{}}}
	rng := rand.New(rand.NewPCG(7, 7))
	for range 300 {
		g.items = append(g.items, shard.Item{Hash: rng.Uint64()})
	}
	a, b, c := g.start("a"), g.start("b"), g.start("c")
	defer func() {
		for _, rp := range g.reps {
			rp.stop()
		}
		g.wg.Wait()
	}()
	testenv.Eventually(t, 30*time.Second, "3 replicas share the space", func() (bool, error) { return g.settled([]*replica{a, b, c}) })
	for _, rp := range []*replica{a, b, c} {
		a := rp.r.Assignment()
		t.Logf("%s: %d ranges", rp.r.ID(), len(a.Ranges))
	}

	// Kill c: its connection is cut, so it neither renews nor releases.
	killed := time.Now()
	c.cut.Store(true)
	c.stop()
	testenv.Eventually(t, leaseDuration+3*time.Second, "a and b take c's ranges", func() (bool, error) { return g.settled([]*replica{a, b}) })
	t.Logf("killed replica's ranges reassigned %v after the kill (lease duration %v, retry period %v)", time.Since(killed).Round(10*time.Millisecond), leaseDuration, retryPeriod)
	t.Logf("killed replica's Run returned: %v", <-c.done)

	// Add d: the space is split three ways again.
	joined := time.Now()
	d := g.start("d")
	testenv.Eventually(t, 10*time.Second, "a, b and d share the space", func() (bool, error) { return g.settled([]*replica{a, b, d}) })
	t.Logf("joining replica active %v after start", time.Since(joined).Round(10*time.Millisecond))

	// Stop b gracefully: its Lease is gone when Run returns, and a and d
	// take over well within a lease duration.
	stopped := time.Now()
	b.stop()
	if err := <-b.done; err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	_, err := clientset(t, env.Config()).CoordinationV1().Leases(ns).Get(context.Background(), "workers-b", metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("after graceful stop, Get Lease workers-b: %v; want NotFound", err)
	}
	testenv.Eventually(t, leaseDuration, "a and d take b's ranges", func() (bool, error) { return g.settled([]*replica{a, d}) })
	t.Logf("gracefully stopped replica's ranges reassigned %v after stop", time.Since(stopped).Round(10*time.Millisecond))
	g.h.mu.Lock()
	t.Logf("reconciles admitted: %v", g.h.admitted)
	g.h.mu.Unlock()
}
