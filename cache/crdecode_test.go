package cache

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	kjson "sigs.k8s.io/json"
)

// widget is a user's CRD type, as a controller would write it.
type widget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Size  int               `json:"size"`
		Tags  []string          `json:"tags,omitempty"`
		Extra map[string]string `json:"extra,omitempty"`
	} `json:"spec"`
	Status struct {
		Conditions []metav1.Condition `json:"conditions,omitempty"`
	} `json:"status,omitempty"`
}

func (w *widget) DeepCopyObject() runtime.Object {
	c := *w
	w.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return &c
}

const lastApplied = `kubectl.kubernetes.io/last-applied-configuration`

func widgetJSON(name string, size string) string {
	return `{"apiVersion":"demo.skiff.dev/v1","kind":"Widget","metadata":{"name":"` + name + `","namespace":"ns","resourceVersion":"7",` +
		`"labels":{"app":"w"},"annotations":{"a":"1","` + lastApplied + `":"{\"big\":\"copy\"}"},` +
		`"managedFields":[{"manager":"kubectl","operation":"Update","apiVersion":"demo.skiff.dev/v1","time":"2026-01-01T00:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:size":{}}}}]},` +
		`"spec":{"size":` + size + `,"tags":["x","y"]},"status":{"conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2026-01-01T00:00:00Z","reason":"R","message":"m"}]}}`
}

// reference is today's path: client-go's JSON decoding (case-sensitive,
// sigs.k8s.io/json) of the whole object, then DefaultTransform.
func reference(b []byte) (*widget, error) {
	w := &widget{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(b, w); err != nil {
		return nil, err
	}
	return DefaultTransform(w), nil
}

// normalize treats empty and nil annotations alike: stripping the only
// annotation leaves nil, DefaultTransform leaves nil too, but duplicate
// "annotations" keys can leave either an empty map or nil.
func normalize(w *widget) *widget {
	if len(w.Annotations) == 0 {
		w.Annotations = nil
	}
	return w
}

func TestStripObject(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"metadata":{"name":"a","managedFields":[{"x":1}]}}`, `{"metadata":{"name":"a"}}`},
		{`{"metadata":{"managedFields":[],"name":"a"}}`, `{"metadata":{"name":"a"}}`},
		{`{"metadata":{"managedFields":null}}`, `{"metadata":{}}`},
		{`{"metadata":{"annotations":{"` + lastApplied + `":"x"},"name":"a"}}`, `{"metadata":{"name":"a"}}`},
		{`{"metadata":{"name":"a","annotations":{"` + lastApplied + `":"x"}}}`, `{"metadata":{"name":"a"}}`},
		{`{"metadata":{"annotations":{"b":"2","` + lastApplied + `":"x"}}}`, `{"metadata":{"annotations":{"b":"2"}}}`},
		{`{"metadata":{"annotations":{"` + lastApplied + `":"x", "b":"2"}}}`, `{"metadata":{"annotations":{"b":"2"}}}`},
		{`{"metadata":{"managedFields":[1],"annotations":{"` + lastApplied + `":"x"}}}`, `{"metadata":{}}`},
		{`{"metadata":{"name":"a","managedFields":[1],"annotations":{"` + lastApplied + `":"x"}}}`, `{"metadata":{"name":"a"}}`},
		{`{"metadata":{"annotations":{"` + lastApplied + `":5}}}`, `{"metadata":{"annotations":{"` + lastApplied + `":5}}}`}, // not a string: left to the decoder
		{`{"spec":{"managedFields":[1]},"metadata":{"name":"a"}}`, `{"spec":{"managedFields":[1]},"metadata":{"name":"a"}}`},
		{` { "metadata" : { "managedFields" : [ ] , "name" : "a" } } `, ` { "metadata" : { "name" : "a" } } `},
	}
	for _, c := range cases {
		got, err := stripJSONObject([]byte(c.in))
		if err != nil {
			t.Errorf("stripJSONObject(%s): %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("stripJSONObject(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
		if !json.Valid(got) {
			t.Errorf("stripJSONObject(%s) = %s: not valid JSON", c.in, got)
		}
	}
	for _, bad := range []string{``, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{"a":tru}`, `{"a":01}`, `{"a":"\x01"}`, `{"a":"\q"}`, `{} x`, `[1]`} {
		if _, err := stripJSONObject([]byte(bad)); err == nil {
			t.Errorf("stripJSONObject(%q) succeeded, want an error", bad)
		}
	}
}

func TestWireDecodeMatchesReferenceWithoutSkippedFields(t *testing.T) {
	d := newWireDecoder[*widget]("widgets.demo.skiff.dev")
	in := widgetJSON("a", "3")
	want, err := reference([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	got, bad := d.decode([]byte(in))
	if bad != nil {
		t.Fatal(bad.err)
	}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got.ManagedFields != nil || got.Annotations[lastApplied] != "" || got.Annotations["a"] != "1" || got.Spec.Size != 3 {
		t.Fatalf("skipped fields present or kept fields lost: %+v", got)
	}
}

func TestWireDecodeMalformedNamesTheObject(t *testing.T) {
	d := newWireDecoder[*widget]("widgets.demo.skiff.dev")
	_, bad := d.decode([]byte(widgetJSON("broken", `"big"`)))
	if bad == nil {
		t.Fatal("decoded a string into an int field")
	}
	if bad.Name != "broken" || bad.Namespace != "ns" || bad.ResourceVersion != "7" {
		t.Fatalf("undecoded metadata %q/%q rv %q", bad.Namespace, bad.Name, bad.ResourceVersion)
	}
	for _, want := range []string{"widgets.demo.skiff.dev", "ns/broken", "*cache.widget", "size"} {
		if !strings.Contains(bad.err.Error(), want) {
			t.Errorf("error %q does not mention %q", bad.err, want)
		}
	}
	if _, err := d.assert(bad); err != bad.err {
		t.Fatalf("assert(undecoded) = %v, want its error", err)
	}
}

func TestWireDecodeUnstructured(t *testing.T) {
	d := newWireDecoder[*unstructured.Unstructured]("widgets.demo.skiff.dev")
	u, bad := d.decode([]byte(widgetJSON("a", "3")))
	if bad != nil {
		t.Fatal(bad.err)
	}
	if u.GetManagedFields() != nil || u.GetAnnotations()[lastApplied] != "" || u.GetName() != "a" {
		t.Fatalf("got %v", u.Object)
	}
	if size, ok, _ := unstructured.NestedInt64(u.Object, "spec", "size"); !ok || size != 3 {
		t.Fatalf("spec.size = %v (%v), want int64 3", size, ok)
	}
	if _, bad := d.decode([]byte(`null`)); bad == nil {
		t.Fatal("decoded null into an object")
	}
}

func TestDecodeListAndEvents(t *testing.T) {
	d := newWireDecoder[*widget]("widgets.demo.skiff.dev")
	body := `{"apiVersion":"demo.skiff.dev/v1","kind":"WidgetList","metadata":{"resourceVersion":"42","continue":"c1"},"items":[` +
		widgetJSON("a", "1") + `,` + widgetJSON("bad", `"x"`) + `,` + widgetJSON("c", "3") + `]}`
	l, err := d.decodeList([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if l.ResourceVersion != "42" || l.Continue != "c1" || len(l.Items) != 3 {
		t.Fatalf("list rv %q continue %q items %d", l.ResourceVersion, l.Continue, len(l.Items))
	}
	if w, ok := l.Items[2].(*widget); !ok || w.Name != "c" || w.Spec.Size != 3 {
		t.Fatalf("item 2 = %#v", l.Items[2])
	}
	if u, ok := l.Items[1].(*undecoded); !ok || u.Name != "bad" {
		t.Fatalf("item 1 = %#v, want undecoded bad", l.Items[1])
	}

	ev, err := d.decodeEvent([]byte(`{"type":"MODIFIED","object":` + widgetJSON("a", "5") + `}`))
	if err != nil || ev.Type != watch.Modified || ev.Object.(*widget).Spec.Size != 5 {
		t.Fatalf("event %+v, %v", ev, err)
	}
	ev, err = d.decodeEvent([]byte(`{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","code":410,"reason":"Expired","message":"too old"}}`))
	if err != nil || ev.Type != watch.Error || ev.Object.(*metav1.Status).Code != 410 {
		t.Fatalf("error event %+v, %v", ev, err)
	}
	ev, err = d.decodeEvent([]byte(`{"type":"BOOKMARK","object":{"kind":"Widget","apiVersion":"demo.skiff.dev/v1","metadata":{"resourceVersion":"99","annotations":{"k8s.io/initial-events-end":"true"}}}}`))
	if err != nil || ev.Type != watch.Bookmark || ev.Object.(*widget).ResourceVersion != "99" {
		t.Fatalf("bookmark %+v, %v", ev, err)
	}
	for _, bad := range []string{`{"type":"ADDED"}`, `{"type":5,"object":{}}`, `[]`} {
		if _, err := d.decodeEvent([]byte(bad)); err == nil {
			t.Errorf("decodeEvent(%s) succeeded", bad)
		}
	}
}

// oneByteReader returns one byte per Read, so frames straddle every read.
type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }

func TestFrameReader(t *testing.T) {
	big := strings.Repeat("z", 100<<10) // larger than the initial buffer
	frames := []string{`{"a":"}{\"\\"}`, `{"b":[{"c":{}}]}`, `{"big":"` + big + `"}`, `{}`}
	stream := "  " + strings.Join(frames, "\n") + "\n"
	for _, r := range []io.Reader{strings.NewReader(stream), oneByteReader{strings.NewReader(stream)}} {
		fr := newFrameReader(r)
		for i, want := range frames {
			got, err := fr.next()
			if err != nil || string(got) != want {
				t.Fatalf("frame %d: %.40q, %v; want %.40q", i, got, err, want)
			}
		}
		if _, err := fr.next(); err != io.EOF {
			t.Fatalf("after the last frame: %v, want EOF", err)
		}
	}
	fr := newFrameReader(strings.NewReader(`{"a":1} {"b":`))
	fr.next()
	if _, err := fr.next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated frame: %v, want unexpected EOF", err)
	}
	if _, err := newFrameReader(strings.NewReader(`x`)).next(); err == nil {
		t.Fatal("garbage between frames accepted")
	}
}

func TestWireWatchDeliversAndStops(t *testing.T) {
	d := newWireDecoder[*widget]("widgets.demo.skiff.dev")
	var stream bytes.Buffer
	for i := range 3 {
		fmt.Fprintf(&stream, `{"type":"ADDED","object":%s}`+"\n", widgetJSON(fmt.Sprint("w", i), fmt.Sprint(i)))
	}
	stream.WriteString(`{"type":"ADDED","object":`) // cut off: the server went away
	w := startWireWatch(io.NopCloser(&stream), d.decodeEvent, d.resource)
	var names []string
	for ev := range w.ResultChan() {
		names = append(names, ev.Object.(*widget).Name)
	}
	w.Stop()
	w.Stop() // idempotent
	if strings.Join(names, ",") != "w0,w1,w2" {
		t.Fatalf("events %v", names)
	}

	// Stop while the reader is blocked sending: it returns and closes.
	pr, pw := io.Pipe()
	w = startWireWatch(pr, d.decodeEvent, d.resource)
	go fmt.Fprintf(pw, `{"type":"ADDED","object":%s}`, widgetJSON("x", "1"))
	w.Stop()
	for range w.ResultChan() {
	}

	// A frame that is not an event ends the watch with an Error event.
	w = startWireWatch(io.NopCloser(strings.NewReader(`{"type":"ADDED"}`)), d.decodeEvent, d.resource)
	ev := <-w.ResultChan()
	if ev.Type != watch.Error || !strings.Contains(ev.Object.(*metav1.Status).Message, "no object") {
		t.Fatalf("got %+v", ev)
	}
	w.Stop()
}

// FuzzWireDecode: the wire decoder never panics, and whenever today's
// path (decode everything, then DefaultTransform) accepts an object, the
// wire decoder accepts it too and yields the same object.
func FuzzWireDecode(f *testing.F) {
	f.Add(widgetJSON("a", "1"))
	f.Add(widgetJSON("b", `"x"`))
	f.Add(`{"metadata":{"annotations":{"` + lastApplied + `":"x"},"annotations":{}}}`)
	f.Add(`{"metadata":{"managedFields":5,"name":"a"},"metadata":{"labels":{"a":"b"}}}`)
	f.Add(`null`)
	f.Add(`{"metadata":{"name":"a\u0062","annotations":{"` + lastApplied + `":"x","k":"v"}}}`)
	d := newWireDecoder[*widget]("widgets")
	du := newWireDecoder[*unstructured.Unstructured]("widgets")
	f.Fuzz(func(t *testing.T, in string) {
		want, refErr := reference([]byte(in))
		got, bad := d.decode([]byte(in))
		if refErr == nil {
			if bad != nil {
				t.Fatalf("reference accepts %q, wire decoder: %v", in, bad.err)
			}
			if !reflect.DeepEqual(normalize(got), normalize(want)) {
				t.Fatalf("%q:\n got %+v\nwant %+v", in, got, want)
			}
		}
		du.decode([]byte(in)) // must not panic
	})
}

// WithWatchConfig gives a custom source's watches a client of their own
// and leaves the source it was given, and its lists, alone; it refuses
// sources that are not custom sources.
func TestWithWatchConfig(t *testing.T) {
	gvr := schema.GroupVersionResource{Group: "demo.skiff.dev", Version: "v1", Resource: "widgets"}
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	listC, err := rest.RESTClientFor(customConfig(cfg, gvr.GroupVersion()))
	if err != nil {
		t.Fatal(err)
	}
	src := CustomSource[*widget](listC, gvr, Scope{Namespace: "ns"})
	projected := Project(src, "name", func(w *widget) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: w.Name}}
	})
	for name, lw := range map[string]func() (ListerWatcher, ListerWatcher, error){
		"custom": func() (ListerWatcher, ListerWatcher, error) {
			out, err := WithWatchConfig(src, cfg)
			return src.LW, out.LW, err
		},
		"projected": func() (ListerWatcher, ListerWatcher, error) {
			out, err := WithWatchConfig(projected, cfg)
			return projected.LW, out.LW, err
		},
	} {
		t.Run(name, func(t *testing.T) {
			before, after, err := lw()
			if err != nil {
				t.Fatal(err)
			}
			in, out := before.(*wireLW[*widget]), after.(*wireLW[*widget])
			if in.watchC != nil {
				t.Fatal("WithWatchConfig changed the source it was given")
			}
			if out.c != listC || out.watchC == nil || out.watchC == listC {
				t.Fatalf("lists through %p (want %p), watches through %p (want a client of their own)", out.c, listC, out.watchC)
			}
			if got := out.watchC.(*rest.RESTClient).APIVersion(); got.String() != "demo.skiff.dev/v1" {
				t.Fatalf("watch client for %v, want demo.skiff.dev/v1", got)
			}
		})
	}

	typed := RESTSource[*widget](listC, gvr, Scope{})
	if _, err := WithWatchConfig(typed, cfg); err == nil || !strings.Contains(err.Error(), "CustomSource") {
		t.Fatalf("WithWatchConfig of a RESTSource = %v, want an error naming CustomSource", err)
	}
	bad := rest.CopyConfig(cfg)
	bad.TLSClientConfig.CAFile = "/nonexistent/ca.crt"
	if _, err := WithWatchConfig(src, nil); err == nil || !strings.Contains(err.Error(), "nil rest.Config") {
		t.Fatalf("WithWatchConfig with a nil config = %v, want an error naming it", err)
	}
	if _, err := WithWatchConfig(src, bad); err == nil || !strings.Contains(err.Error(), "widgets.demo.skiff.dev") {
		t.Fatalf("WithWatchConfig with an unreadable CA file = %v, want an error naming the resource", err)
	}
}

// Custom sources prefer paginated lists (WatchListAuto) until a list
// comes back as CBOR; the preference is seen through the informer's lean
// wrapper and EventRelay wrappers, and built-in sources never prefer pages.
func TestCustomSourcePrefersPages(t *testing.T) {
	src := CustomSource[*unstructured.Unstructured](nil, schema.GroupVersionResource{Group: "g", Version: "v1", Resource: "things"}, Scope{})
	wrapped := relayLW{leanLW{ListerWatcher: src.LW}}
	if !prefersPages(src.LW) || !prefersPages(wrapped) {
		t.Fatal("a fresh custom source does not prefer pages")
	}
	r := &reflector[*unstructured.Unstructured]{lw: wrapped, o: &options{watchList: WatchListAuto}}
	if r.useWatchList() {
		t.Fatal("WatchListAuto streams a custom source's first list")
	}
	src.LW.(*wireLW[*unstructured.Unstructured]).cbor.Store(true) // a list came back as CBOR
	if prefersPages(wrapped) || !r.useWatchList() {
		t.Fatal("after a CBOR list the custom source still prefers pages")
	}
	r.o.watchList = WatchListOff
	if r.useWatchList() {
		t.Fatal("WatchListOff streams")
	}
	r.o.watchList = WatchListOn
	src.LW.(*wireLW[*unstructured.Unstructured]).cbor.Store(false)
	if !r.useWatchList() {
		t.Fatal("WatchListOn does not stream")
	}
	r.watchListOff = true // the server rejected streaming
	if r.useWatchList() {
		t.Fatal("streams after the server rejected it")
	}
	if prefersPages(&restLW{}) {
		t.Fatal("a built-in source prefers pages")
	}
}

// relayLW is an EventRelay around a ListerWatcher.
type relayLW struct{ ListerWatcher }

func (r relayLW) RelayedFrom() ListerWatcher { return r.ListerWatcher }
