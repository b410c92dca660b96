package event

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

const (
	window   = 6 * time.Minute
	interval = 30 * time.Second
)

func occ(name, reason string, at time.Duration) occurrence {
	ref := corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}
	return occurrence{
		key: key{apiVersion: ref.APIVersion, kind: ref.Kind, namespace: ref.Namespace, name: name, uid: ref.UID, typ: Normal, reason: reason, action: "Act"},
		ref: ref,
		at:  t0.Add(at),
	}
}

// describe renders writes compactly: "create a n=1", "update a.1 n=5".
func describe(ws []write) []string {
	var out []string
	for _, w := range ws {
		if w.create() {
			out = append(out, fmt.Sprintf("create %s n=%d", w.ref.Name, w.count))
		} else {
			out = append(out, fmt.Sprintf("update %s n=%d", w.name, w.count))
		}
	}
	return out
}

// step is one input to the tracker and the writes it must produce. Every
// write succeeds unless fail is set (then every write of the step fails,
// gone says whether with NotFound).
type step struct {
	observe *occurrence   // or, when nil, due at `at`
	at      time.Duration // for due
	want    []string
	fail    bool
	gone    bool
}

func obs(name string, at time.Duration, want ...string) step {
	o := occ(name, "R", at)
	return step{observe: &o, want: want}
}

func due(at time.Duration, want ...string) step { return step{at: at, want: want} }

func runSteps(t *testing.T, tr *tracker, steps []step) {
	t.Helper()
	for i, s := range steps {
		var ws []write
		if s.observe != nil {
			ws = tr.observe(*s.observe)
		} else {
			ws = tr.due(t0.Add(s.at))
		}
		got := describe(ws)
		if fmt.Sprint(got) != fmt.Sprint(s.want) {
			t.Fatalf("step %d: writes %q, want %q", i, got, s.want)
		}
		for _, w := range ws {
			switch {
			case s.fail:
				tr.failed(w, s.gone)
			case w.create():
				tr.succeeded(w, w.ref.Name+".1")
			default:
				tr.succeeded(w, w.name)
			}
		}
	}
}

func TestTracker(t *testing.T) {
	tests := []struct {
		name  string
		max   int
		steps []step
	}{
		{"singleton", 10, []step{
			obs("a", 0, "create a n=1"),
			due(time.Hour),
		}},
		{"second occurrence starts the series at once, later ones wait for the interval", 10, []step{
			obs("a", 0, "create a n=1"),
			obs("a", time.Second, "update a.1 n=2"),
			obs("a", 2*time.Second),
			obs("a", 3*time.Second),
			due(30 * time.Second),
			due(31*time.Second, "update a.1 n=4"),
			due(62 * time.Second),                      // nothing new
			obs("a", 70*time.Second, "update a.1 n=5"), // interval since the last write: written at once
			obs("a", 71*time.Second),
			due(99 * time.Second),
			due(100*time.Second, "update a.1 n=6"),
		}},
		{"different keys are different events", 10, []step{
			obs("a", 0, "create a n=1"),
			obs("b", 0, "create b n=1"),
			obs("a", time.Second, "update a.1 n=2"),
			obs("b", time.Second, "update b.1 n=2"),
		}},
		{"a repeat after the window starts a new event", 10, []step{
			obs("a", 0, "create a n=1"),
			obs("a", window+time.Second, "create a n=1"),
		}},
		{"a repeat exactly at the window joins the series", 10, []step{
			obs("a", 0, "create a n=1"),
			obs("a", window, "update a.1 n=2"),
		}},
		{"a series ending with unwritten counts writes them before the new event", 10, []step{
			obs("a", 0, "create a n=1"),
			obs("a", time.Second, "update a.1 n=2"),
			obs("a", 2*time.Second),
			obs("a", 2*time.Second+window+time.Second, "update a.1 n=3", "create a n=1"),
		}},
		{"a quiet series is forgotten; a later occurrence creates", 10, []step{
			obs("a", 0, "create a n=1"),
			obs("a", time.Second, "update a.1 n=2"),
			due(time.Second + window + time.Second),
			obs("a", 2*window+time.Hour, "create a n=1"),
		}},
		{"full cache evicts the least recently seen, writing its count", 2, []step{
			obs("a", 0, "create a n=1"),
			obs("b", time.Second, "create b n=1"),
			obs("a", 2*time.Second, "update a.1 n=2"),
			obs("b", 3*time.Second, "update b.1 n=2"),
			obs("b", 4*time.Second),
			obs("a", 5*time.Second), // a is now the most recent; b is evicted next
			obs("c", 6*time.Second, "update b.1 n=3", "create c n=1"),
			obs("a", 7*time.Second),
			obs("d", 8*time.Second, "create d n=1"), // c (nothing unwritten) goes
		}},
		{"failed create is retried only on a new occurrence, at most once per interval, with the series", 10, []step{
			{observe: ptr(occ("a", "R", 0)), want: []string{"create a n=1"}, fail: true},
			due(time.Hour),
			{observe: ptr(occ("a", "R", time.Hour+time.Second)), want: []string{"create a n=1"}, fail: true},
			obs("a", time.Hour+2*time.Second),
			obs("a", time.Hour+3*time.Second),
			due(time.Hour+31*time.Second, "create a n=3"),
			obs("a", time.Hour+32*time.Second), // the series started with the create: no early write
			due(time.Hour+61*time.Second, "update a.1 n=4"),
		}},
		{"an update that finds the event gone recreates it with the series", 10, []step{
			obs("a", 0, "create a n=1"),
			{observe: ptr(occ("a", "R", time.Second)), want: []string{"update a.1 n=2"}, fail: true, gone: true},
			obs("a", 2*time.Second),
			due(31*time.Second, "create a n=3"),
		}},
		{"a failed update (not gone) waits for new occurrences", 10, []step{
			obs("a", 0, "create a n=1"),
			{observe: ptr(occ("a", "R", time.Second)), want: []string{"update a.1 n=2"}, fail: true},
			due(time.Minute),
			obs("a", 2*time.Minute, "update a.1 n=3"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runSteps(t, newTracker(window, interval, tt.max), tt.steps)
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestTrackerProperties feeds random occurrences and due calls, with random
// write failures, and checks the invariants: the cache never exceeds max;
// no series is written twice within the interval (except the create and the
// series start, and the last write of a series being evicted); every write's count is at most the occurrences of its key
// in the current series and never goes down for one Event; and after all
// occurrences stop and enough time passes, every surviving series has had its
// full count attempted.
func TestTrackerProperties(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 383))
	names := []string{"a", "b", "c", "d", "e"}
	for run := range 300 {
		max := 1 + rng.IntN(4)
		tr := newTracker(window, interval, max)
		now := time.Duration(0)
		lastWrite := map[*entry]time.Duration{}
		writesOf := map[*entry]int{}
		maxCount := map[string]int32{} // Event name -> highest count written
		seq := 0
		handle := func(ws []write) {
			for _, w := range ws {
				if w.count < 1 || w.count > w.e.count {
					t.Fatalf("run %d: write count %d outside [1, %d]", run, w.count, w.e.count)
				}
				final := tr.entries[w.key] != w.e // evicted or ended: its last write may come early
				if prev, ok := lastWrite[w.e]; ok && !final && writesOf[w.e] >= 2 && now-prev < interval {
					t.Fatalf("run %d: series %s written %v after its previous write", run, w.key.name, now-prev)
				}
				lastWrite[w.e] = now
				writesOf[w.e]++
				if rng.IntN(6) == 0 {
					tr.failed(w, rng.IntN(2) == 0)
					continue
				}
				name := w.name
				if w.create() {
					seq++
					name = fmt.Sprintf("%s.%d", w.key.name, seq)
				} else if w.count < maxCount[name] {
					t.Fatalf("run %d: %s count went down: %d after %d", run, name, w.count, maxCount[name])
				}
				maxCount[name] = w.count
				tr.succeeded(w, name)
			}
		}
		for range 60 {
			now += time.Duration(rng.IntN(int(2 * interval)))
			if rng.IntN(4) == 0 {
				handle(tr.due(t0.Add(now)))
			} else {
				handle(tr.observe(occ(names[rng.IntN(len(names))], "R", now)))
			}
			if tr.len() > max {
				t.Fatalf("run %d: %d series tracked, max %d", run, tr.len(), max)
			}
			if tr.len() != tr.lru.Len() {
				t.Fatalf("run %d: map has %d, list %d", run, tr.len(), tr.lru.Len())
			}
		}
		// Quiet: within one window every series with a count still unwritten is attempted.
		for range 4 {
			now += interval
			handle(tr.due(t0.Add(now)))
		}
		for _, e := range tr.entries {
			if e.count != e.attempted {
				t.Fatalf("run %d: series %s: count %d never attempted (last %d)", run, e.key.name, e.count, e.attempted)
			}
		}
		now += window + time.Second
		handle(tr.due(t0.Add(now)))
		if tr.len() != 0 {
			t.Fatalf("run %d: %d series left after a quiet window", run, tr.len())
		}
	}
}
