// Package integration tests the cache package against the local control
// plane (testenv): one shared control plane for the package, and dedicated
// ones for restarts and compaction.
package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/testenv"
)

var shared *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{}, func(e *testenv.Env) error { shared = e; return nil }))
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func clientset(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// runInformer runs inf until the test ends and waits for it to return.
func runInformer[T cache.Object](t *testing.T, inf *cache.Informer[T]) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { inf.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

// eventually waits until cond returns "", failing with its last complaint.
func eventually(t *testing.T, d time.Duration, cond func() string) {
	t.Helper()
	testenv.Eventually(t, d, "the informer to match the server", func() (bool, error) {
		msg := cond()
		return msg == "", errors.New(msg)
	})
}

// snapshot renders objects as sorted "key@resourceVersion" lines.
func snapshot[T cache.Object](objs []T) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, cache.KeyOf(o).String()+"@"+o.GetResourceVersion())
	}
	slices.Sort(out)
	return out
}

// sameAs returns "" when the informer's store holds exactly want.
func sameAs[T cache.Object](inf *cache.Informer[T], want []string) string {
	got := snapshot(inf.Lister().List(nil))
	if slices.Equal(got, want) {
		return ""
	}
	return fmt.Sprintf("store %q, want %q", got, want)
}

func podsOf(l *corev1.PodList) []*corev1.Pod {
	out := make([]*corev1.Pod, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	return out
}

func newPod(name string, lbls map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}},
	}
}

// impersonateNobody is a user with no RBAC bindings.
func impersonateNobody() rest.ImpersonationConfig {
	return rest.ImpersonationConfig{UserName: "skiff-nobody"}
}
