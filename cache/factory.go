package cache

import (
	"context"
	"fmt"
	"reflect"
	"sync"
)

// Runner is an informer of any type, as a Factory holds it.
type Runner interface {
	Name() string
	Run(ctx context.Context) error
	WaitForSync(ctx context.Context) error
	HasSynced() bool
}

type runner = Runner

// Factory shares informers: one informer, and so one watch, per source ID
// (resource, object type, namespace, label and field selectors, projection)
// per Factory, however many controllers ask. Use one Factory per process.
// Its methods are safe for concurrent use.
type Factory struct {
	mu      sync.Mutex
	infs    map[string]runner
	order   []runner
	ctx     context.Context // set while Run runs
	wg      sync.WaitGroup
	started map[runner]bool
}

// NewFactory returns an empty factory. It starts nothing.
func NewFactory() *Factory {
	return &Factory{infs: map[string]runner{}, started: map[runner]bool{}}
}

// InformerFor returns the factory's informer for src, creating it with o if
// there is none yet. Options of later calls for the same source are ignored
// (the first caller's indexes, transform and name win); it panics if the
// existing informer holds a different type, which cannot happen for
// sources built by this package (their ID includes the type). An informer
// created while the factory runs starts at once.
func InformerFor[T Object](f *Factory, src Source[T], o Options[T]) *Informer[T] {
	id := src.ID()
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.infs[id]; ok {
		inf, ok := r.(*Informer[T])
		if !ok {
			panic(fmt.Sprintf("cache: factory informer %q holds %v, not %v", id, reflect.TypeOf(r), reflect.TypeFor[*Informer[T]]()))
		}
		return inf
	}
	inf := New(src, o)
	f.infs[id] = inf
	f.order = append(f.order, inf)
	if f.ctx != nil {
		f.startLocked(inf)
	}
	return inf
}

func (f *Factory) startLocked(r runner) {
	if f.started[r] {
		return
	}
	f.started[r] = true
	ctx := f.ctx
	f.wg.Go(func() { r.Run(ctx) })
}

// Run runs every informer of the factory, and those created while it runs,
// until ctx ends; then it waits for all of them and returns.
func (f *Factory) Run(ctx context.Context) {
	f.mu.Lock()
	f.ctx = ctx
	for _, r := range f.order {
		f.startLocked(r)
	}
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	f.ctx = nil // informers created from now on are not started
	f.mu.Unlock()
	f.wg.Wait()
}

// WaitForSync waits until every informer created so far has synced, or ctx
// ends (then it returns the first informer's error that says why).
func (f *Factory) WaitForSync(ctx context.Context) error {
	f.mu.Lock()
	rs := append([]runner(nil), f.order...)
	f.mu.Unlock()
	for _, r := range rs {
		if err := r.WaitForSync(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Informers returns the factory's informers, in creation order.
func (f *Factory) Informers() []Runner {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Runner(nil), f.order...)
}

// Has reports whether r is one of the factory's informers.
func (f *Factory) Has(r Runner) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, have := range f.order {
		if have == r {
			return true
		}
	}
	return false
}
