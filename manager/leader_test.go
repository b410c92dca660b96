package manager_test

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{Controllers: "none"}, func(e *testenv.Env) error { env = e; return nil }))
}

// activity counts controllers running across managers, keeping the maximum.
type activity struct {
	mu       sync.Mutex
	now, max int
}

func (a *activity) enter() {
	a.mu.Lock()
	a.now++
	a.max = max(a.max, a.now)
	a.mu.Unlock()
}

func (a *activity) leave() { a.mu.Lock(); a.now--; a.mu.Unlock() }

func (a *activity) peak() int { a.mu.Lock(); defer a.mu.Unlock(); return a.max }

// tracked wraps a controller so that its Run is counted in an activity.
type tracked struct {
	*controller.Controller[string]
	a *activity
}

func (t tracked) Run(ctx context.Context) error {
	t.a.enter()
	defer t.a.leave()
	return t.Controller.Run(ctx)
}

type candidate struct {
	m    *manager.Manager
	c    *controller.Controller[string]
	stop context.CancelFunc
	done chan error
}

func startCandidate(t *testing.T, lease string, a *activity, rec controller.ReconcileFunc[string]) *candidate {
	t.Helper()
	m, err := manager.New(manager.Options{
		Config: env.Config(), Addr: "-", Logger: quiet, KeepKlog: true,
		LeaderElection: &manager.LeaderElection{Namespace: "default", Name: lease},
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := controller.New(rec, controller.Options[string]{Name: "work", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddController(tracked{c, a}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cd := &candidate{m: m, c: c, stop: cancel, done: make(chan error, 1)}
	go func() { cd.done <- m.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-cd.done })
	return cd
}

func leaderOf(t *testing.T, within time.Duration, cs ...*candidate) *candidate {
	t.Helper()
	var leader *candidate
	waitFor(t, "a leader", within, func() bool {
		for _, c := range cs {
			if c.m.IsLeader() {
				leader = c
				return true
			}
		}
		return false
	})
	return leader
}

func TestLeaderElectionOneActiveAndFastFailover(t *testing.T) {
	a := &activity{}
	noop := func(context.Context, string) (controller.Result, error) { return controller.Result{}, nil }
	c1 := startCandidate(t, "failover", a, noop)
	c2 := startCandidate(t, "failover", a, noop)
	first := leaderOf(t, 15*time.Second, c1, c2)
	other := c2
	if first == c2 {
		other = c1
	}
	// Both candidates keep running for a while: still only one leads.
	time.Sleep(1500 * time.Millisecond)
	if other.m.IsLeader() {
		t.Fatal("both managers lead")
	}

	stopAt := time.Now()
	first.stop()
	if err := <-first.done; err != nil {
		t.Fatalf("leader's Start = %v, want nil after a clean stop", err)
	}
	first.done <- nil // for Cleanup
	leaderOf(t, 2*time.Second, other)
	t.Logf("released lease taken over after %v", time.Since(stopAt))
	if p := a.peak(); p != 1 {
		t.Fatalf("%d controllers ran at the same time across the two managers, want 1", p)
	}
}

func TestLeaseIsReleasedOnlyAfterInFlightReconcilesDrain(t *testing.T) {
	a := &activity{}
	release := make(chan struct{})
	var inFlight atomic.Bool
	blocking := func(ctx context.Context, k string) (controller.Result, error) {
		inFlight.Store(true)
		<-release
		return controller.Result{}, nil
	}
	c1 := startCandidate(t, "drain", a, blocking)
	first := leaderOf(t, 15*time.Second, c1)
	c2 := startCandidate(t, "drain", a, blocking)
	first.c.Queue().Add("ns/slow")
	waitFor(t, "reconcile in flight", 5*time.Second, inFlight.Load)

	first.stop()
	// While the old leader drains, the lease is still held: nobody else leads.
	time.Sleep(2500 * time.Millisecond) // > RetryPeriod × jitter: c2 has tried to acquire
	if c2.m.IsLeader() {
		t.Fatal("standby became leader while the old leader was still reconciling")
	}
	close(release)
	if err := <-first.done; err != nil {
		t.Fatalf("old leader's Start = %v", err)
	}
	first.done <- nil
	leaderOf(t, 2*time.Second, c2)
	if p := a.peak(); p != 1 {
		t.Fatalf("%d controllers ran at once, want 1", p)
	}
}

func TestCrashedLeadersLeaseIsTakenAfterItExpires(t *testing.T) {
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// A leader that crashed: it holds the lease and will never renew it.
	const leaseSeconds = 3
	now := metav1.NewMicroTime(time.Now())
	ghost := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "crashed", Namespace: "default"},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr("ghost"), LeaseDurationSeconds: ptr(int32(leaseSeconds)),
			AcquireTime: &now, RenewTime: &now,
		},
	}
	if _, err := cs.CoordinationV1().Leases("default").Create(ctx, ghost, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	c := startCandidate(t, "crashed", &activity{}, func(context.Context, string) (controller.Result, error) { return controller.Result{}, nil })
	leaderOf(t, leaseSeconds*time.Second+3*time.Second, c)
	took := time.Since(begin)
	t.Logf("crashed leader's lease (%ds) taken over after %v", leaseSeconds, took)
	if took < (leaseSeconds-1)*time.Second {
		t.Fatalf("lease taken after %v, before it expired (%ds)", took, leaseSeconds)
	}
}

func ptr[T any](v T) *T { return &v }
