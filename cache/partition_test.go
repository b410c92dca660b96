package cache_test

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiffkit/skiff/cache"
)

// partLW is a scripted ListerWatcher: List answers the ConfigMaps in
// items, Watch hands out fake watches; both record the options they got.
type partLW struct {
	mu       sync.Mutex
	items    []string
	lists    []metav1.ListOptions
	watchOpt []metav1.ListOptions
	watches  []*watch.FakeWatcher
}

func (l *partLW) List(_ context.Context, o metav1.ListOptions) (runtime.Object, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lists = append(l.lists, o)
	list := &corev1.ConfigMapList{ListMeta: metav1.ListMeta{ResourceVersion: "10"}}
	for _, n := range l.items {
		list.Items = append(list.Items, corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: n}})
	}
	return list, nil
}

func (l *partLW) Watch(_ context.Context, o metav1.ListOptions) (watch.Interface, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watchOpt = append(l.watchOpt, o)
	w := watch.NewFakeWithChanSize(8, false)
	l.watches = append(l.watches, w)
	return w, nil
}

func cm(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
}

func names(t *testing.T, obj runtime.Object) []string {
	t.Helper()
	var out []string
	for _, it := range obj.(*corev1.ConfigMapList).Items {
		out = append(out, it.Name)
	}
	return out
}

func recv(t *testing.T, w watch.Interface) (watch.Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		return ev, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
		return watch.Event{}, false
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A partition: lists wait for the first Set; Set's tweak reaches every
// request and its keep filters lists and watches (a MODIFIED object that
// left the part becomes a DELETED); Listed/Synced follow "the store holds
// a list of the latest Set"; a later Set ends the open watch with 410 and
// refuses a watch resuming from the old list.
func TestPartition(t *testing.T) {
	inner := &partLW{items: []string{"a", "b", "drop"}}
	p := cache.NewPartition()
	src := cache.PartitionSource(cache.Source[*corev1.ConfigMap]{LW: inner, Resource: "configmaps"}, p)
	lw := src.LW

	// Before the first Set a list waits (here: until its context ends).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := lw.List(ctx, metav1.ListOptions{}); err == nil {
		t.Fatal("List before the first Set did not wait")
	}
	if p.Synced() {
		t.Fatal("Synced before any Set")
	}

	selector := func(s string) func(*metav1.ListOptions) {
		return func(o *metav1.ListOptions) { o.LabelSelector = s }
	}
	p.Set(selector("part=1"), func(o metav1.Object) bool { return o.GetName() != "drop" })
	listed := p.Listed()
	got, err := lw.List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := names(t, got); len(n) != 2 || n[0] != "a" || n[1] != "b" {
		t.Fatalf("list kept %v, want [a b]", n)
	}
	if inner.lists[0].LabelSelector != "part=1" {
		t.Fatalf("list options %+v: the tweak was not applied", inner.lists[0])
	}
	if p.Synced() || isClosed(listed) {
		t.Fatal("synced before the watch that follows the stored list")
	}
	w, err := lw.Watch(context.Background(), metav1.ListOptions{ResourceVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Synced() || !isClosed(listed) {
		t.Fatal("not synced after list and watch")
	}
	if inner.watchOpt[0].LabelSelector != "part=1" {
		t.Fatalf("watch options %+v: the tweak was not applied", inner.watchOpt[0])
	}

	// Keep filters the watch.
	fw := inner.watches[0]
	fw.Add(cm("drop"))    // not in the part: skipped
	fw.Add(cm("c"))       // in the part
	fw.Modify(cm("drop")) // a known object leaving the part: a delete
	if ev, _ := recv(t, w); ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "c" {
		t.Fatalf("first event %v %v, want ADDED c (ADDED drop filtered)", ev.Type, ev.Object)
	}
	if ev, _ := recv(t, w); ev.Type != watch.Deleted || ev.Object.(*corev1.ConfigMap).Name != "drop" {
		t.Fatalf("second event %v %v, want DELETED drop", ev.Type, ev.Object)
	}

	// Set ends the watch with 410 Expired and the stream closes.
	p.Set(selector("part=2"), nil)
	if p.Synced() {
		t.Fatal("synced right after a new Set")
	}
	listed = p.Listed()
	ev, _ := recv(t, w)
	if st, ok := ev.Object.(*metav1.Status); ev.Type != watch.Error || !ok || st.Code != 410 {
		t.Fatalf("after Set: %v %v, want an ERROR event with 410", ev.Type, ev.Object)
	}
	if _, ok := recv(t, w); ok {
		t.Fatal("the watch did not close after the 410")
	}
	if !fw.IsStopped() {
		t.Fatal("the inner watch was not stopped")
	}
	// A watch resuming from the old list is refused: relist first.
	if _, err := lw.Watch(context.Background(), metav1.ListOptions{ResourceVersion: "11"}); !apierrors.IsResourceExpired(err) {
		t.Fatalf("watch after Set without a relist: %v, want ResourceExpired", err)
	}
	got, err = lw.List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := names(t, got); len(n) != 3 {
		t.Fatalf("list with keep nil kept %v, want all three", n)
	}
	if inner.lists[1].LabelSelector != "part=2" {
		t.Fatalf("relist options %+v, want the new tweak", inner.lists[1])
	}
	if isClosed(listed) {
		t.Fatal("listed before the relist's watch")
	}
	w2, err := lw.Watch(context.Background(), metav1.ListOptions{ResourceVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	if !p.Synced() || !isClosed(listed) {
		t.Fatal("not synced after relist and watch")
	}
	// Keep nil: a MODIFIED passes as is.
	inner.watches[1].Modify(cm("drop"))
	if ev, _ := recv(t, w2); ev.Type != watch.Modified {
		t.Fatalf("with keep nil: %v, want MODIFIED", ev.Type)
	}
}

// A partition refuses streaming watch-lists (the reflector then lists in
// pages).
func TestPartitionRefusesWatchList(t *testing.T) {
	p := cache.NewPartition()
	p.Set(nil, nil)
	lw := cache.PartitionSource(cache.Source[*corev1.ConfigMap]{LW: &partLW{}, Resource: "configmaps"}, p).LW
	yes := true
	if _, err := lw.Watch(context.Background(), metav1.ListOptions{SendInitialEvents: &yes}); !apierrors.IsBadRequest(err) {
		t.Fatalf("watch-list through a partition: %v, want BadRequest", err)
	}
}
