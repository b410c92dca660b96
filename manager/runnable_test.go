package manager_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffkit/skiff/manager"
)

// orderLog records what happened, in order.
type orderLog struct {
	mu     sync.Mutex
	events []string
}

func (l *orderLog) add(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *orderLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.events, ",")
}

// runnableFunc adapts a func to manager.Runnable.
type runnableFunc func(ctx context.Context) error

func (f runnableFunc) Run(ctx context.Context) error { return f(ctx) }

// loggedCache is a cache that syncs when synced closes and logs its stop.
type loggedCache struct {
	*fakeCache
	log *orderLog
}

func (c loggedCache) Run(ctx context.Context) error {
	err := c.fakeCache.Run(ctx)
	c.log.add("cache stopped")
	return err
}

func TestRunnablesStartBeforeSyncAndStopAfterCaches(t *testing.T) {
	m, err := manager.New(manager.Options{Addr: "127.0.0.1:0", Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	var log orderLog
	cache := loggedCache{newFakeCache(), &log}
	var running atomic.Bool
	var healthy atomic.Bool
	if err := m.Add("webhooks", runnableFunc(func(ctx context.Context) error {
		running.Store(true)
		log.add("runnable started")
		<-ctx.Done()
		log.add("runnable stopped")
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	if err := m.Add("webhooks", runnableFunc(func(context.Context) error { return nil })); err == nil {
		t.Fatal("a second runnable named webhooks was accepted")
	}
	if err := m.AddHealthCheck("webhooks", func(*http.Request) error {
		if !healthy.Load() {
			return errors.New("not serving yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	m.AddCache("foos", cache)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	// The cache never syncs until we say so: the runnable must run anyway.
	waitFor(t, "the runnable to start before the cache syncs", 5*time.Second, running.Load)
	waitFor(t, "server address", 5*time.Second, func() bool { return m.Addr() != "" })
	base := "http://" + m.Addr()
	for _, path := range []string{"/healthz", "/readyz"} {
		code, body := get(t, base+path)
		if code != http.StatusInternalServerError || !strings.Contains(body, "webhooks: not serving yet") {
			t.Fatalf("%s with a failing check = %d %q, want 500 naming the check and its error", path, code, body)
		}
	}
	healthy.Store(true)
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz with a passing check = %d, want 200", code)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before the cache synced = %d, want 503", code)
	}
	close(cache.synced)
	waitFor(t, "ready", 5*time.Second, func() bool { code, _ := get(t, base+"/readyz"); return code == http.StatusOK })
	if err := m.Add("late", runnableFunc(func(context.Context) error { return nil })); err == nil {
		t.Fatal("Add after Start was accepted")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start = %v after a clean stop", err)
	}
	if got, want := log.String(), "runnable started,cache stopped,runnable stopped"; got != want {
		t.Fatalf("order = %s, want %s", got, want)
	}
}

func TestFailingRunnableFailsStart(t *testing.T) {
	for name, run := range map[string]runnableFunc{
		"error":        func(context.Context) error { return errors.New("listen tcp 127.0.0.1:9443: address already in use") },
		"early return": func(context.Context) error { return nil },
	} {
		t.Run(name, func(t *testing.T) {
			m, err := manager.New(manager.Options{Addr: "-", Logger: quiet, KeepKlog: true})
			if err != nil {
				t.Fatal(err)
			}
			cache := newFakeCache() // never syncs: the failure must end the wait
			m.AddCache("foos", cache)
			m.Add("webhooks", run)
			errc := make(chan error, 1)
			go func() { errc <- m.Start(context.Background()) }()
			select {
			case err := <-errc:
				if err == nil || !strings.Contains(err.Error(), "runnable webhooks") {
					t.Fatalf("Start = %v, want an error naming runnable webhooks", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Start did not return after its runnable failed")
			}
			if !cache.stopped.Load() {
				t.Fatal("the cache was left running")
			}
		})
	}
}
