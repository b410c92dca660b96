package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/deadletter"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/shard"
	"github.com/skiffkit/skiff/testenv"
)

var dlLogLevel = slog.LevelInfo

// dlReplica is one sharded manager replica whose controller persists its
// dead letters (builder.PersistDeadLetters).
type dlReplica struct {
	id   string
	mgr  *manager.Manager
	ctrl *controller.Controller[controller.Request]
	cut  atomic.Bool
	stop context.CancelFunc
	done chan error
}

// TestDeadLetterFollowsFailover: with three sharded replicas and persisted
// dead letters, a key whose reconcile always fails is dead-lettered and
// persisted by its owner; the owner is cut off from the API server (no
// release: its Lease expires); the key's new owner lists it as dead here
// without reconciling it again; a replay asked of the third replica's
// /debug/skiff/replay reaches the new owner, which reconciles it (now
// successfully), and the persisted entry is gone.
func TestDeadLetterFollowsFailover(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	const name = "dl-failover"
	cs := clientset(t, env.Config())
	// A few keys besides the failing one, so every replica owns some.
	for i := range 12 {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("ok-%02d", i), Labels: map[string]string{"app": "dl"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var poison *corev1.ConfigMap // created once the replicas have settled
	key := controller.Request{Namespace: ns, Name: "poison"}
	keyString := key.String()

	var works atomic.Bool // the poison key's reconcile succeeds once set
	var mu sync.Mutex
	tries := map[string]int{}     // replica → reconciles of the poison key
	succeeded := map[string]int{} // replica → successful ones
	var wg sync.WaitGroup
	var all []*dlReplica
	defer func() {
		for _, r := range all {
			r.stop()
		}
		wg.Wait()
	}()
	start := func(id string) *dlReplica {
		r := &dlReplica{id: id, done: make(chan error, 1)}
		var unused atomic.Int64
		mgr, err := manager.New(manager.Options{
			Config: countingConfig(env.Config(), &r.cut, &unused), Addr: "-", KeepKlog: true, EnableReplay: true,
			Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: dlLogLevel})).With("replica", id),
			Shard: &shard.Options{Namespace: ns, Group: "dl", Identity: id,
				LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod, ReleaseTimeout: 5 * time.Second},
		})
		if err != nil {
			t.Fatal(err)
		}
		rec := controller.ReconcileFunc[controller.Request](func(ctx context.Context, k controller.Request) (controller.Result, error) {
			if k != key {
				return controller.Result{}, nil
			}
			mu.Lock()
			defer mu.Unlock()
			tries[id]++
			if !works.Load() {
				return controller.Result{}, errors.New("poison: always fails")
			}
			succeeded[id]++
			return controller.Result{}, nil
		})
		r.ctrl, err = builder.Build(mgr, rec, builder.Named(name),
			builder.Scope[*corev1.ConfigMap](cache.Scope{Namespace: ns, LabelSelector: "app=dl"}),
			builder.For[*corev1.ConfigMap](),
			builder.WithOptions(controller.Options[controller.Request]{MaxFailures: 3, ShutdownTimeout: 5 * time.Second}),
			builder.PersistDeadLetters(deadletter.StoreOptions{Namespace: ns, Replica: id}))
		if err != nil {
			t.Fatal(err)
		}
		r.mgr = mgr
		ctx, cancel := context.WithCancel(context.Background())
		r.stop = cancel
		wg.Go(func() { r.done <- mgr.Start(ctx) })
		all = append(all, r)
		return r
	}
	for _, id := range []string{"r1", "r2", "r3"} {
		start(id)
	}
	settledOn := func(rs ...*dlReplica) func() (bool, error) {
		return func() (bool, error) {
			version := ""
			for _, r := range rs {
				a := r.mgr.Shard().Replica().Assignment()
				if !a.Active || len(a.Members) != len(rs) || (version != "" && a.Version != version) {
					return false, fmt.Errorf("%s: active %v, %d members, want %d on one ring", r.id, a.Active, len(a.Members), len(rs))
				}
				version = a.Version
			}
			return true, nil
		}
	}
	ownerAmong := func(rs ...*dlReplica) (*dlReplica, error) {
		var owners []*dlReplica
		for _, r := range rs {
			if r.mgr.Shard().Replica().Assignment().Owns(shard.ItemOf(poison, shard.UID)) {
				owners = append(owners, r)
			}
		}
		if len(owners) != 1 {
			return nil, fmt.Errorf("%d owners of %s", len(owners), keyString)
		}
		return owners[0], nil
	}
	info := func(r *dlReplica) (controller.DeadLetterInfo, bool) {
		for _, d := range r.ctrl.DeadLetterInfos() {
			if d.Key == keyString {
				return d, true
			}
		}
		return controller.DeadLetterInfo{}, false
	}
	persisted := func() (deadletter.Entry, bool, error) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), deadletter.ConfigMapName(name), metav1.GetOptions{})
		if err != nil {
			return deadletter.Entry{}, false, err
		}
		v, ok := cm.Data[deadletter.DataKey(keyString)]
		if !ok {
			return deadletter.Entry{}, false, nil
		}
		e, err := deadletter.Decode(deadletter.DataKey(keyString), v)
		return e, true, err
	}

	testenv.Eventually(t, 30*time.Second, "3 replicas settled", settledOn(all...))
	// Created now, the key is reconciled by its owner only (earlier, a
	// replica alone on its first ring could have taken it).
	poison, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Name: "poison", Labels: map[string]string{"app": "dl"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := ownerAmong(all...)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "dead letter persisted by its owner", func() (bool, error) {
		d, ok := info(first)
		if !ok || !d.Here || !d.Persisted || d.Replica != first.id {
			return false, fmt.Errorf("on %s: %+v (found %v)", first.id, d, ok)
		}
		e, ok, err := persisted()
		if err != nil || !ok {
			return false, fmt.Errorf("entry in the ConfigMap: %v, %v", ok, err)
		}
		if e.Replica != first.id || e.Attempts != 3 {
			return false, fmt.Errorf("entry %+v, want replica %s, 3 attempts", e, first.id)
		}
		return true, nil
	})
	mu.Lock()
	for id, n := range tries {
		if id != first.id {
			t.Errorf("%s reconciled %s %d times; only its owner %s should have", id, keyString, n, first.id)
		}
	}
	mu.Unlock()

	// Cut the owner off: every request it sends fails, so it can neither
	// renew nor release its Lease; the others take its keys once the Lease
	// has not changed for LeaseDuration.
	first.cut.Store(true)
	cutAt := time.Now()
	var rest []*dlReplica
	for _, r := range all {
		if r != first {
			rest = append(rest, r)
		}
	}
	testenv.Eventually(t, 4*leaseDuration, "2 replicas settled without the cut one", settledOn(rest...))
	t.Logf("settled on %d replicas %v after the cut", len(rest), time.Since(cutAt).Round(10*time.Millisecond))
	owner, err := ownerAmong(rest...)
	if err != nil {
		t.Fatal(err)
	}
	var third *dlReplica
	for _, r := range rest {
		if r != owner {
			third = r
		}
	}
	testenv.Eventually(t, 30*time.Second, "the new owner lists the dead letter as its own", func() (bool, error) {
		d, ok := info(owner)
		if !ok || !d.Here || !d.Persisted {
			return false, fmt.Errorf("on %s: %+v (found %v)", owner.id, d, ok)
		}
		return true, nil
	})
	if d, _ := info(third); d.Here {
		t.Errorf("the non-owner %s holds the dead letter too: %+v", third.id, d)
	}
	mu.Lock()
	if n := tries[owner.id]; n != 0 {
		t.Errorf("the new owner %s reconciled the dead key %d times after the hand-off; want 0 (restored dead)", owner.id, n)
	}
	mu.Unlock()

	// Replay through the third replica's /debug/skiff/replay; the key now
	// succeeds.
	works.Store(true)
	replayOn(t, third.mgr, name, keyString)
	testenv.Eventually(t, 30*time.Second, "the owner reconciled the replayed key and the entry is gone", func() (bool, error) {
		mu.Lock()
		n := succeeded[owner.id]
		mu.Unlock()
		if n == 0 {
			return false, fmt.Errorf("%s has not reconciled %s successfully", owner.id, keyString)
		}
		if _, ok, err := persisted(); err != nil || ok {
			return false, fmt.Errorf("entry still persisted (%v)", err)
		}
		for _, r := range rest {
			if d, ok := info(r); ok {
				return false, fmt.Errorf("%s still lists %+v", r.id, d)
			}
		}
		return true, nil
	})
	mu.Lock()
	defer mu.Unlock()
	if n := succeeded[third.id] + tries[third.id]; n != 0 {
		t.Errorf("the replica that asked for the replay (%s, not the owner) reconciled the key %d times", third.id, n)
	}
}

// replayOn posts a replay of key to mgr's /debug/skiff/replay as a script
// would: the CSRF token from /debug/skiff?format=json in a header.
func replayOn(t *testing.T, mgr *manager.Manager, controllerName, key string) {
	t.Helper()
	h := mgr.Handler()
	get := httptest.NewRequest("GET", "/debug/skiff?format=json", nil)
	get.Host = "127.0.0.1"
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, get)
	var page struct {
		ReplayToken string `json:"replayToken"`
	}
	if err := json.NewDecoder(rr.Body).Decode(&page); err != nil || page.ReplayToken == "" {
		t.Fatalf("/debug/skiff?format=json: status %d, token %q, err %v", rr.Code, page.ReplayToken, err)
	}
	q := url.Values{"controller": {controllerName}, "key": {key}}
	post := httptest.NewRequest("POST", "/debug/skiff/replay?"+q.Encode(), nil)
	post.Host = "127.0.0.1"
	post.Header.Set("X-Skiff-Csrf-Token", page.ReplayToken)
	rr = httptest.NewRecorder()
	h.ServeHTTP(rr, post)
	if rr.Code >= http.StatusBadRequest {
		t.Fatalf("replay %s on %s: %d %s", key, controllerName, rr.Code, rr.Body.String())
	}
	t.Logf("replay %s: %d %s", key, rr.Code, rr.Body.String())
}
