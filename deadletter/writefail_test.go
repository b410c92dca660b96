package deadletter_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/testenv"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A key replayed straight through the queue stays replayed when the
// write that deletes its entry fails: the next pass deletes it again; it
// does not load the entry back as a dead letter.
func TestReplayHereSurvivesAFailedDelete(t *testing.T) {
	var failWrites atomic.Bool
	cfg := env.Config()
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if failWrites.Load() && r.Method != http.MethodGet && strings.Contains(r.URL.Path, "/configmaps") {
				return nil, errors.New("test: writes fail")
			}
			return rt.RoundTrip(r)
		})
	})
	cs := kubernetes.NewForConfigOrDie(rest.CopyConfig(env.Config()))
	ns := testenv.Namespace(t, env.Config())
	const ctrl = "write-fails"
	key := controller.Request{Namespace: ns, Name: "k"}
	f := &flaky{fail: &atomic.Bool{}, counts: map[string]int{}}
	f.fail.Store(true)
	r := startReplica(t, cfg, ns, ctrl, "only", f.forReplica("only"), nil, nil, nil)
	r.c.Queue().Add(key)
	testenv.Eventually(t, 30*time.Second, "dead letter persisted and held", func() (bool, error) {
		_, stored := storedEntry(t, cs, ns, ctrl, key.String())
		d, ok := r.info(key.String())
		return stored && ok && d.Here && d.Persisted, nil
	})

	failWrites.Store(true)
	f.fail.Store(false)
	if !r.c.Queue().Replay(key) { // straight through the queue, not Syncer.Replay
		t.Fatal("Replay = false")
	}
	testenv.Eventually(t, 30*time.Second, "the replayed key reconciled and the entry's delete failed", func() (bool, error) {
		v := r.scrape(t, `skiff_deadletter_write_errors_total{controller="write-fails"}`)
		if n := f.count("only", key); n != 3 || v == "" || v == "0" {
			return false, fmt.Errorf("%d reconciles, write errors %q", n, v)
		}
		return true, nil
	})
	failWrites.Store(false)
	// The next pass (at the latest the 10 s resync) deletes the entry.
	testenv.Eventually(t, 30*time.Second, "entry deleted, key not dead", func() (bool, error) {
		_, stored := storedEntry(t, cs, ns, ctrl, key.String())
		d, ok := r.info(key.String())
		if ok && d.Here {
			return false, errors.New("the replayed key is dead again")
		}
		return !stored, nil
	})
	if got := f.count("only", key); got != 3 {
		t.Fatalf("%d reconciles, want 3 (2 failures, then the replay)", got)
	}
}
