package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// podWire is p's object message, as it sits in an envelope's raw field.
func podWire(t testing.TB, p *corev1.Pod) []byte {
	t.Helper()
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// varintField appends field num with a varint value.
func varintField(dst []byte, num int, v uint64) []byte {
	dst = binary.AppendUvarint(dst, uint64(num)<<3|wireVarint)
	return binary.AppendUvarint(dst, v)
}

func TestPeekMeta(t *testing.T) {
	full := podWire(t, testPod())
	meta := podWire(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "n", Namespace: "ns", ResourceVersion: "7"}})
	metaOf := func(fields ...[]byte) []byte { return appendField(nil, objectMetaField, bytes.Join(fields, nil)) }
	field := func(num int, v string) []byte { return appendField(nil, num, []byte(v)) }
	cases := []struct {
		name      string
		obj       []byte
		ok        bool
		ns, n, rv string
	}{
		{name: "pod", obj: full, ok: true, ns: "shop", n: "web-1", rv: "42"},
		{name: "metadata only", obj: meta, ok: true, ns: "ns", n: "n", rv: "7"},
		{name: "cluster-scoped", obj: metaOf(field(metaNameField, "node-1"), field(metaResourceVersionField, "3")), ok: true, n: "node-1", rv: "3"},
		{name: "fields in any order, others skipped", obj: append(appendField(nil, 2, []byte{1, 2}), metaOf(field(metaResourceVersionField, "9"), varintField(nil, 7, 5), field(metaNamespaceField, "a"), field(metaNameField, "b"))...), ok: true, ns: "a", n: "b", rv: "9"},
		{name: "no name or rv", obj: metaOf(field(metaNamespaceField, "a")), ok: true, ns: "a"},
		{name: "empty", obj: nil},
		{name: "no metadata", obj: appendField(nil, 2, []byte{})},
		{name: "metadata twice", obj: append(append([]byte(nil), meta...), meta...)},
		{name: "metadata not length-delimited", obj: varintField(nil, objectMetaField, 1)},
		{name: "name twice", obj: metaOf(field(metaNameField, "a"), field(metaNameField, "b"))},
		{name: "namespace twice", obj: metaOf(field(metaNamespaceField, "a"), field(metaNamespaceField, "a"))},
		{name: "rv twice", obj: metaOf(field(metaResourceVersionField, "1"), field(metaResourceVersionField, "2"))},
		{name: "rv as varint", obj: metaOf(varintField(nil, metaResourceVersionField, 1))},
		{name: "truncated object", obj: full[:len(full)-1]},
		{name: "truncated metadata", obj: appendField(nil, objectMetaField, field(metaNameField, "abc")[:3])},
		{name: "field 0 after metadata", obj: append(append([]byte(nil), meta...), 0, 0)},
		{name: "bad tag in metadata", obj: metaOf(field(metaNameField, "a"), []byte{0xff})},
		{name: "group wire type", obj: append(append([]byte(nil), meta...), 3<<3|3)},
	}
	for _, c := range cases {
		ns, n, rv, ok := peekMeta(c.obj)
		if ok != c.ok || string(ns) != c.ns || string(n) != c.n || string(rv) != c.rv {
			t.Errorf("%s: got %q %q %q %v, want %q %q %q %v", c.name, ns, n, rv, ok, c.ns, c.n, c.rv, c.ok)
		}
	}
}

// On any pod the generated encoder writes, the peek reads what the
// generated decoder reads.
func TestPeekMetaRandomPods(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	for range 300 {
		p := randomPod(r)
		ns, n, rv, ok := peekMeta(podWire(t, p))
		if !ok || string(ns) != p.Namespace || string(n) != p.Name || string(rv) != p.ResourceVersion {
			t.Fatalf("peek %q %q %q %v, want %q %q %q", ns, n, rv, ok, p.Namespace, p.Name, p.ResourceVersion)
		}
	}
}

// Whatever the bytes, the peek does not panic, and what it reads is what
// the generated decoder reads, wherever that decoder accepts the bytes.
func FuzzPeekMeta(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 6 {
		f.Add(podWire(f, randomPod(r)))
	}
	f.Add(podWire(f, testPod()))
	f.Add(appendField(nil, objectMetaField, appendField(appendField(nil, metaNameField, []byte("a")), metaNameField, []byte("b"))))
	f.Fuzz(func(t *testing.T, obj []byte) {
		ns, n, rv, ok := peekMeta(obj)
		if !ok {
			if ns != nil || n != nil || rv != nil {
				t.Fatalf("not ok, yet returned %q %q %q", ns, n, rv)
			}
			return
		}
		var p corev1.Pod
		if err := p.Unmarshal(obj); err != nil {
			return // the decoder rejects what the peek did not walk; the object is then decoded and fails as always
		}
		if string(ns) != p.Namespace || string(n) != p.Name || string(rv) != p.ResourceVersion {
			t.Fatalf("peek %q %q %q, decoder %q %q %q", ns, n, rv, p.Namespace, p.Name, p.ResourceVersion)
		}
	})
}

// fakeFilter finds unchanged the keys in held ("ns/name@rv").
type fakeFilter struct {
	held  map[string]bool
	mu    sync.Mutex
	asked []string
}

func (f *fakeFilter) unchanged(ns, name, rv []byte) bool {
	k := fmt.Sprintf("%s/%s@%s", ns, name, rv)
	f.mu.Lock()
	f.asked = append(f.asked, k)
	f.mu.Unlock()
	return f.held[k]
}

// During a watch-list's initial events the reader sends an
// unchangedObject for what the filter holds and decodes the rest; after
// the initial-events-end bookmark it decodes everything and asks no more.
// The same through ResultChan (the reader then runs on a goroutine of its
// own), lean or not.
func TestProtoWatchSkipsUnchangedInitialEvents(t *testing.T) {
	pod := func(name, rv string) *corev1.Pod {
		p := testPod()
		p.Name, p.ResourceVersion = name, rv
		return p
	}
	end := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
	data := protobufStream(t,
		watch.Event{Type: watch.Added, Object: pod("same", "5")},
		watch.Event{Type: watch.Added, Object: pod("changed", "6")},
		watch.Event{Type: watch.Bookmark, Object: end},
		watch.Event{Type: watch.Modified, Object: pod("same", "5")},
	)
	for _, pump := range []bool{false, true} {
		for _, lean := range []bool{false, true} {
			f := &fakeFilter{held: map[string]bool{"shop/same@5": true, "shop/changed@5": true}}
			w := newProtoWatch(io.NopCloser(bytes.NewReader(data)), podDecoder(t, lean))
			w.relist = f
			var evs []watch.Event
			if pump {
				for ev := range w.ResultChan() {
					evs = append(evs, ev)
				}
			} else {
				var err error
				if evs, err = readAll(w); !errors.Is(err, io.EOF) {
					t.Fatalf("stream ended with %v", err)
				}
			}
			w.Stop()
			if len(evs) != 4 {
				t.Fatalf("pump=%v lean=%v: %d events, want 4", pump, lean, len(evs))
			}
			u, ok := evs[0].Object.(*unchangedObject)
			if !ok || u.Namespace != "shop" || u.Name != "same" || u.ResourceVersion != "5" || u.from != relistFilter(f) || evs[0].Type != watch.Added {
				t.Errorf("pump=%v lean=%v: first event %s %#v, want an unchangedObject for shop/same@5", pump, lean, evs[0].Type, evs[0].Object)
			}
			if p, ok := evs[1].Object.(*corev1.Pod); !ok || p.Name != "changed" {
				t.Errorf("pump=%v lean=%v: a changed object was not decoded: %#v", pump, lean, evs[1].Object)
			}
			if p, ok := evs[3].Object.(*corev1.Pod); !ok || p.Name != "same" {
				t.Errorf("pump=%v lean=%v: an object after the initial events was not decoded: %#v", pump, lean, evs[3].Object)
			}
			if want := "shop/same@5 shop/changed@6"; strings.Join(f.asked, " ") != want {
				t.Errorf("pump=%v lean=%v: asked %v, want %s", pump, lean, f.asked, want)
			}
		}
	}
}

// An object the peek cannot read is decoded, and its decode error is
// reported as without a filter.
func TestProtoWatchUnreadableObjectIsDecoded(t *testing.T) {
	bad := envelope("Pod", appendField(nil, objectMetaField, []byte{0xff}))
	frame := appendField(appendField(nil, watchEventTypeField, []byte(watch.Added)), watchEventObjectField, appendField(nil, rawExtensionRawField, bad))
	data := binary.BigEndian.AppendUint32(nil, uint32(len(frame)))
	data = append(data, frame...)
	var errs []string
	for _, filter := range []bool{false, true} {
		w := newProtoWatch(io.NopCloser(bytes.NewReader(data)), podDecoder(t, true))
		if filter {
			w.relist = &fakeFilter{held: map[string]bool{}}
		}
		_, err := w.nextEvent()
		if err == nil {
			t.Fatal("a malformed object decoded")
		}
		errs = append(errs, err.Error())
	}
	if errs[0] != errs[1] {
		t.Errorf("with a filter the error is %q, without %q", errs[1], errs[0])
	}
}
