package manager_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeCache syncs when its synced channel is closed.
type fakeCache struct {
	synced  chan struct{}
	running atomic.Bool
	waiting atomic.Bool // someone called WaitForSync
	stopped atomic.Bool
}

func newFakeCache() *fakeCache { return &fakeCache{synced: make(chan struct{})} }

func (f *fakeCache) Run(ctx context.Context) error {
	f.running.Store(true)
	<-ctx.Done()
	f.stopped.Store(true)
	return nil
}

func (f *fakeCache) WaitForSync(ctx context.Context) error {
	f.waiting.Store(true)
	select {
	case <-f.synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("still listing: %w", ctx.Err())
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, timeout, what, func() (bool, error) { return cond(), nil })
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestSyncTimeoutNamesTheCache(t *testing.T) {
	m, err := manager.New(manager.Options{Addr: "-", SyncTimeout: 100 * time.Millisecond, Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	ok := newFakeCache()
	close(ok.synced)
	m.AddCache("configmaps", ok)
	m.AddCache("foos.example.com/v1", newFakeCache())
	err = m.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "foos.example.com/v1 did not sync") || !strings.Contains(err.Error(), "still listing") {
		t.Fatalf("Start = %v, want an error naming foos.example.com/v1 and its cause", err)
	}
	if !ok.stopped.Load() {
		t.Fatal("the synced cache was left running after the sync failure")
	}
}

func TestStartOrderEndpointsAndDeadLetterReplay(t *testing.T) {
	m, err := manager.New(manager.Options{Addr: "127.0.0.1:0", EnablePprof: true, EnableReplay: true, Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	metrics := m.Metrics().Controllers
	cache := newFakeCache()
	var reconciledBeforeSync atomic.Bool
	var healthy atomic.Bool
	c, err := controller.New[string](controller.ReconcileFunc[string](func(ctx context.Context, k string) (controller.Result, error) {
		select {
		case <-cache.synced:
		default:
			reconciledBeforeSync.Store(true)
		}
		if !healthy.Load() {
			return controller.Result{}, errors.New("downstream unavailable")
		}
		return controller.Result{}, nil
	}), controller.Options[string]{Name: "foo", MaxFailures: 2, Metrics: metrics, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	m.AddCache("foos", cache)
	if err := m.AddController(c); err != nil {
		t.Fatal(err)
	}
	if err := m.AddController(c); err == nil {
		t.Fatal("a second controller named foo was accepted")
	}
	c.Queue().Add("ns/a") // queued before start: must wait for the sync

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	waitFor(t, "server address", 5*time.Second, func() bool { return m.Addr() != "" })
	base := "http://" + m.Addr()
	if code, _ := get(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before sync = %d, want 503", code)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d, want 200", code)
	}
	// The manager is now blocked waiting for the cache: controllers must not run yet.
	waitFor(t, "the manager to wait for the cache", 5*time.Second, cache.waiting.Load)
	_, early := get(t, base+"/debug/skiff?format=json")
	if !strings.Contains(early, `"queueDepth":1,"queueDepthByPriority":{"0":1}`) {
		t.Fatalf("before sync the key waits at priority 0; /debug/skiff says %s", early)
	}
	close(cache.synced)
	waitFor(t, "ready", 5*time.Second, func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })
	waitFor(t, "dead letter", 5*time.Second, func() bool { return len(c.DeadLetterInfos()) == 1 })
	if reconciledBeforeSync.Load() {
		t.Fatal("a controller ran before caches synced")
	}

	_, body := get(t, base+"/debug/skiff?format=json")
	var st manager.DebugState
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/debug/skiff?format=json: %v: %s", err, body)
	}
	if !st.Ready || !st.Leader || len(st.Controllers) != 1 || len(st.Controllers[0].DeadLetters) != 1 ||
		st.Controllers[0].DeadLetters[0].Key != "ns/a" || st.Controllers[0].DeadLetters[0].LastError != "downstream unavailable" {
		t.Fatalf("debug state %+v", st)
	}
	if code, html := get(t, base+"/debug/skiff"); code != 200 || !strings.Contains(html, "ns/a") || !strings.Contains(html, "replay") {
		t.Fatalf("/debug/skiff HTML = %d %q", code, html)
	}
	_, metricsText := get(t, base+"/metrics")
	for _, want := range []string{`controller_runtime_reconcile_total{controller="foo",result="error"} 2`, "controller_runtime_reconcile_errors_total", "go_goroutines"} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 200 {
		t.Errorf("/debug/pprof/ = %d", code)
	}

	var tok struct {
		ReplayToken string `json:"replayToken"`
	}
	json.Unmarshal([]byte(body), &tok)
	healthy.Store(true)
	resp, err := http.PostForm(base+"/debug/skiff/replay?format=json", url.Values{"controller": {"foo"}, "key": {"ns/a"}, "csrf_token": {tok.ReplayToken}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"replayed":1`) {
		t.Fatalf("replay = %d %s", resp.StatusCode, b)
	}
	waitFor(t, "replayed key reconciled", 5*time.Second, func() bool { return c.Stats().Reconciles == 3 })
	if n := len(c.DeadLetterInfos()); n != 0 {
		t.Fatalf("%d dead letters after a successful replay", n)
	}
	resp, _ = http.PostForm(base+"/debug/skiff/replay", url.Values{"controller": {"nope"}, "all": {"true"}, "csrf_token": {tok.ReplayToken}})
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("replay for unknown controller = %d, want 404", resp.StatusCode)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start after cancel = %v", err)
	}
	if !cache.stopped.Load() {
		t.Fatal("cache still running after Start returned")
	}
	if m.Addr() != "" {
		if _, err := http.Get(base + "/healthz"); err == nil {
			t.Fatal("server still answering after Start returned")
		}
	}
}

func TestBadOptions(t *testing.T) {
	cases := []struct {
		o    manager.Options
		want string
	}{
		{manager.Options{SyncTimeout: -1}, "negative SyncTimeout"},
		{manager.Options{LeaderElection: &manager.LeaderElection{Namespace: "a", Name: "b"}}, "needs Options.Config"},
	}
	for _, tc := range cases {
		tc.o.KeepKlog = true
		if _, err := manager.New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
	m, err := manager.New(manager.Options{Addr: "256.0.0.1:99999", InsecureServing: true, Logger: quiet, KeepKlog: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "256.0.0.1:99999") {
		t.Fatalf("Start with a bad address = %v, want an error naming it", err)
	}
}
