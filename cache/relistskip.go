package cache

import (
	"context"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Relist without decoding what did not change: a relist (after a 410, say)
// sends every object again, and almost all of them are the ones the store
// already holds, at the same resourceVersion. A replace session drops such
// an object at Put, but only after it was decoded, transformed and
// interned: a full second copy of the cache's objects made and thrown
// away, whose garbage (and whatever batch is alive when a GC marks) is
// the relist's transient heap, and most of its CPU.
//
// So while a watch-list streams its initial events, the protobuf watch
// reader (protoWatch) reads namespace, name and resourceVersion straight
// from each object's wire bytes (peekMeta) and asks the open session
// (relistFilter) whether the store holds that key at that resourceVersion.
// If it does, the reader hands the reflector an unchangedObject instead of
// decoding the object, and the reflector marks the key seen in the session
// (ReplaceSession.Keep). Everything else is decoded as before.
//
// A paginated list into the session does the same with each item of its
// protobuf pages (pageItemDecoder), unless a partition sits in between.
//
// This is exactly the object Put would have dropped: Put compares the
// resourceVersion of the decoded object after Transform with the stored
// one; Transform keeps namespace, name and resourceVersion (see
// Options.Transform), so the wire's are the decoded object's. It needs
// nothing from the stored object but its resourceVersion, so it works the
// same for compact stores (whose entries keep the resourceVersion beside
// the packed bytes), with FullDecode, NoIntern and any Transform.
//
// Bytes the peek does not fully understand (not an envelope of T's kind,
// a content encoding, field 1 missing, repeated or not length-delimited, a
// repeated name, namespace or resourceVersion, a malformed tag or length
// at the levels it walks) are decoded as before, so a decode error is
// reported as it always was.

// relistFilter is what the protobuf watch reader asks, during a
// watch-list's initial events, before it decodes an object.
type relistFilter interface {
	// unchanged reports whether the store holds the object
	// namespace/name at resourceVersion rv (a non-empty one). The slices
	// are not retained. Safe to call from any goroutine while the
	// session is open.
	unchanged(namespace, name, rv []byte) bool
}

// unchangedObject stands in a watch-list's initial events for an object
// the store already holds at the same resourceVersion: the protobuf watch
// reader sends it instead of decoding the object. Its ObjectMeta holds
// only namespace, name and resourceVersion. A ListerWatcher wrapper that
// read events' objects (to filter them by labels, say) would misjudge it,
// so the informer asks for the skip only through wrappers that say they
// pass events on unread (relaysEvents, EventRelay).
type unchangedObject struct {
	metav1.ObjectMeta
	// from is the filter that found the object unchanged: the reflector
	// checks that it is the session it is filling.
	from relistFilter
}

// GetObjectKind implements runtime.Object; an unchangedObject has no kind.
func (u *unchangedObject) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (u *unchangedObject) DeepCopyObject() runtime.Object {
	c := *u
	u.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return &c
}

// EventRelay is implemented by a ListerWatcher that wraps another and
// passes its watch events on without reading their objects (it may end a
// watch, add ERROR events or delay a request; it must not drop, change or
// type-assert the objects of ADDED and MODIFIED events). An informer over
// a TypedSource relists without decoding the objects its store already
// holds at the same resourceVersion (see Stats.Kept); through wrappers it
// does so only if each of them is an EventRelay, because such an object
// reaches the wrappers as a stand-in that carries only its namespace,
// name and resourceVersion.
type EventRelay interface {
	ListerWatcher
	// RelayedFrom returns the ListerWatcher whose events this one passes
	// on.
	RelayedFrom() ListerWatcher
}

// relaysEvents reports whether lw's watch events reach the reflector
// unread: lw is a REST source, the informer's own lean wrapper of one, or
// a chain of EventRelays ending in one.
func relaysEvents(lw ListerWatcher) bool {
	_, ok := relayedFrom(lw, func(lw ListerWatcher) bool { _, ok := lw.(*restLW); return ok })
	return ok
}

// pagePreferrer is a ListerWatcher whose initial lists are cheaper as
// paginated lists than as watch-lists (see WatchListAuto).
type pagePreferrer interface {
	prefersPages() bool
}

// prefersPages reports whether lw, or what it relays (the informer's lean
// wrapper, a chain of EventRelays), prefers paginated lists.
func prefersPages(lw ListerWatcher) bool {
	src, ok := relayedFrom(lw, func(lw ListerWatcher) bool { _, ok := lw.(pagePreferrer); return ok })
	return ok && src.(pagePreferrer).prefersPages()
}

// relayedFrom follows lw through the informer's lean wrapper and
// EventRelays to the first ListerWatcher that is; ok is false if the
// chain ends (or runs past 64 links, not worth following) first.
func relayedFrom(lw ListerWatcher, is func(ListerWatcher) bool) (ListerWatcher, bool) {
	for range 64 {
		if is(lw) {
			return lw, true
		}
		switch l := lw.(type) {
		case leanLW:
			lw = l.ListerWatcher
		case EventRelay:
			lw = l.RelayedFrom()
		default:
			return nil, false
		}
	}
	return nil, false
}

// relistFilterKey carries a watch-list's relistFilter to the watch
// request, lent for the Watch call (see lent).
type relistFilterKey struct{}

// withRelistFilter marks ctx's watch request as the watch-list of f's
// session; call revoke when the Watch call returns. The mark travels in
// the context (through wrappers that relaysEvents accepted); sources that
// cannot peek at wire bytes ignore it, and so does a wrapper that opens
// the watch after Watch returned: the filter is then revoked, and the
// objects are decoded as without it.
func withRelistFilter(ctx context.Context, f relistFilter) (_ context.Context, revoke func()) {
	l := lend(&f)
	return context.WithValue(ctx, relistFilterKey{}, l), l.revoke
}

// relistFilterOf returns the relistFilter lent through ctx, or nil if
// there is none or it was revoked.
func relistFilterOf(ctx context.Context) relistFilter {
	l, _ := ctx.Value(relistFilterKey{}).(*lent[relistFilter])
	if f := l.get(); f != nil {
		return *f
	}
	return nil
}

// lent is a value a caller lends to the callee of one call through the
// call's context, and takes back (revoke) when the call returns. A context
// can outlive its call: whatever keeps a request's context (net/http,
// client-go, a RoundTripper wrapper, a tracing exporter) would otherwise
// keep the informer's store or its spec-reuse table, and so its whole
// cache, after the informer stopped. A revoked loan keeps nothing. The
// callee must take what it needs during the call (the watch readers copy
// the value into the stream they return).
type lent[V any] struct{ p atomic.Pointer[V] }

func lend[V any](v *V) *lent[V] {
	l := &lent[V]{}
	l.p.Store(v)
	return l
}

// get returns the value, or nil if l is nil or revoked. Safe for
// concurrent use.
func (l *lent[V]) get() *V {
	if l == nil {
		return nil
	}
	return l.p.Load()
}

func (l *lent[V]) revoke() { l.p.Store(nil) }

// Protobuf field numbers of metav1.ObjectMeta the peek reads
// (k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto).
const (
	metaNameField            = 1
	metaNamespaceField       = 3
	metaResourceVersionField = 6
)

// peekMeta returns the namespace, name and resourceVersion in the
// ObjectMeta (field 1) of the protobuf object message obj, as slices of
// obj. ok is false, and the caller must decode obj instead, unless every
// field of obj and of its ObjectMeta has a well-formed tag and extent,
// field 1 occurs exactly once, length-delimited, and name, namespace and
// resourceVersion each occur at most once in it, length-delimited (the
// generated decoder merges repeated messages; the peek does not try to).
// It never panics, whatever obj holds.
func peekMeta(obj []byte) (namespace, name, rv []byte, ok bool) {
	var meta []byte
	found := false
	for i := 0; i < len(obj); {
		num, wt, n := readTag(obj[i:])
		if n <= 0 {
			return nil, nil, nil, false
		}
		vs, end, err := fieldExtent(obj, i+n, wt)
		if err != nil {
			return nil, nil, nil, false
		}
		if num == objectMetaField {
			if found || wt != wireBytes {
				return nil, nil, nil, false
			}
			found, meta = true, obj[vs:end]
		}
		i = end
	}
	if !found {
		return nil, nil, nil, false
	}
	var seen [metaResourceVersionField + 1]bool
	for i := 0; i < len(meta); {
		num, wt, n := readTag(meta[i:])
		if n <= 0 {
			return nil, nil, nil, false
		}
		vs, end, err := fieldExtent(meta, i+n, wt)
		if err != nil {
			return nil, nil, nil, false
		}
		switch num {
		case metaNameField, metaNamespaceField, metaResourceVersionField:
			if seen[num] || wt != wireBytes {
				return nil, nil, nil, false
			}
			seen[num] = true
			v := meta[vs:end:end]
			switch num {
			case metaNameField:
				name = v
			case metaNamespaceField:
				namespace = v
			default:
				rv = v
			}
		}
		i = end
	}
	return namespace, name, rv, true
}

// peekUnchanged returns an unchangedObject for the enveloped object data
// if it is of w's kind and w's relist filter finds it unchanged, else nil
// (decode data).
func (w *protoWatch) peekUnchanged(data []byte) runtime.Object {
	kind, raw, encoded, ok := envelopeParts(data)
	if !ok || encoded || string(kind) != w.dec.kinds.Object {
		return nil
	}
	ns, name, rv, ok := peekMeta(raw)
	if !ok || len(name) == 0 || len(rv) == 0 || !w.relist.unchanged(ns, name, rv) {
		return nil
	}
	return &unchangedObject{
		ObjectMeta: metav1.ObjectMeta{Namespace: string(ns), Name: string(name), ResourceVersion: string(rv)},
		from:       w.relist,
	}
}

// initialEventsEnd reports whether obj, a BOOKMARK event's object, marks
// the end of a watch-list's initial events.
func initialEventsEnd(obj runtime.Object) bool {
	acc, err := meta.Accessor(obj)
	return err == nil && acc.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true"
}
