package cache

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
)

// leanProbeLW answers one list of pods and records whether each request
// was marked for lean decoding; its watch blocks until ctx ends.
type leanProbeLW struct {
	pods []corev1.Pod
	mu   sync.Mutex
	lean []bool
}

func (l *leanProbeLW) List(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
	l.mu.Lock()
	l.lean = append(l.lean, isLean(ctx))
	l.mu.Unlock()
	list := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "10"}}
	for _, p := range l.pods {
		list.Items = append(list.Items, *p.DeepCopy())
	}
	return list, nil
}

func (l *leanProbeLW) Watch(ctx context.Context, _ metav1.ListOptions) (watch.Interface, error) {
	w := watch.NewFake()
	go func() { <-ctx.Done(); w.Stop() }()
	return w, nil
}

func (l *leanProbeLW) marks() []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bool(nil), l.lean...)
}

func TestInformerLeanAndIntern(t *testing.T) {
	cases := []struct {
		name       string
		o          Options[*corev1.Pod]
		wantLean   bool
		wantShared bool
	}{
		{"defaults", Options[*corev1.Pod]{}, true, true},
		{"full decode", Options[*corev1.Pod]{FullDecode: true}, false, true},
		{"own transform", Options[*corev1.Pod]{Transform: KeepAll[*corev1.Pod]}, false, true},
		{"no intern", Options[*corev1.Pod]{NoIntern: true}, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lw := &leanProbeLW{pods: []corev1.Pod{*realisticPod(1), *realisticPod(1 + 97*7)}}
			for i := range lw.pods { // equal labels, separately allocated
				lw.pods[i].Labels = map[string]string{"app": "web", "tier": "front"}
			}
			o := c.o
			o.WatchList = WatchListOff
			inf := New(Source[*corev1.Pod]{LW: lw, Decode: Assert[*corev1.Pod], Resource: "pods"}, o)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { defer close(done); inf.Run(ctx) }()
			defer func() { cancel(); <-done }()
			sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
			defer scancel()
			if err := inf.WaitForSync(sctx); err != nil {
				t.Fatal(err)
			}
			if m := lw.marks(); len(m) == 0 || m[0] != c.wantLean {
				t.Errorf("list marked lean: %v, want %v", m, c.wantLean)
			}
			a, _ := inf.Lister().Get("shop", realisticPod(1).Name)
			b, _ := inf.Lister().Get("shop", realisticPod(1+97*7).Name)
			if a == nil || b == nil {
				t.Fatal("pods not cached")
			}
			shared := reflect.ValueOf(a.Labels).UnsafePointer() == reflect.ValueOf(b.Labels).UnsafePointer()
			if shared != c.wantShared {
				t.Errorf("equal label maps shared: %v, want %v", shared, c.wantShared)
			}
			_, hasLastApplied := a.Annotations[LastAppliedAnnotation]
			if c.o.Transform == nil && (hasLastApplied || a.ManagedFields != nil) {
				t.Error("default transform did not run")
			}
			if c.o.Transform != nil && !hasLastApplied {
				t.Error("KeepAll lost the last-applied annotation")
			}
		})
	}
}
