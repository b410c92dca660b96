package cache_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/queue"
)

// waitSynced is r.WaitForSync with a deadline far beyond anything the
// informer does (synctest's clock reaches it only when every goroutine is
// blocked, i.e. when the wait would otherwise hang).
func waitSynced(t *testing.T, r *cache.Registration) error {
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	return r.WaitForSync(ctx)
}

// A registration whose handler can no longer sync says so: the informer's
// Run returned before its first list (handlers added before Run, and ones
// added after it returned), or the handler was removed first. Waiters get
// ErrHandlerStopped instead of hanging.
func TestRegistrationStoppedBeforeSync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		inf := cache.New(podSource(newScript()), cache.Options[*corev1.Pod]{}) // the first list never answers
		newQ := func() *queue.Queue[cache.ObjectKey] { return queue.New(queue.Options[cache.ObjectKey]{}) }
		regs := map[string]*cache.Registration{
			"event handler added before Run": inf.AddEventHandler((&recorder{}).handler(), cache.EventHandlerOptions{}),
			"key handler added before Run":   inf.AddKeyHandler(newQ(), cache.KeyHandlerOptions{}),
		}
		stop := run(t, inf)
		synctest.Wait()
		removedEvents := inf.AddEventHandler((&recorder{}).handler(), cache.EventHandlerOptions{})
		removedKeys := inf.AddKeyHandler(newQ(), cache.KeyHandlerOptions{})
		removedEvents.Remove()
		removedKeys.Remove()
		for name, r := range map[string]*cache.Registration{"removed event handler": removedEvents, "removed key handler": removedKeys} {
			if err := waitSynced(t, r); !errors.Is(err, cache.ErrHandlerStopped) {
				t.Errorf("%s (informer running): WaitForSync = %v, want ErrHandlerStopped", name, err)
			}
		}
		stop()
		if inf.HasSynced() {
			t.Fatal("the informer synced without a list")
		}
		regs["event handler added after Run returned"] = inf.AddEventHandler((&recorder{}).handler(), cache.EventHandlerOptions{})
		regs["key handler added after Run returned"] = inf.AddKeyHandler(newQ(), cache.KeyHandlerOptions{})
		for name, r := range regs {
			if err := waitSynced(t, r); !errors.Is(err, cache.ErrHandlerStopped) {
				t.Errorf("%s: WaitForSync = %v, want ErrHandlerStopped", name, err)
			}
			if r.HasSynced() {
				t.Errorf("%s: HasSynced true", name)
			}
		}
	})
}

// After the informer synced and its Run returned, handlers that synced
// stay synced; a late event handler is given nothing (no goroutine is left
// to deliver) and reports ErrHandlerStopped; a late key handler gets the
// cached keys at once and is synced.
func TestRegistrationAfterRunReturned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		w := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{})
		early := inf.AddEventHandler((&recorder{}).handler(), cache.EventHandlerOptions{})
		stop := run(t, inf)
		w.Add(pod("a", "x", "1"))
		w.Action("BOOKMARK", bookmark("2", true))
		if err := waitSynced(t, early); err != nil {
			t.Fatalf("handler added before Run: WaitForSync = %v", err)
		}
		stop()
		if err := waitSynced(t, early); err != nil || !early.HasSynced() {
			t.Fatalf("synced handler after Run returned: WaitForSync = %v, HasSynced %v", err, early.HasSynced())
		}
		rec := &recorder{}
		late := inf.AddEventHandler(rec.handler(), cache.EventHandlerOptions{})
		if err := waitSynced(t, late); !errors.Is(err, cache.ErrHandlerStopped) || late.HasSynced() {
			t.Fatalf("event handler added after Run returned: WaitForSync = %v, HasSynced %v", err, late.HasSynced())
		}
		synctest.Wait()
		if got := rec.take(); len(got) != 0 {
			t.Fatalf("event handler added after Run returned got %v", got)
		}
		q := queue.New(queue.Options[cache.ObjectKey]{})
		keys := inf.AddKeyHandler(q, cache.KeyHandlerOptions{})
		if err := waitSynced(t, keys); err != nil || !keys.HasSynced() {
			t.Fatalf("key handler added after Run returned: WaitForSync = %v, HasSynced %v", err, keys.HasSynced())
		}
		if got := drain(q); !slices.Equal(got, []string{"a/x"}) {
			t.Fatalf("key handler added after Run returned got %v", got)
		}
	})
}
