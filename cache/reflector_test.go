package cache_test

import (
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/cache"
)

func wantCalls(t *testing.T, s *script, want ...string) {
	t.Helper()
	if got := s.takeCalls(); !slices.Equal(got, want) {
		t.Fatalf("calls:\n got  %q\n want %q", got, want)
	}
}

func wantLines(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := r.take(); !slices.Equal(got, want) {
		t.Fatalf("handler saw:\n got  %q\n want %q", got, want)
	}
}

func wantStore(t *testing.T, inf *cache.Informer[*corev1.Pod], want ...string) {
	t.Helper()
	var got []string
	for _, p := range inf.Lister().List(nil) {
		got = append(got, cache.KeyOf(p).String()+"@"+p.ResourceVersion)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("store:\n got  %q\n want %q", got, want)
	}
}

// The streaming list is invisible until its end bookmark, then swapped in
// at once; the same stream then carries ordinary events.
func TestWatchListEndMarker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		w := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{})
		rec := &recorder{}
		reg := inf.AddEventHandler(rec.handler(), cache.EventHandlerOptions{})
		defer run(t, inf)()

		w.Add(pod("a", "x", "3"))
		w.Add(pod("a", "y", "4"))
		synctest.Wait()
		if inf.HasSynced() || inf.Lister().List(nil) != nil && len(inf.Lister().List(nil)) != 0 {
			t.Fatal("objects or sync visible before the initial-events-end bookmark")
		}
		w.Action("BOOKMARK", bookmark("5", false)) // an ordinary bookmark does not end the list
		synctest.Wait()
		if inf.HasSynced() {
			t.Fatal("synced on a bookmark without the initial-events-end annotation")
		}
		w.Action("BOOKMARK", bookmark("6", true))
		synctest.Wait()
		if !inf.HasSynced() || !reg.HasSynced() {
			t.Fatalf("not synced after the end bookmark: informer %v handler %v", inf.HasSynced(), reg.HasSynced())
		}
		wantStore(t, inf, "a/x@3", "a/y@4")
		wantLines(t, rec, "add a/x@3", "add a/y@4")
		if rv := inf.Stats().ResourceVersion; rv != "6" {
			t.Fatalf("resourceVersion %q, want the bookmark's 6", rv)
		}
		w.Modify(pod("a", "x", "7"))
		synctest.Wait()
		wantLines(t, rec, "update a/x@3->7")
		wantCalls(t, s, `watch rv="" match=NotOlderThan sendInitialEvents bookmarks timeout`)
	})
}

// A server that rejects watch-list gets paginated lists (for good), then a
// watch from the list's resourceVersion; a disconnect resumes from the last
// resourceVersion seen (a bookmark's included) without relisting.
func TestPaginatedListThenResumeAfterDisconnect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		s.watchErr(watchListUnsupported())
		s.list(podList("10", "c1", pod("a", "p1", "1"), pod("a", "p2", "2")))
		s.list(podList("10", "", pod("b", "p3", "3")))
		w1 := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{PageSize: 2})
		defer run(t, inf)()
		synctest.Wait()
		if !inf.HasSynced() {
			t.Fatal("not synced after the last page")
		}
		wantStore(t, inf, "a/p1@1", "a/p2@2", "b/p3@3")
		w1.Modify(pod("a", "p1", "11"))
		w1.Action("BOOKMARK", bookmark("15", false))
		w1.Stop() // the connection drops
		w2 := s.watcher()
		synctest.Wait()
		w2.Delete(pod("a", "p2", "16"))
		synctest.Wait()
		wantStore(t, inf, "a/p1@11", "b/p3@3")
		w2.Stop()
		s.watcher()
		synctest.Wait()
		wantCalls(t, s,
			`watch rv="" match=NotOlderThan sendInitialEvents bookmarks timeout`,
			`list rv="" limit=2`,
			`list rv="" limit=2 continue=c1`,
			`watch rv="10" bookmarks timeout`,
			`watch rv="15" bookmarks timeout`,
			`watch rv="16" bookmarks timeout`,
		)
		if st := inf.Stats(); st.Relists != 1 || st.WatchRestarts != 2 || st.Events != 2 {
			t.Fatalf("stats %+v, want 1 relist, 2 watch restarts, 2 events", st)
		}
	})
}

// 410 Gone on a watch makes a relist, which reports only real changes:
// a vanished object is deleted, a changed one updated, an unchanged one
// left alone (same pointer).
func TestGoneRelistsAndDiffs(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"expired", gone()},
		{"gone", apierrors.NewGone("gone")},
		{"too large resource version", apierrors.NewTimeoutError("Too large resource version", 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newScript()
				s.watchErr(watchListUnsupported())
				s.list(podList("10", "", pod("a", "same", "1"), pod("a", "changed", "2"), pod("a", "vanished", "3")))
				w := s.watcher()
				inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{})
				rec := &recorder{}
				inf.AddEventHandler(rec.handler(), cache.EventHandlerOptions{})
				defer run(t, inf)()
				synctest.Wait()
				rec.take()
				same, _ := inf.Lister().Get("a", "same")
				if tc.name == "too large resource version" {
					st := apierrors.NewTimeoutError("Too large resource version", 1)
					st.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: metav1.CauseTypeResourceVersionTooLarge}}
					w.Error(&st.ErrStatus)
				} else {
					var se apierrors.APIStatus
					errors.As(tc.err, &se)
					st := se.Status()
					w.Error(&st)
				}
				s.list(podList("20", "", pod("a", "same", "1"), pod("a", "changed", "12"), pod("a", "new", "13")))
				s.watcher()
				synctest.Wait()
				wantLines(t, rec, "add a/new@13", "delete a/vanished@3", "update a/changed@2->12")
				wantStore(t, inf, "a/same@1", "a/changed@12", "a/new@13")
				if now, _ := inf.Lister().Get("a", "same"); now != same {
					t.Error("an unchanged object was replaced by the relist")
				}
				wantCalls(t, s,
					`watch rv="" match=NotOlderThan sendInitialEvents bookmarks timeout`,
					`list rv="" limit=500`,
					`watch rv="10" bookmarks timeout`,
					`list rv="" limit=500`,
					`watch rv="20" bookmarks timeout`,
				)
				if st := inf.Stats(); st.Relists != 2 || st.Errors != 0 {
					t.Fatalf("stats %+v, want 2 relists and no errors", st)
				}
			})
		})
	}
}

// A watch-list that ends before its end marker is retried from scratch and
// leaves the store untouched; a relist by watch-list diffs like a list.
func TestWatchListInterruptedAndRelist(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		w := s.watcher()
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{})
		rec := &recorder{}
		inf.AddEventHandler(rec.handler(), cache.EventHandlerOptions{})
		defer run(t, inf)()
		w.Add(pod("a", "x", "1"))
		w.Stop()
		synctest.Wait()
		if inf.HasSynced() || inf.Store().Len() != 0 {
			t.Fatal("a partial watch-list reached the store")
		}
		w = s.watcher()
		synctest.Wait() // the retry waits out a backoff first
		w.Add(pod("a", "x", "1"))
		w.Add(pod("a", "y", "2"))
		w.Action("BOOKMARK", bookmark("5", true))
		synctest.Wait()
		wantLines(t, rec, "add a/x@1", "add a/y@2")
		st := apierrors.NewResourceExpired("gone").ErrStatus
		w.Error(&st)
		w = s.watcher()
		w.Add(pod("a", "x", "1"))
		w.Add(pod("a", "z", "9"))
		w.Action("BOOKMARK", bookmark("10", true))
		synctest.Wait()
		wantLines(t, rec, "add a/z@9", "delete a/y@2")
		wantStore(t, inf, "a/x@1", "a/z@9")
		initial := `watch rv="" match=NotOlderThan sendInitialEvents bookmarks timeout`
		wantCalls(t, s, initial, initial, initial)
	})
}

// Errors back off exponentially with jitter (each delay in [d, 2d), capped),
// are reported through OnError and LastError, and the backoff starts over
// after a healthy period.
func TestBackoffGrowsAndResets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScript()
		s.watchErr(watchListUnsupported())
		var errs []error
		inf := cache.New(podSource(s), cache.Options[*corev1.Pod]{
			InitialBackoff: time.Second, MaxBackoff: 8 * time.Second, BackoffReset: time.Minute,
			OnError: func(err error) { errs = append(errs, err) },
		})
		defer run(t, inf)()
		boom := apierrors.NewInternalError(errors.New("boom"))
		synctest.Wait()
		s.takeCalls() // the rejected watch-list
		for range 6 {
			s.listErr(boom)
		}
		s.list(podList("10", ""))
		time.Sleep(time.Hour) // lets fake time run through every backoff
		synctest.Wait()
		gaps := s.gaps() // watch-list, 7 lists and a watch: 8 gaps, the first and last 0
		if len(gaps) != 8 || gaps[0] != 0 || gaps[7] != 0 {
			t.Fatalf("gaps between calls %v", gaps)
		}
		gaps = gaps[1:7]
		bounds := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 8 * time.Second, 8 * time.Second}
		for i, g := range gaps {
			if g < bounds[i] || g >= 2*bounds[i] {
				t.Errorf("backoff %d = %v, want in [%v, %v)", i, g, bounds[i], 2*bounds[i])
			}
		}
		if len(errs) != 6 || !apierrors.IsInternalError(errs[0]) {
			t.Fatalf("OnError got %d errors, first %v", len(errs), errs)
		}
		if err := inf.LastError(); !apierrors.IsInternalError(err) {
			t.Fatalf("LastError = %v", err)
		}
		// Healthy for two minutes, then the watch fails: back to 1 s.
		w := s.watcher()
		synctest.Wait()
		time.Sleep(2 * time.Minute)
		s.resetTimes()
		w.Stop()
		s.watchErr(boom)
		s.watcher()
		time.Sleep(time.Hour)
		synctest.Wait()
		if g := s.gaps(); len(g) != 1 || g[0] < time.Second || g[0] >= 2*time.Second {
			t.Fatalf("gap after a healthy period %v, want one in [1s, 2s)", g)
		}
	})
}
