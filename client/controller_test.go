package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

// TestControllerReadsItsOwnWritesUnderLoad runs a controller whose watches
// are slowed down while another writer churns its objects. Each reconcile
// of a parent ConfigMap reads the parent, lists its child Secrets, creates
// the child if there is none (with generateName, so a second create would
// make a second child), and bumps a counter annotation on the parent until
// it reaches rounds. Checked: no reconcile ever reads a parent older than
// the version this process last wrote, every parent ends with exactly one
// child, and the raw informer did lag behind (so the check meant something).
func TestControllerReadsItsOwnWritesUnderLoad(t *testing.T) {
	const parents, rounds = 20, 4
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := testenv.Namespace(t, env.Config())
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	mgr, err := manager.New(manager.Options{Config: slowWatches(env.Config(), 100*time.Millisecond), Addr: "-", Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	c := mgr.Client()
	var (
		mu          sync.Mutex
		lastWritten = map[client.ObjectKey]string{}
		stale       []string
		lagged      atomic.Int64
		reconciles  atomic.Int64
	)
	parentInf, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{Namespace: ns, LabelSelector: "role=parent"})
	if err != nil {
		t.Fatal(err)
	}
	r := controller.ReconcileFunc[controller.Request](func(ctx context.Context, req controller.Request) (controller.Result, error) {
		reconciles.Add(1)
		p, err := client.Get[*corev1.ConfigMap](ctx, c, req)
		if err != nil {
			return controller.Result{}, client.IgnoreNotFound(err)
		}
		mu.Lock()
		if w, ok := lastWritten[req]; ok {
			if cmp, err := resourceversion.CompareResourceVersion(p.ResourceVersion, w); err != nil || cmp < 0 {
				stale = append(stale, fmt.Sprintf("%s: read %s after writing %s", req, p.ResourceVersion, w))
			}
		}
		mu.Unlock()
		if raw, ok := parentInf.Lister().Get(req.Namespace, req.Name); ok && raw.ResourceVersion != p.ResourceVersion {
			lagged.Add(1)
		}
		kids, err := client.List[*corev1.Secret](ctx, c, client.InNamespace(req.Namespace), client.MatchingLabels{"parent": req.Name})
		if err != nil {
			return controller.Result{}, err
		}
		if len(kids) == 0 {
			kid := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, GenerateName: req.Name + "-", Labels: map[string]string{"parent": req.Name}}}
			if err := c.SetControllerReference(p, kid); err != nil {
				return controller.Result{}, err
			}
			if err := c.Create(ctx, kid); err != nil {
				return controller.Result{}, err
			}
		}
		n, _ := strconv.Atoi(p.Annotations["rounds"])
		if n >= rounds {
			return controller.Result{}, nil
		}
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		orig := p.DeepCopy()
		p.Annotations["rounds"] = strconv.Itoa(n + 1)
		if err := c.Patch(ctx, p, client.MergeFrom(orig)); err != nil {
			return controller.Result{}, err
		}
		mu.Lock()
		lastWritten[req] = p.ResourceVersion
		mu.Unlock()
		return controller.Result{}, nil
	})
	_, err = builder.Build(mgr, r, builder.Named("parents"),
		builder.Scope[*corev1.ConfigMap](cache.Scope{Namespace: ns, LabelSelector: "role=parent"}),
		builder.For[*corev1.ConfigMap](), builder.Owns[*corev1.Secret]())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	mctx, stop := context.WithCancel(ctx)
	go func() { done <- mgr.Start(mctx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	}()

	cs := kubernetes.NewForConfigOrDie(env.Config())
	for i := range parents {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("p%02d", i), Labels: map[string]string{"role": "parent"}}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Churn: another writer keeps changing the parents' data, producing
	// events (and conflicts) while the controller works.
	churnCtx, stopChurn := context.WithCancel(ctx)
	var churn sync.WaitGroup
	churn.Go(func() {
		pace := time.NewTicker(10 * time.Millisecond)
		defer pace.Stop()
		for i := 0; churnCtx.Err() == nil; i++ {
			select {
			case <-pace.C:
			case <-churnCtx.Done():
				return
			}
			name := fmt.Sprintf("p%02d", i%parents)
			patch := fmt.Appendf(nil, `{"data":{"churn":"%d"}}`, i)
			if _, err := cs.CoreV1().ConfigMaps(ns).Patch(churnCtx, name, "application/merge-patch+json", patch, metav1.PatchOptions{}); err != nil && churnCtx.Err() == nil {
				t.Errorf("churn: %v", err)
				return
			}
		}
	})
	testenv.Eventually(t, 90*time.Second, fmt.Sprintf("all %d parents to reach %d rounds", parents, rounds), func() (bool, error) {
		list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: "role=parent"})
		if err != nil {
			return false, err
		}
		finished := 0
		for _, p := range list.Items {
			if p.Annotations["rounds"] == strconv.Itoa(rounds) {
				finished++
			}
		}
		return finished == parents, fmt.Errorf("%d finished, %d reconciles", finished, reconciles.Load())
	})
	stopChurn()
	churn.Wait()

	secrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	children := map[string]int{}
	for _, s := range secrets.Items {
		children[s.Labels["parent"]]++
	}
	for i := range parents {
		if n := children[fmt.Sprintf("p%02d", i)]; n != 1 {
			t.Errorf("parent p%02d has %d children, want exactly 1", i, n)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(stale) > 0 {
		t.Fatalf("%d reconciles read a parent older than our own last write, e.g. %s", len(stale), stale[0])
	}
	if lagged.Load() == 0 {
		t.Fatal("the raw informer never lagged behind a read: the slowed watch did not exercise read-your-own-writes")
	}
	t.Logf("%d reconciles; the raw cache was behind the client's read %d times", reconciles.Load(), lagged.Load())
}
