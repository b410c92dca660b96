package client

import (
	"reflect"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/resourceversion"

	"github.com/skiffkit/skiff/cache"
)

// tracker remembers this process's writes that its informers may not have
// seen yet, so cached reads can serve them (read-your-own-writes).
//
// For each written object (by Go type and key) it keeps the last write: the
// object as the server returned it and its resourceVersion, or a tombstone
// for a delete (with the last resourceVersion we knew). A cached read asks
// resolve, which decides between the cache and the write:
//
//   - a write is stale, and forgotten, once the informer has applied a
//     resourceVersion >= the write's (the informer has then seen the write
//     or something newer, so the cache is authoritative), or the cached
//     object's resourceVersion is >= the write's;
//   - a tombstone is forgotten once the cached object is newer than the
//     deleted version (a new incarnation), or it is absent and the informer
//     is at or past the deleted version (it has seen it go); until then the
//     object reads as absent;
//   - when versions cannot be compared (a server without KEP-5504
//     semantics), a write is forgotten once the cache holds exactly the
//     written version, or after window.
//
// Entries are also swept every sweepEvery writes, so objects that are
// never read again do not pile up. Safe for concurrent use.
type tracker struct {
	window time.Duration
	now    func() time.Time

	mu     sync.Mutex
	writes map[reflect.Type]map[cache.ObjectKey]written
	n      int
	// own remembers recent written versions, for IsOwnWrite.
	own     map[ownKey]struct{}
	ownRing []ownKey
	ownNext int
	// inflight counts the writes of each object that have been sent and
	// not yet recorded: their watch event can arrive before the response,
	// so isOwn waits for them.
	inflight map[objKey]*flight
}

type objKey struct {
	typ reflect.Type
	key cache.ObjectKey
}

type flight struct {
	n    int
	done chan struct{} // closed when n drops to 0
}

// maxOwnWait bounds how long isOwn waits for a write in flight.
const maxOwnWait = 5 * time.Second

const (
	sweepEvery = 256
	ownSize    = 4096
)

type written struct {
	obj     runtime.Object // nil for a tombstone
	rv      string
	deleted bool
	at      time.Time
}

type ownKey struct {
	typ reflect.Type
	key cache.ObjectKey
	rv  string
}

func newTracker(window time.Duration, now func() time.Time) *tracker {
	return &tracker{window: window, now: now, writes: map[reflect.Type]map[cache.ObjectKey]written{},
		own: map[ownKey]struct{}{}, ownRing: make([]ownKey, ownSize), inflight: map[objKey]*flight{}}
}

// wrote records a successful write: obj (the caller's deep copy of the
// server's answer) at rv, or a delete of the version rv when deleted.
// sweep, if non-nil, gives the latest applied resourceVersion of a type's
// informer ("" if none), for the periodic sweep.
func (t *tracker) wrote(typ reflect.Type, key cache.ObjectKey, obj runtime.Object, rv string, deleted bool, sweep func(reflect.Type) string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.writes[typ]
	if m == nil {
		m = map[cache.ObjectKey]written{}
		t.writes[typ] = m
	}
	m[key] = written{obj: obj, rv: rv, deleted: deleted, at: t.now()}
	if !deleted && rv != "" {
		t.rememberLocked(ownKey{typ, key, rv})
	}
	t.n++
	if t.n%sweepEvery == 0 && sweep != nil {
		t.sweepLocked(sweep)
	}
}

func (t *tracker) rememberLocked(k ownKey) {
	if old := t.ownRing[t.ownNext]; old.typ != nil {
		delete(t.own, old)
	}
	t.ownRing[t.ownNext] = k
	t.ownNext = (t.ownNext + 1) % len(t.ownRing)
	t.own[k] = struct{}{}
}

// begin marks a write of key as sent; end must follow once its outcome is
// recorded (or it failed).
func (t *tracker) begin(typ reflect.Type, key cache.ObjectKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := objKey{typ, key}
	f := t.inflight[k]
	if f == nil {
		f = &flight{done: make(chan struct{})}
		t.inflight[k] = f
	}
	f.n++
}

func (t *tracker) end(typ reflect.Type, key cache.ObjectKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := objKey{typ, key}
	if f := t.inflight[k]; f != nil {
		if f.n--; f.n == 0 {
			close(f.done)
			delete(t.inflight, k)
		}
	}
}

// isOwn reports whether this process wrote exactly version rv of key
// (among its last ownSize writes). If a write of key is in flight, it first
// waits for its outcome (at most maxOwnWait): the watch may deliver a write
// before its response reaches the writer.
func (t *tracker) isOwn(typ reflect.Type, key cache.ObjectKey, rv string) bool {
	t.mu.Lock()
	f := t.inflight[objKey{typ, key}]
	t.mu.Unlock()
	if f != nil {
		timer := time.NewTimer(maxOwnWait)
		select {
		case <-f.done:
		case <-timer.C:
		}
		timer.Stop()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.own[ownKey{typ, key, rv}]
	return ok
}

func (t *tracker) sweepLocked(informerRV func(reflect.Type) string) {
	now := t.now()
	for typ, m := range t.writes {
		irv := informerRV(typ)
		for key, w := range m {
			if w.deleted {
				continue // needs the cached object to decide; resolved on read
			}
			if c, err := resourceversion.CompareResourceVersion(irv, w.rv); (err == nil && c >= 0) || (err != nil && now.Sub(w.at) >= t.window) {
				delete(m, key)
			}
		}
		if len(m) == 0 {
			delete(t.writes, typ)
		}
	}
}

// pending reports how many writes are remembered (for tests and metrics).
func (t *tracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, m := range t.writes {
		n += len(m)
	}
	return n
}

// verdict is what a cached read of one key should return.
type verdict uint8

const (
	useCache   verdict = iota // the cache is current: return what it has
	useWritten                // return the written object
	useAbsent                 // our delete is not in the cache yet: not found
)

// decide is the pure rule (see tracker). cachedRV is "" when the cache has
// no object; informerRV is the informer's latest applied resourceVersion.
func decide(w written, cachedRV, informerRV string, now time.Time, window time.Duration) (v verdict, forget bool) {
	present := cachedRV != ""
	if w.deleted {
		if !present {
			c, err := resourceversion.CompareResourceVersion(informerRV, w.rv)
			return useAbsent, err == nil && c >= 0
		}
		c, err := resourceversion.CompareResourceVersion(cachedRV, w.rv)
		switch {
		case err == nil && c > 0:
			return useCache, true // a newer incarnation or a later change
		case err != nil && cachedRV != w.rv && now.Sub(w.at) >= window:
			return useCache, true
		}
		return useAbsent, false
	}
	if c, err := resourceversion.CompareResourceVersion(informerRV, w.rv); err == nil && c >= 0 {
		return useCache, true
	}
	if present {
		c, err := resourceversion.CompareResourceVersion(cachedRV, w.rv)
		if (err == nil && c >= 0) || cachedRV == w.rv {
			return useCache, true
		}
		if err != nil && now.Sub(w.at) >= window {
			return useCache, true
		}
		return useWritten, false
	}
	if _, err := resourceversion.CompareResourceVersion(informerRV, w.rv); err != nil && now.Sub(w.at) >= window {
		return useCache, true
	}
	return useWritten, false
}

// resolve decides a cached read of key; cachedRV is "" when absent.
func (t *tracker) resolve(typ reflect.Type, key cache.ObjectKey, cachedRV, informerRV string) (verdict, runtime.Object) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w, ok := t.writes[typ][key]
	if !ok {
		return useCache, nil
	}
	v, forget := decide(w, cachedRV, informerRV, t.now(), t.window)
	if forget {
		delete(t.writes[typ], key)
	}
	return v, w.obj
}

// ofType returns the keys with a remembered write of typ, for List.
func (t *tracker) ofType(typ reflect.Type) []cache.ObjectKey {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys := make([]cache.ObjectKey, 0, len(t.writes[typ]))
	for k := range t.writes[typ] {
		keys = append(keys, k)
	}
	return keys
}
