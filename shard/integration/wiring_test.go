package integration

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/shard"
	"github.com/skiffkit/skiff/testenv"
)

// fleet is a group of manager replicas, each running a real controller
// over the ConfigMaps of one namespace, built by the builder with the
// manager's Options.Shard. The reconciler checks that no key is reconciled
// by two replicas at once and records who reconciled each key last.
type fleet struct {
	t     *testing.T
	cfg   *rest.Config // the control plane; default env's
	ns    string
	scope *cache.Scope     // the controller's ConfigMaps; default all of ns
	field shard.Field      // what places a key; default shard.UID
	extra []builder.Option // more Build options
	// leaseDuration of the replicas; default the package's leaseDuration.
	leaseDuration time.Duration
	group         string
	weight        map[string]float64
	requeue       time.Duration // every key is reconciled again this long after
	mu            sync.Mutex
	running       map[string]*member
	all           []*member
	holder        map[types.NamespacedName]string    // key → replica reconciling it now
	last          map[types.NamespacedName]reconcile // key → last reconcile
	overlaps      atomic.Int64
	wg            sync.WaitGroup
}

type reconcile struct {
	by string
	at time.Time
}

type member struct {
	id   string
	mgr  *manager.Manager
	ctrl *controller.Controller[controller.Request]
	inf  *cache.Informer[*corev1.ConfigMap]
	cut  atomic.Bool
	// leasesCut fails only its Lease requests: it cannot renew (and so
	// fences itself) while its informers and writes keep working.
	leasesCut atomic.Bool
	bytes     atomic.Int64 // ConfigMap list and watch bytes read
	stop      context.CancelFunc
	done      chan error
}

func newFleet(t *testing.T, ns string) *fleet {
	return &fleet{t: t, cfg: env.Config(), ns: ns, group: "cm", requeue: 300 * time.Millisecond, weight: map[string]float64{}, running: map[string]*member{},
		holder: map[types.NamespacedName]string{}, last: map[types.NamespacedName]reconcile{}}
}

func (f *fleet) reconcile(id string) controller.ReconcileFunc[controller.Request] {
	return func(ctx context.Context, key controller.Request) (controller.Result, error) {
		f.mu.Lock()
		if other, ok := f.holder[key]; ok {
			f.overlaps.Add(1)
			f.t.Errorf("%s reconciles %s while %s does", id, key, other)
		}
		f.holder[key] = id
		f.mu.Unlock()
		select { // the reconcile's work
		case <-time.After(2 * time.Millisecond):
		case <-ctx.Done():
		}
		f.mu.Lock()
		delete(f.holder, key)
		f.last[key] = reconcile{by: id, at: time.Now()}
		f.mu.Unlock()
		// Every key is reconciled again and again, so hand-offs happen
		// under load.
		return controller.Result{RequeueAfter: f.requeue}, nil
	}
}

// countingConfig counts the response bytes of ConfigMap requests into n
// and fails every request while cut is set (a replica cut off from the API
// server: it can neither renew nor release its Lease).
func countingConfig(cfg *rest.Config, cut *atomic.Bool, n *atomic.Int64) *rest.Config {
	return cuttableConfig(cfg, cut, nil, n)
}

// cuttableConfig is countingConfig that also fails Lease requests while
// leasesCut (if non-nil) is set.
func cuttableConfig(cfg *rest.Config, cut, leasesCut *atomic.Bool, n *atomic.Int64) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if cut.Load() || (leasesCut != nil && leasesCut.Load() && strings.Contains(r.URL.Path, "/leases")) {
				return nil, fmt.Errorf("test: connection cut")
			}
			resp, err := rt.RoundTrip(r)
			if err == nil && strings.Contains(r.URL.Path, "/configmaps") {
				resp.Body = &countingBody{ReadCloser: resp.Body, n: n}
			}
			return resp, err
		})
	})
	return c
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	k, err := b.ReadCloser.Read(p)
	b.n.Add(int64(k))
	return k, err
}

func (f *fleet) start(id string) *member {
	f.t.Helper()
	m := &member{id: id, done: make(chan error, 1)}
	mgr, err := manager.New(manager.Options{
		Config: cuttableConfig(f.cfg, &m.cut, &m.leasesCut, &m.bytes), Addr: "-", KeepKlog: true,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Shard: &shard.Options{Namespace: f.ns, Group: f.group, Identity: id, Weight: f.weight[id],
			LeaseDuration: cmp.Or(f.leaseDuration, leaseDuration), RenewDeadline: renewDeadline, RetryPeriod: retryPeriod, ReleaseTimeout: 5 * time.Second},
	})
	if err != nil {
		f.t.Fatal(err)
	}
	m.mgr = mgr
	scope := cache.Scope{Namespace: f.ns}
	if f.scope != nil {
		scope = *f.scope
	}
	opts := append([]builder.Option{builder.Named("cm"),
		builder.Scope[*corev1.ConfigMap](scope),
		builder.For[*corev1.ConfigMap](),
		builder.WithOptions(controller.Options[controller.Request]{MinWorkers: 4, MaxWorkers: 4, RequeueQPS: -1, ShutdownTimeout: 5 * time.Second})},
		f.extra...)
	m.ctrl, err = builder.Build(mgr, f.reconcile(id), opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	m.inf, err = client.InformerFor[*corev1.ConfigMap](mgr.Client(), scope)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stop = cancel
	f.wg.Go(func() { m.done <- mgr.Start(ctx) })
	f.mu.Lock()
	f.running[id] = m
	f.all = append(f.all, m)
	f.mu.Unlock()
	return m
}

// kill cuts a replica off without release; it keeps running, fenced, until
// the test ends.
func (f *fleet) kill(id string) {
	f.mu.Lock()
	m := f.running[id]
	delete(f.running, id)
	f.mu.Unlock()
	m.cut.Store(true)
}

// stopGracefully stops a replica: its controllers drain, its Lease is
// deleted.
func (f *fleet) stopGracefully(id string) {
	f.mu.Lock()
	m := f.running[id]
	delete(f.running, id)
	f.mu.Unlock()
	m.stop()
	if err := <-m.done; err != nil {
		f.t.Errorf("graceful stop of %s: %v", id, err)
	}
}

func (f *fleet) members() []*member {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*member, 0, len(f.running))
	for _, m := range f.running {
		out = append(out, m)
	}
	return out
}

// settled reports whether the running replicas are all active on one ring
// whose members are exactly them.
func (f *fleet) settled() (bool, error) {
	ms := f.members()
	version := ""
	for _, m := range ms {
		a := m.mgr.Shard().Replica().Assignment()
		if !a.Active {
			return false, fmt.Errorf("%s not active", m.id)
		}
		if version != "" && a.Version != version {
			return false, fmt.Errorf("replicas on different rings")
		}
		version = a.Version
		if len(a.Members) != len(ms) {
			return false, fmt.Errorf("%s sees %d members, %d run", m.id, len(a.Members), len(ms))
		}
	}
	return true, nil
}

// ownerOf is the running replica whose assignment owns obj.
func (f *fleet) ownerOf(obj metav1.Object) (string, int) {
	owner, n := "", 0
	for _, m := range f.members() {
		if m.mgr.Shard().Replica().Assignment().Owns(shard.ItemOf(obj, f.field)) {
			owner, n = m.id, n+1
		}
	}
	return owner, n
}

// reconciledByOwners waits until every object has been reconciled after
// since, last by its owner.
func (f *fleet) reconciledByOwners(objs []*corev1.ConfigMap, since time.Time, timeout time.Duration) {
	f.t.Helper()
	testenv.Eventually(f.t, timeout, "every key reconciled by its owner", func() (bool, error) {
		for _, o := range objs {
			owner, n := f.ownerOf(o)
			if n != 1 {
				return false, fmt.Errorf("%s has %d owners", o.Name, n)
			}
			f.mu.Lock()
			r := f.last[types.NamespacedName{Namespace: o.Namespace, Name: o.Name}]
			f.mu.Unlock()
			if r.at.Before(since) || r.by != owner {
				return false, fmt.Errorf("%s last reconciled by %q at %v, owner %s", o.Name, r.by, r.at, owner)
			}
		}
		return true, nil
	})
}

func (f *fleet) shutdown() {
	f.mu.Lock()
	for _, m := range f.all {
		m.stop()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func createCMs(t *testing.T, ns string, n int) []*corev1.ConfigMap {
	t.Helper()
	return createCMsIn(t, env.Config(), ns, n)
}

func createCMsIn(t *testing.T, cfg *rest.Config, ns string, n int) []*corev1.ConfigMap {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = -1, 0
	cs := clientset(t, cfg)
	out := make([]*corev1.ConfigMap, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				out[i], errs[i] = cs.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%04d", i)}}, metav1.CreateOptions{})
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestShardedControllerShare: three replicas of a controller each reconcile
// exactly the keys they own, each caches about a third of the objects (the
// server applies their shard selectors) and reads about a third of the
// watch bytes.
func TestShardedControllerShare(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	const n = 300
	objs := createCMs(t, ns, n)
	f := newFleet(t, ns)
	defer f.shutdown()
	for _, id := range []string{"r1", "r2", "r3"} {
		f.start(id)
	}
	testenv.Eventually(t, 30*time.Second, "3 replicas settled", f.settled)
	settledAt := time.Now()
	for _, m := range f.members() {
		if !m.mgr.State().Shard.ServerSide {
			t.Fatalf("%s: the control plane runs with ShardedListAndWatch, but the manager did not detect it", m.id)
		}
	}
	f.reconciledByOwners(objs, settledAt, 30*time.Second)

	total := 0
	for _, m := range f.members() {
		got := m.inf.Store().Len()
		total += got
		t.Logf("%s caches %d of %d ConfigMaps (owns %.3f of the space)", m.id, got, n, m.mgr.State().Shard.OwnedFraction)
		if frac := m.mgr.State().Shard.OwnedFraction; !withinShare(got, n, frac) {
			t.Errorf("%s caches %d of %d objects owning %.3f of the space, want about that share (≤ 0.4)", m.id, got, n, frac)
		}
		for _, cm := range m.inf.Lister().List(nil) {
			if owner, _ := f.ownerOf(cm); owner != m.id {
				t.Errorf("%s caches %s, owned by %s", m.id, cm.Name, owner)
			}
		}
	}
	if total != n {
		t.Errorf("the replicas cache %d objects together, want %d (each exactly once)", total, n)
	}

	// Watch bytes: change every object; each replica should read only its
	// own objects' events.
	for _, m := range f.members() {
		m.bytes.Store(0)
	}
	cs := clientset(t, env.Config())
	for _, o := range objs {
		patch := []byte(`{"data":{"v":"` + strings.Repeat("x", 512) + `"}}`)
		if _, err := cs.CoreV1().ConfigMaps(ns).Patch(context.Background(), o.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "every replica's cache has the change", func() (bool, error) {
		for _, m := range f.members() {
			for _, cm := range m.inf.Lister().List(nil) {
				if cm.Data["v"] == "" {
					return false, fmt.Errorf("%s: %s not updated", m.id, cm.Name)
				}
			}
		}
		return true, nil
	})
	var sum int64
	for _, m := range f.members() {
		sum += m.bytes.Load()
	}
	for _, m := range f.members() {
		share := float64(m.bytes.Load()) / float64(sum)
		t.Logf("%s read %d of %d watch bytes (%.2f)", m.id, m.bytes.Load(), sum, share)
		if share > 0.45 || share < 0.2 {
			t.Errorf("%s read %.2f of the watch bytes, want about a third", m.id, share)
		}
	}
	if f.overlaps.Load() > 0 {
		t.Errorf("%d overlapping reconciles", f.overlaps.Load())
	}
}

// TestShardedControllerMembershipChanges runs 20 seeded membership changes
// (kill without release, add, graceful stop) under continuous reconciles:
// no key is ever reconciled by two replicas at once, the group settles
// within about a Lease duration of each change, and every key is then
// reconciled by its owner.
func TestShardedControllerMembershipChanges(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SHARD_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (SHARD_SEED=%d reproduces the sequence)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	objs := createCMs(t, ns, 120)
	f := newFleet(t, ns)
	defer f.shutdown()
	next := 0
	add := func() string {
		next++
		id := fmt.Sprintf("r%d", next)
		f.start(id)
		return id
	}
	for range 3 {
		add()
	}
	testenv.Eventually(t, 30*time.Second, "3 replicas settled", f.settled)
	for step := range 20 {
		ms := f.members()
		var what string
		switch k := rng.IntN(3); {
		case k == 0 && len(ms) > 1:
			id := ms[rng.IntN(len(ms))].id
			f.kill(id)
			what = "kill " + id
		case k == 1 && len(ms) > 1:
			id := ms[rng.IntN(len(ms))].id
			f.stopGracefully(id)
			what = "stop " + id
		default:
			what = "add " + add()
		}
		began := time.Now()
		testenv.Eventually(t, 4*leaseDuration, fmt.Sprintf("step %d (%s): settled", step, what), f.settled)
		took := time.Since(began)
		t.Logf("step %d: %s; %d running; settled in %v", step, what, len(f.members()), took.Round(10*time.Millisecond))
		if took > leaseDuration+2*time.Second {
			t.Errorf("step %d (%s): settled after %v, want within about one Lease duration (%v)", step, what, took, leaseDuration)
		}
		f.reconciledByOwners(objs, time.Now(), 20*time.Second)
	}
	if f.overlaps.Load() > 0 {
		t.Errorf("%d overlapping reconciles", f.overlaps.Load())
	}
}

// TestShardedControllerCanary: a member joining with Weight 0.05 among
// three gets 5% ± 2% of 3000 keys; widening it to an equal share and then
// removing it hand keys off with no key reconciled by two replicas at once.
func TestShardedControllerCanary(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	const n = 3000
	objs := createCMs(t, ns, n)
	f := newFleet(t, ns)
	f.requeue = 3 * time.Second // 1000 reconciles/s in all: the machine is small
	defer f.shutdown()
	for _, id := range []string{"r1", "r2", "r3"} {
		f.start(id)
	}
	f.weight["canary"] = 0.05
	canary := f.start("canary")
	testenv.Eventually(t, 30*time.Second, "3 replicas and the canary settled", f.settled)
	share := func() float64 {
		k := 0
		for _, o := range objs {
			if owner, _ := f.ownerOf(o); owner == "canary" {
				k++
			}
		}
		return float64(k) / n
	}
	f.reconciledByOwners(objs, time.Now(), 30*time.Second)
	if s := share(); s < 0.03 || s > 0.07 {
		t.Errorf("canary owns %.3f of %d keys, want 0.05 ± 0.02", s, n)
	} else {
		t.Logf("canary owns %.3f of %d keys", s, n)
	}

	if err := canary.mgr.Shard().Replica().SetWeight(0); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "canary widened to an equal share", func() (bool, error) {
		if ok, err := f.settled(); !ok {
			return false, err
		}
		if fr := canary.mgr.State().Shard.OwnedFraction; fr < 0.24 || fr > 0.26 {
			return false, fmt.Errorf("canary owns %.3f of the space", fr)
		}
		return true, nil
	})
	f.reconciledByOwners(objs, time.Now(), 30*time.Second)
	t.Logf("widened: canary owns %.3f of %d keys", share(), n)

	f.stopGracefully("canary") // rollback
	testenv.Eventually(t, 30*time.Second, "canary removed", f.settled)
	f.reconciledByOwners(objs, time.Now(), 30*time.Second)
	if f.overlaps.Load() > 0 {
		t.Errorf("%d overlapping reconciles", f.overlaps.Load())
	}
}

// withinShare reports whether a replica that owns frac of the hash space
// may cache got of n objects with random UIDs: at most frac·n plus four
// binomial standard deviations (about 3e-5 to exceed by chance), and frac
// itself at most 0.4. A fixed 0.4·n bound failed by chance at n = 300
// (121 of 300: 2.4σ above a third).
func withinShare(got, n int, frac float64) bool {
	mean := frac * float64(n)
	return frac <= 0.4 && float64(got) <= mean+4*math.Sqrt(mean*(1-frac))
}
