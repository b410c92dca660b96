package integration

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

// A relist by pages (WatchListOff) after a 410 keeps the pods the store
// holds unchanged without decoding them (Stats.Kept) and ends equal to
// the server. No wrapper around the source: its own paginated list runs,
// item by item. The informer's watches last a second, so it watches again
// soon from a resourceVersion that compaction has made history (the watch
// cache is off for pods, so the watch goes to etcd and gets 410).
func TestRelistByPagesKeepsUnchanged(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	env, err := testenv.Start(ctx, testenv.Options{APIServerArgs: []string{"--watch-cache-sizes=pods#0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { env.Stop() }) // after the informer's cleanup, which runs first
	cfg := env.Config()
	cs := clientset(t, cfg)
	ns, err := testenv.CreateNamespace(ctx, cs, "pagerelist")
	if err != nil {
		t.Fatal(err)
	}
	pods := cs.CoreV1().Pods(ns)
	for i := range 3 {
		if _, err := pods.Create(ctx, newPod(fmt.Sprint("watched-", i), map[string]string{"watched": "yes"}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	src, err := cache.TypedSource[*corev1.Pod](cfg, podsGVR, cache.Scope{Namespace: ns, LabelSelector: "watched=yes"})
	if err != nil {
		t.Fatal(err)
	}
	inf := cache.New(src, cache.Options[*corev1.Pod]{WatchList: cache.WatchListOff, PageSize: 2, WatchTimeout: time.Second, InitialBackoff: 10 * time.Millisecond})
	runInformer(t, inf)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	// Writes the informer does not see move etcd on; compaction then makes
	// its resume point history.
	for i := range 5 {
		if _, err := pods.Create(ctx, newPod(fmt.Sprint("other-", i), nil), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := env.CompactEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		if st := inf.Stats(); st.Relists < 2 || st.Kept < 3 {
			return fmt.Sprintf("stats %+v: want a relist that kept the 3 unchanged pods", st)
		}
		return ""
	})
	l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "watched=yes"})
	if err != nil {
		t.Fatal(err)
	}
	if msg := sameAs(inf, snapshot(podsOf(l))); msg != "" {
		t.Fatal(msg)
	}
	if st := inf.Stats(); st.Skipped != 0 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
}
