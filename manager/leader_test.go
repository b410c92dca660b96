package manager_test

import (
	"context"
	"net/http"
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
	id   string
	m    *manager.Manager
	c    *controller.Controller[string]
	stop context.CancelFunc
	done chan error
	// leaseReads counts this candidate's GETs of its Lease: one per attempt
	// to acquire it while another holds it.
	leaseReads atomic.Int64
}

// leaseReadCounter counts GETs of one Lease.
type leaseReadCounter struct {
	rt   http.RoundTripper
	path string
	n    *atomic.Int64
}

func (l leaseReadCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && r.URL.Path == l.path {
		l.n.Add(1)
	}
	return l.rt.RoundTrip(r)
}

func startCandidate(t *testing.T, ns, lease, id string, a *activity, rec controller.ReconcileFunc[string]) *candidate {
	t.Helper()
	cd := &candidate{id: id, done: make(chan error, 1)}
	cfg := env.Config()
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return leaseReadCounter{rt, "/apis/coordination.k8s.io/v1/namespaces/" + ns + "/leases/" + lease, &cd.leaseReads}
	}
	m, err := manager.New(manager.Options{
		Config: cfg, Addr: "-", Logger: quiet, KeepKlog: true,
		LeaderElection: &manager.LeaderElection{Namespace: ns, Name: lease, Identity: id},
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
	cd.m, cd.c, cd.stop = m, c, cancel
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

// standbyStaysOut waits until standby has tried three more times to take
// the Lease, then checks that it did not: it does not lead, and the Lease
// still names holder. Attempt k's write, if any, comes before attempt k+1's
// read, so after three more reads two attempts are complete.
func standbyStaysOut(t *testing.T, cs kubernetes.Interface, ns, lease string, standby *candidate, holder string) {
	t.Helper()
	n := standby.leaseReads.Load()
	waitFor(t, "three attempts by the standby to take the Lease", 20*time.Second, func() bool { return standby.leaseReads.Load() >= n+3 })
	if standby.m.IsLeader() {
		t.Fatalf("standby %s leads while %s holds the Lease", standby.id, holder)
	}
	l, err := cs.CoordinationV1().Leases(ns).Get(context.Background(), lease, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Spec.HolderIdentity; got == nil || *got != holder {
		t.Fatalf("Lease held by %v, want %s", got, holder)
	}
}

func clientset(t *testing.T) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestLeaderElectionOneActiveAndFastFailover(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	a := &activity{}
	noop := func(context.Context, string) (controller.Result, error) { return controller.Result{}, nil }
	c1 := startCandidate(t, ns, "failover", "c1", a, noop)
	c2 := startCandidate(t, ns, "failover", "c2", a, noop)
	first := leaderOf(t, 15*time.Second, c1, c2)
	other := c2
	if first == c2 {
		other = c1
	}
	// Both candidates keep running: still only one leads.
	standbyStaysOut(t, clientset(t), ns, "failover", other, first.id)

	stopAt := time.Now()
	first.stop()
	if err := <-first.done; err != nil {
		t.Fatalf("leader's Start = %v, want nil after a clean stop", err)
	}
	first.done <- nil // for Cleanup
	takesOverReleasedLease(t, other)
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
	ns := testenv.Namespace(t, env.Config())
	c1 := startCandidate(t, ns, "drain", "c1", a, blocking)
	first := leaderOf(t, 15*time.Second, c1)
	c2 := startCandidate(t, ns, "drain", "c2", a, blocking)
	first.c.Queue().Add("ns/slow")
	waitFor(t, "reconcile in flight", 5*time.Second, inFlight.Load)

	first.stop()
	// While the old leader drains, the lease is still held: nobody else leads.
	standbyStaysOut(t, clientset(t), ns, "drain", c2, "c1")
	close(release)
	if err := <-first.done; err != nil {
		t.Fatalf("old leader's Start = %v", err)
	}
	first.done <- nil
	takesOverReleasedLease(t, c2)
	if p := a.peak(); p != 1 {
		t.Fatalf("%d controllers ran at once, want 1", p)
	}
}

func TestCrashedLeadersLeaseIsTakenAfterItExpires(t *testing.T) {
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	ctx := context.Background()
	// A leader that crashed: it holds the lease and will never renew it.
	const leaseSeconds = 3
	now := metav1.NewMicroTime(time.Now())
	ghost := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "crashed", Namespace: ns},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity: ptr("ghost"), LeaseDurationSeconds: ptr(int32(leaseSeconds)),
			AcquireTime: &now, RenewTime: &now,
		},
	}
	if _, err := cs.CoordinationV1().Leases(ns).Create(ctx, ghost, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	c := startCandidate(t, ns, "crashed", "c1", &activity{}, func(context.Context, string) (controller.Result, error) { return controller.Result{}, nil })
	leaderOf(t, leaseSeconds*time.Second+3*time.Second, c)
	took := time.Since(begin)
	t.Logf("crashed leader's lease (%ds) taken over after %v", leaseSeconds, took)
	if took < (leaseSeconds-1)*time.Second {
		t.Fatalf("lease taken after %v, before it expired (%ds)", took, leaseSeconds)
	}
}

// takesOverReleasedLease checks that standby leads after at most two more
// attempts, once the old leader's Start has returned (so its Lease is
// released): one attempt may have read the Lease just before the release.
// Had the Lease not been released, the standby would wait out its 10s
// LeaseDuration, about ten attempts. Counting attempts, not time, keeps the
// check independent of the elector's jittered retry period and machine load.
func takesOverReleasedLease(t *testing.T, standby *candidate) {
	t.Helper()
	n := standby.leaseReads.Load()
	leaderOf(t, 20*time.Second, standby)
	if attempts := standby.leaseReads.Load() - n; attempts > 2 {
		t.Fatalf("standby needed %d attempts to take a released Lease, want at most 2", attempts)
	}
}

func ptr[T any](v T) *T { return &v }
