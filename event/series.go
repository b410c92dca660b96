package event

import (
	"container/list"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// key identifies a series: occurrences with equal keys within the window are
// one Event object. The regarding object's resourceVersion is not part of it
// (it changes on every write of the object).
type key struct {
	apiVersion, kind, namespace, name string
	uid                               types.UID
	typ                               Type
	reason, action, note              string
}

// occurrence is one call to Recorder.Event, as it travels through the buffer.
type occurrence struct {
	key key
	ref corev1.ObjectReference
	at  time.Time
}

// entry is the tracker's state for one series.
//
// Invariants: attempted <= count; name is "" until a create succeeded (and
// again after the Event was found gone); every write attempt sets lastAttempt.
type entry struct {
	key       key
	ref       corev1.ObjectReference
	namespace string // of the Event object (the regarding object's, or "default")
	name      string // of the Event object once created
	first     time.Time
	last      time.Time // last occurrence
	count     int32     // occurrences seen
	// attempted is count as of the last write attempt, successful or not:
	// a series is written again only after new occurrences, so a failing
	// write is retried only while the series keeps happening, at most once
	// per interval.
	attempted   int32
	lastAttempt time.Time
	elem        *list.Element
}

// write is what the driver must send: a create when name is "", else a
// series update. Fields are a snapshot taken when the write was decided.
type write struct {
	e         *entry
	ref       corev1.ObjectReference
	key       key
	namespace string
	name      string
	first     time.Time
	count     int32
	last      time.Time
}

func (w write) create() bool { return w.name == "" }

// tracker is the pure core of the recorder: it decides, from occurrences and
// the passage of time, which API writes to make. It does no I/O, starts no
// goroutine and reads no clock; it is not safe for concurrent use (the
// recorder's Run goroutine owns it).
//
// Rules (after KEP 383, "new event API"):
//   - the first occurrence of a key creates an Event with no series;
//   - the second, within window of the first, writes series.count=2 at once
//     (the start of a series);
//   - later occurrences only count; the count and lastObservedTime are written
//     when at least interval has passed since the previous write attempt;
//   - an occurrence more than window after the previous one of its key starts
//     a new Event (after writing any count not yet written);
//   - a series quiet for longer than window, with nothing left to write, is
//     forgotten;
//   - at most max series are kept; a new key when full evicts the least
//     recently observed one (writing its unwritten count first).
type tracker struct {
	window, interval time.Duration
	max              int
	entries          map[key]*entry
	lru              list.List // of *entry; front = most recently observed
}

func newTracker(window, interval time.Duration, max int) *tracker {
	return &tracker{window: window, interval: interval, max: max, entries: make(map[key]*entry)}
}

// observe records one occurrence and returns the writes it makes due now.
func (t *tracker) observe(o occurrence) []write {
	var out []write
	if e, ok := t.entries[o.key]; ok {
		if o.at.Sub(e.last) <= t.window {
			if e.count < math.MaxInt32 {
				e.count++
			}
			if o.at.After(e.last) {
				e.last = o.at
			}
			t.lru.MoveToFront(e.elem)
			startsSeries := e.name != "" && e.attempted == 1 && e.count == 2
			if startsSeries || t.dueAt(e, o.at) {
				out = append(out, t.attempt(e, o.at))
			}
			return out
		}
		out = t.finish(out, e, o.at)
	}
	if len(t.entries) >= t.max {
		out = t.finish(out, t.lru.Back().Value.(*entry), o.at)
	}
	e := &entry{key: o.key, ref: o.ref, namespace: eventNamespace(o.ref), first: o.at, last: o.at, count: 1}
	e.elem = t.lru.PushFront(e)
	t.entries[o.key] = e
	return append(out, t.attempt(e, o.at))
}

// due returns the writes that have become due by now and forgets series that
// are over, oldest observed first.
func (t *tracker) due(now time.Time) []write {
	var out []write
	for el := t.lru.Back(); el != nil; {
		e := el.Value.(*entry)
		el = el.Prev()
		switch {
		case t.dueAt(e, now):
			out = append(out, t.attempt(e, now))
		case now.Sub(e.last) > t.window:
			t.remove(e)
		}
	}
	return out
}

// dueAt reports whether e has occurrences not yet attempted and its last
// attempt is at least interval old.
func (t *tracker) dueAt(e *entry, now time.Time) bool {
	return e.count > e.attempted && now.Sub(e.lastAttempt) >= t.interval
}

func (t *tracker) attempt(e *entry, now time.Time) write {
	e.attempted = e.count
	e.lastAttempt = now
	return write{e: e, ref: e.ref, key: e.key, namespace: e.namespace, name: e.name, first: e.first, count: e.count, last: e.last}
}

// finish forgets e, appending a last write if it has unwritten occurrences
// and an Event to write them to. (A series whose create never succeeded has
// nothing to update; its next occurrence creates afresh.)
func (t *tracker) finish(out []write, e *entry, now time.Time) []write {
	if e.count > e.attempted && e.name != "" {
		out = append(out, t.attempt(e, now))
	}
	t.remove(e)
	return out
}

func (t *tracker) remove(e *entry) {
	if t.entries[e.key] == e {
		delete(t.entries, e.key)
		t.lru.Remove(e.elem)
	}
}

// succeeded tells the tracker that w was written; name is the Event's name
// (from the create response, or w.name for an update).
func (t *tracker) succeeded(w write, name string) {
	if t.entries[w.key] == w.e {
		w.e.name = name
	}
}

// failed tells the tracker that w was not written. gone means the Event no
// longer exists (an update got NotFound): the next write creates a new one,
// carrying the series.
func (t *tracker) failed(w write, gone bool) {
	if gone && t.entries[w.key] == w.e {
		w.e.name = ""
	}
}

// len returns how many series are tracked.
func (t *tracker) len() int { return len(t.entries) }

// eventNamespace is where the Event about ref lives: the object's namespace,
// or "default" for a cluster-scoped object (the API server accepts "default"
// or "kube-system" there).
func eventNamespace(ref corev1.ObjectReference) string {
	if ref.Namespace == "" {
		return "default"
	}
	return ref.Namespace
}
