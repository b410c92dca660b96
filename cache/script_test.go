package cache_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiffkit/skiff/cache"
)

// script is a ListerWatcher that answers from a script and records every
// call as one line, for golden comparisons. An unscripted call blocks until
// its ctx ends, so under synctest the informer simply waits for the test.
type script struct {
	mu      sync.Mutex
	calls   []string
	times   []time.Time // when each call was made
	answers []answer
	more    chan struct{} // closed and replaced when answers are added
}

type answer struct {
	list  runtime.Object
	watch *watch.FakeWatcher
	err   error
	kind  string // "list" or "watch"
}

func newScript() *script { return &script{more: make(chan struct{})} }

func (s *script) push(a answer) {
	s.mu.Lock()
	s.answers = append(s.answers, a)
	close(s.more)
	s.more = make(chan struct{})
	s.mu.Unlock()
}

func (s *script) list(l runtime.Object) { s.push(answer{kind: "list", list: l}) }
func (s *script) listErr(err error)     { s.push(answer{kind: "list", err: err}) }
func (s *script) watchErr(err error)    { s.push(answer{kind: "watch", err: err}) }
func (s *script) watcher() *watch.FakeWatcher {
	w := watch.NewFake()
	s.push(answer{kind: "watch", watch: w})
	return w
}

func (s *script) next(ctx context.Context, kind string, opts metav1.ListOptions) (answer, error) {
	s.mu.Lock()
	s.calls = append(s.calls, describe(kind, opts))
	s.times = append(s.times, time.Now())
	for {
		if len(s.answers) > 0 {
			a := s.answers[0]
			if a.kind != kind {
				s.mu.Unlock()
				panic(fmt.Sprintf("script: got a %s call, next answer is for %s", kind, a.kind))
			}
			s.answers = s.answers[1:]
			s.mu.Unlock()
			return a, a.err
		}
		more := s.more
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return answer{}, ctx.Err()
		case <-more:
		}
		s.mu.Lock()
	}
}

func (s *script) List(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	a, err := s.next(ctx, "list", opts)
	return a.list, err
}

func (s *script) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	a, err := s.next(ctx, "watch", opts)
	if err != nil {
		return nil, err
	}
	return a.watch, nil
}

// takeCalls returns and forgets the recorded calls.
func (s *script) takeCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

func describe(kind string, o metav1.ListOptions) string {
	var b strings.Builder
	b.WriteString(kind)
	fmt.Fprintf(&b, " rv=%q", o.ResourceVersion)
	if o.ResourceVersionMatch != "" {
		fmt.Fprintf(&b, " match=%s", o.ResourceVersionMatch)
	}
	if o.SendInitialEvents != nil && *o.SendInitialEvents {
		b.WriteString(" sendInitialEvents")
	}
	if o.AllowWatchBookmarks {
		b.WriteString(" bookmarks")
	}
	if o.Limit != 0 {
		fmt.Fprintf(&b, " limit=%d", o.Limit)
	}
	if o.Continue != "" {
		fmt.Fprintf(&b, " continue=%s", o.Continue)
	}
	if o.LabelSelector != "" {
		fmt.Fprintf(&b, " labels=%s", o.LabelSelector)
	}
	if o.TimeoutSeconds != nil {
		if *o.TimeoutSeconds < 300 || *o.TimeoutSeconds >= 600 {
			fmt.Fprintf(&b, " timeout-out-of-range=%d", *o.TimeoutSeconds)
		} else {
			b.WriteString(" timeout")
		}
	}
	return b.String()
}

func podList(rv, cont string, pods ...*corev1.Pod) *corev1.PodList {
	l := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: rv, Continue: cont}}
	for _, p := range pods {
		l.Items = append(l.Items, *p)
	}
	return l
}

func bookmark(rv string, initialEnd bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv}}
	if initialEnd {
		p.Annotations = map[string]string{metav1.InitialEventsAnnotationKey: "true"}
	}
	return p
}

func gone() error {
	return apierrors.NewResourceExpired("too old resource version: 1 (50)")
}

func watchListUnsupported() error {
	return apierrors.NewInvalid(schema.GroupKind{Kind: "ListOptions"}, "", nil)
}

// recorder is an event handler that writes one line per callback.
type recorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorder) handler() cache.EventHandler[*corev1.Pod] {
	add := func(s string) { r.mu.Lock(); r.lines = append(r.lines, s); r.mu.Unlock() }
	return cache.EventHandler[*corev1.Pod]{
		OnAdd: func(p *corev1.Pod) { add("add " + cache.KeyOf(p).String() + "@" + p.ResourceVersion) },
		OnUpdate: func(o, n *corev1.Pod) {
			add("update " + cache.KeyOf(n).String() + "@" + o.ResourceVersion + "->" + n.ResourceVersion)
		},
		OnDelete: func(o *corev1.Pod) { add("delete " + cache.KeyOf(o).String() + "@" + o.ResourceVersion) },
	}
}

// take returns the lines so far, sorted, and forgets them.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.lines
	r.lines = nil
	sort.Strings(l)
	return l
}

func podSource(lw cache.ListerWatcher) cache.Source[*corev1.Pod] {
	return cache.Source[*corev1.Pod]{LW: lw, Decode: cache.Assert[*corev1.Pod], Resource: "pods"}
}

// run starts inf.Run and returns a func that stops it and waits for Run to
// return.
func run[T cache.Object](t *testing.T, inf *cache.Informer[T]) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- inf.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func (s *script) resetTimes() {
	s.mu.Lock()
	s.times = nil
	s.mu.Unlock()
}

// gaps returns the time between consecutive calls.
func (s *script) gaps() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(s.times); i++ {
		out = append(out, s.times[i].Sub(s.times[i-1]))
	}
	return out
}
