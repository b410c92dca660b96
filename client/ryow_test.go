package client

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/cache"
)

func TestDecide(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := written{rv: "20", at: t0}
	del := written{rv: "20", deleted: true, at: t0}
	odd := written{rv: "abc", at: t0}
	oddDel := written{rv: "abc", deleted: true, at: t0}
	const window = 10 * time.Second
	for _, tc := range []struct {
		name                 string
		w                    written
		cachedRV, informerRV string
		now                  time.Time
		want                 verdict
		forget               bool
	}{
		{"write: informer behind, cache absent", w, "", "15", t0, useWritten, false},
		{"write: informer behind, cache older", w, "10", "15", t0, useWritten, false},
		{"write: cache holds the write", w, "20", "15", t0, useCache, true},
		{"write: cache newer", w, "25", "19", t0, useCache, true},
		{"write: informer reached it", w, "20", "20", t0, useCache, true},
		{"write: informer past it, object gone", w, "", "30", t0, useCache, true},
		{"write: informer past it, string order would lie", written{rv: "9", at: t0}, "", "10", t0, useCache, true},
		{"write: 100 > 99 numerically", written{rv: "100", at: t0}, "99", "99", t0, useWritten, false},
		{"write: informer not synced", w, "", "", t0, useWritten, false},
		{"write: informer not synced, window over", w, "", "", t0.Add(window), useCache, true},
		{"delete: cached deleted version", del, "20", "25", t0, useAbsent, false},
		{"delete: cached older version", del, "10", "15", t0, useAbsent, false},
		{"delete: gone, informer past it", del, "", "30", t0, useAbsent, true},
		{"delete: gone, informer behind", del, "", "10", t0, useAbsent, false},
		{"delete: new incarnation", del, "31", "31", t0, useCache, true},
		{"uncomparable write: cache holds it", odd, "abc", "xyz", t0, useCache, true},
		{"uncomparable write: cache differs, in window", odd, "xyz", "xyz", t0.Add(time.Second), useWritten, false},
		{"uncomparable write: cache differs, window over", odd, "xyz", "xyz", t0.Add(window), useCache, true},
		{"uncomparable write: absent, window over", odd, "", "xyz", t0.Add(window), useCache, true},
		{"uncomparable delete: cached deleted version", oddDel, "abc", "xyz", t0.Add(window), useAbsent, false},
		{"uncomparable delete: other version, window over", oddDel, "def", "xyz", t0.Add(window), useCache, true},
		{"uncomparable delete: other version, in window", oddDel, "def", "xyz", t0, useAbsent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, forget := decide(tc.w, tc.cachedRV, tc.informerRV, tc.now, window)
			if v != tc.want || forget != tc.forget {
				t.Fatalf("decide = %v, forget %v; want %v, forget %v", v, forget, tc.want, tc.forget)
			}
		})
	}
}

// TestTrackerNeverServesOlderThanWritten is a property test: a simulated
// informer applies a random interleaving of our writes and other writers'
// changes, in server order; after each of our writes, every read through
// the tracker returns a version at least as new as the one written (or
// absent after our delete), and the tracker ends empty once the informer has
// caught up.
func TestTrackerNeverServesOlderThanWritten(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	typ := reflect.TypeFor[*corev1.ConfigMap]()
	for round := range 300 {
		now := time.Unix(0, 0)
		tr := newTracker(time.Hour, func() time.Time { return now })
		keys := []cache.ObjectKey{{Namespace: "a", Name: "x"}, {Namespace: "a", Name: "y"}}
		type state struct {
			rv      int // 0: absent
			ours    int // the last version we wrote (or deleted), 0 if none
			deleted bool
		}
		server := map[cache.ObjectKey]*state{}
		for _, k := range keys {
			server[k] = &state{}
		}
		var log []struct {
			key cache.ObjectKey
			rv  int
		}
		cached := map[cache.ObjectKey]int{}
		applied, rev := 0, 0
		for range 40 {
			k := keys[rng.IntN(len(keys))]
			s := server[k]
			switch rng.IntN(4) {
			case 0, 1: // we write
				rev++
				s.rv, s.ours, s.deleted = rev, rev, false
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name, ResourceVersion: strconv.Itoa(rev)}}
				tr.wrote(typ, k, cm, cm.ResourceVersion, false, nil)
				log = append(log, struct {
					key cache.ObjectKey
					rv  int
				}{k, rev})
			case 2: // we delete what exists
				if s.rv == 0 {
					continue
				}
				tr.wrote(typ, k, nil, strconv.Itoa(s.rv), true, nil)
				s.ours, s.deleted = s.rv, true
				rev++
				s.rv = 0
				log = append(log, struct {
					key cache.ObjectKey
					rv  int
				}{k, -rev})
			case 3: // the informer applies some events
				for n := rng.IntN(3); n > 0 && applied < len(log); n-- {
					e := log[applied]
					applied++
					if e.rv < 0 {
						delete(cached, e.key)
					} else {
						cached[e.key] = e.rv
					}
				}
			}
			informerRV := ""
			if applied > 0 {
				informerRV = strconv.Itoa(abs(log[applied-1].rv))
			}
			for _, k := range keys {
				s := server[k]
				crv := ""
				if v, ok := cached[k]; ok {
					crv = strconv.Itoa(v)
				}
				v, obj := tr.resolve(typ, k, crv, informerRV)
				got := 0 // the version the read returns; 0: absent
				switch v {
				case useWritten:
					got, _ = strconv.Atoi(obj.(*corev1.ConfigMap).ResourceVersion)
				case useCache:
					got = cached[k]
				}
				switch {
				case s.ours != 0 && s.deleted && got != 0 && got <= s.ours:
					t.Fatalf("round %d: %v read version %d after we deleted version %d", round, k, got, s.ours)
				case s.ours != 0 && !s.deleted && (got == 0 && s.rv != 0 || got != 0 && got < s.ours):
					t.Fatalf("round %d: %v read version %d (0 = absent) after we wrote %d", round, k, got, s.ours)
				}
			}
		}
		// Catch up: the tracker forgets everything on the next reads.
		for ; applied < len(log); applied++ {
			e := log[applied]
			if e.rv < 0 {
				delete(cached, e.key)
			} else {
				cached[e.key] = e.rv
			}
		}
		informerRV := strconv.Itoa(rev)
		for _, k := range keys {
			crv := ""
			if v, ok := cached[k]; ok {
				crv = strconv.Itoa(v)
			}
			tr.resolve(typ, k, crv, informerRV)
		}
		if n := tr.pending(); n != 0 {
			t.Fatalf("round %d: %d writes remembered after the informer caught up", round, n)
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func TestTrackerSweepsWritesTheInformerHasSeen(t *testing.T) {
	tr := newTracker(time.Hour, time.Now)
	typ := reflect.TypeFor[*corev1.ConfigMap]()
	informerRV := "0"
	for i := 1; i <= 2*sweepEvery; i++ {
		k := cache.ObjectKey{Namespace: "a", Name: fmt.Sprint("cm-", i)}
		tr.wrote(typ, k, &corev1.ConfigMap{}, strconv.Itoa(i), false, func(reflect.Type) string { return informerRV })
		if i == sweepEvery {
			informerRV = strconv.Itoa(sweepEvery) // the informer caught up with the first batch
		}
	}
	// The sweep at 2·sweepEvery forgot the first batch, which the informer saw.
	if got := tr.pending(); got != sweepEvery {
		t.Fatalf("pending after sweep = %d, want %d", got, sweepEvery)
	}
}

func TestIsOwnWriteRemembersRecentVersions(t *testing.T) {
	tr := newTracker(time.Hour, time.Now)
	typ := reflect.TypeFor[*corev1.ConfigMap]()
	k := cache.ObjectKey{Namespace: "a", Name: "x"}
	tr.wrote(typ, k, &corev1.ConfigMap{}, "5", false, nil)
	if !tr.isOwn(typ, k, "5") || tr.isOwn(typ, k, "6") {
		t.Fatal("isOwn does not recognise exactly the written version")
	}
	for i := range ownSize {
		tr.wrote(typ, cache.ObjectKey{Name: fmt.Sprint(i)}, &corev1.ConfigMap{}, "7", false, nil)
	}
	if tr.isOwn(typ, k, "5") {
		t.Fatal("isOwn remembers more than ownSize writes")
	}
}

// TestIsOwnWaitsForAWriteInFlight: the watch event of a write can arrive
// before the write's response; isOwn asked meanwhile waits for the answer.
func TestIsOwnWaitsForAWriteInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := newTracker(time.Hour, time.Now)
		typ := reflect.TypeFor[*corev1.ConfigMap]()
		k := cache.ObjectKey{Namespace: "a", Name: "x"}
		tr.begin(typ, k)
		got := make(chan bool, 1)
		go func() { got <- tr.isOwn(typ, k, "9") }()
		synctest.Wait() // isOwn is waiting for the write
		select {
		case v := <-got:
			t.Fatalf("isOwn answered %v before the write in flight was recorded", v)
		default:
		}
		tr.wrote(typ, k, &corev1.ConfigMap{}, "9", false, nil)
		tr.end(typ, k)
		if !<-got {
			t.Fatal("isOwn did not recognise the write it waited for")
		}
		// A write that never ends: isOwn gives up after maxOwnWait.
		tr.begin(typ, k)
		start := time.Now()
		if tr.isOwn(typ, k, "10") {
			t.Fatal("isOwn recognised a version nobody wrote")
		}
		if waited := time.Since(start); waited != maxOwnWait {
			t.Fatalf("isOwn waited %v, want %v", waited, maxOwnWait)
		}
	})
}
