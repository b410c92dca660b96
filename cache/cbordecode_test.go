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
	"k8s.io/apimachinery/pkg/runtime/serializer/cbor"
	"k8s.io/apimachinery/pkg/watch"
	kjson "sigs.k8s.io/json"
)

// serverCBOR encodes v (JSON text, or a Go value of unstructured content)
// as the API server does: apimachinery's CBOR serializer over the
// unstructured content, self-described tag first, map order not fixed.
func serverCBOR(t testing.TB, v any) []byte {
	t.Helper()
	if s, ok := v.(string); ok {
		var m any
		if err := kjson.UnmarshalCaseSensitivePreserveInts([]byte(s), &m); err != nil {
			t.Fatalf("test JSON %q: %v", s, err)
		}
		v = m
	}
	var buf bytes.Buffer
	ser := cbor.NewSerializer(nil, nil)
	if err := ser.EncodeNondeterministic(&unstructured.Unstructured{Object: v.(map[string]any)}, &buf); err != nil {
		t.Fatalf("encode %v: %v", v, err)
	}
	return buf.Bytes()
}

// cborValue decodes CBOR into unstructured content, for comparisons.
func cborValue(t testing.TB, b []byte) any {
	t.Helper()
	var v any
	if err := cborPlain.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %x: %v", b, err)
	}
	return v
}

func jsonValue(t testing.TB, s string) any {
	t.Helper()
	var v any
	if err := kjson.UnmarshalCaseSensitivePreserveInts([]byte(s), &v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return v
}

// TestStripCBORObject: for the cases stripJSONObject is tested with, the
// CBOR stripper cuts the same members (compared as decoded values).
func TestStripCBORObject(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"metadata":{"name":"a","managedFields":[{"x":1}]}}`, `{"metadata":{"name":"a"}}`},
		{`{"metadata":{"managedFields":null}}`, `{"metadata":{}}`},
		{`{"metadata":{"annotations":{"` + lastApplied + `":"x"},"name":"a"}}`, `{"metadata":{"name":"a"}}`},
		{`{"metadata":{"annotations":{"b":"2","` + lastApplied + `":"x"}}}`, `{"metadata":{"annotations":{"b":"2"}}}`},
		{`{"metadata":{"name":"a","managedFields":[1],"annotations":{"` + lastApplied + `":"x"}}}`, `{"metadata":{"name":"a"}}`},
		{`{"metadata":{"annotations":{"` + lastApplied + `":5}}}`, `{"metadata":{"annotations":{"` + lastApplied + `":5}}}`},
		{`{"spec":{"managedFields":[1]},"metadata":{"name":"a"}}`, `{"spec":{"managedFields":[1]},"metadata":{"name":"a"}}`},
		{`{"metadata":5}`, `{"metadata":5}`},
		{`{}`, `{}`},
		{widgetJSON("a", "1"), strings.Replace(strings.Replace(widgetJSON("a", "1"), `,"`+lastApplied+`":"{\"big\":\"copy\"}"`, "", 1),
			`,"managedFields":[{"manager":"kubectl","operation":"Update","apiVersion":"demo.skiff.dev/v1","time":"2026-01-01T00:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:size":{}}}}]`, "", 1)},
	}
	for _, c := range cases {
		got, err := stripCBORObject(serverCBOR(t, c.in))
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if g, w := cborValue(t, got), jsonValue(t, c.want); !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n got %v\nwant %v", c.in, g, w)
		}
	}
	// More than 23 metadata members (a two-byte map head that shrinks to
	// one byte) and an indefinite-length metadata map.
	meta := map[string]any{"managedFields": []any{int64(1)}}
	for i := range 23 {
		meta[fmt.Sprint("k", i)] = "v"
	}
	got, err := stripCBORObject(serverCBOR(t, map[string]any{"metadata": meta}))
	if err != nil {
		t.Fatal(err)
	}
	if m := cborValue(t, got).(map[string]any)["metadata"].(map[string]any); len(m) != 23 || m["managedFields"] != nil {
		t.Fatalf("got %v", m)
	}
	indef := []byte{0xa1, 0x48}
	indef = append(indef, "metadata"...)
	indef = append(indef, 0xbf, 0x44)
	indef = append(indef, "name"...)
	indef = append(indef, 0x41, 'a', 0x4d)
	indef = append(indef, "managedFields"...)
	indef = append(indef, 0x80, 0xff)
	got, err = stripCBORObject(indef)
	if err != nil {
		t.Fatal(err)
	}
	if g, w := cborValue(t, got), jsonValue(t, `{"metadata":{"name":"a"}}`); !reflect.DeepEqual(g, w) {
		t.Fatalf("indefinite map: got %v", g)
	}
	for _, bad := range [][]byte{nil, {0xa1}, {0x80}, {0xa0, 0x00}, {0xa1, 0x41, 'a', 0x1c}, {0x5f, 0x61, 'a', 0xff}} {
		if _, err := stripCBORObject(bad); err == nil {
			t.Errorf("stripCBORObject(%x) accepted", bad)
		}
	}
}

// TestCBORDecodeMatchesJSON: the same content decodes to the same typed and
// unstructured object from CBOR as from JSON.
func TestCBORDecodeMatchesJSON(t *testing.T) {
	d := newWireDecoder[*widget]("widgets")
	du := newWireDecoder[*unstructured.Unstructured]("widgets")
	for _, in := range []string{widgetJSON("a", "3"), `{"metadata":{"name":"b","annotations":{"x":"<&>"}},"spec":{"size":-7,"extra":{"k":"v"}}}`} {
		want, bad := d.decode([]byte(in))
		if bad != nil {
			t.Fatal(bad.err)
		}
		got, bad := d.decodeCBOR(serverCBOR(t, in))
		if bad != nil {
			t.Fatal(bad.err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("typed:\n got %+v\nwant %+v", got, want)
		}
		uwant, _ := du.decode([]byte(in))
		ugot, bad := du.decodeCBOR(serverCBOR(t, in))
		if bad != nil {
			t.Fatal(bad.err)
		}
		if !reflect.DeepEqual(ugot, uwant) {
			t.Fatalf("unstructured:\n got %v\nwant %v", ugot, uwant)
		}
	}
	if _, bad := d.decodeCBOR(serverCBOR(t, widgetJSON("bad", `"x"`))); bad == nil || bad.Name != "bad" || bad.Namespace != "ns" {
		t.Fatalf("a string size decoded, or the failure does not name the object: %+v", bad)
	}
	if _, bad := du.decodeCBOR([]byte{0xf6}); bad == nil {
		t.Fatal("decoded null into an object")
	}
}

// rawHolder has the fields whose raw bytes a CBOR decode leaves as CBOR.
type rawHolder struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              struct {
		Template runtime.RawExtension   `json:"template"`
		More     []runtime.RawExtension `json:"more"`
		ByName   map[string]*rawExt     `json:"byName"`
		Fields   *metav1.FieldsV1       `json:"fields"`
		Timeout  metav1.Duration        `json:"timeout"` // UnmarshalJSON only: transcoded
	} `json:"spec"`
}

type rawExt struct {
	Inner runtime.RawExtension `json:"inner"`
}

func (r *rawHolder) DeepCopyObject() runtime.Object { c := *r; return &c }

func TestCBORRawFieldsReadAsJSON(t *testing.T) {
	in := `{"metadata":{"name":"r"},"spec":{"template":{"b":[1,"x"],"a":{"<":null}},"more":[{"k":1.5}],` +
		`"byName":{"n":{"inner":{"z":true}}},"fields":{"f:a":{}},"timeout":"1m30s"}}`
	d := newWireDecoder[*rawHolder]("raws")
	want, bad := d.decode([]byte(in))
	if bad != nil {
		t.Fatal(bad.err)
	}
	got, bad := d.decodeCBOR(serverCBOR(t, in))
	if bad != nil {
		t.Fatal(bad.err)
	}
	same := func(what string, g, w []byte) {
		t.Helper()
		if !reflect.DeepEqual(jsonValue(t, string(g)), jsonValue(t, string(w))) {
			t.Errorf("%s: got %s, want %s", what, g, w)
		}
	}
	same("template", got.Spec.Template.Raw, want.Spec.Template.Raw)
	same("more", got.Spec.More[0].Raw, want.Spec.More[0].Raw)
	same("byName", got.Spec.ByName["n"].Inner.Raw, want.Spec.ByName["n"].Inner.Raw)
	same("fields", got.Spec.Fields.Raw, want.Spec.Fields.Raw)
	if got.Spec.Timeout != want.Spec.Timeout || got.Spec.Timeout.Duration.Seconds() != 90 {
		t.Errorf("timeout %v, want %v", got.Spec.Timeout, want.Spec.Timeout)
	}
}

func TestCBORListAndEvents(t *testing.T) {
	d := newWireDecoder[*widget]("widgets.demo.skiff.dev")
	list := map[string]any{"apiVersion": "demo.skiff.dev/v1", "kind": "WidgetList",
		"metadata": map[string]any{"resourceVersion": "42", "continue": "c1"},
		"items":    []any{jsonValue(t, widgetJSON("a", "1")), jsonValue(t, widgetJSON("bad", `"x"`)), jsonValue(t, widgetJSON("c", "3"))}}
	l, err := d.decodeListCBOR(serverCBOR(t, list))
	if err != nil {
		t.Fatal(err)
	}
	if l.ResourceVersion != "42" || l.Continue != "c1" || len(l.Items) != 3 {
		t.Fatalf("list rv %q continue %q items %d", l.ResourceVersion, l.Continue, len(l.Items))
	}
	if w, ok := l.Items[2].(*widget); !ok || w.Name != "c" || w.Spec.Size != 3 || w.ManagedFields != nil {
		t.Fatalf("item 2 = %#v", l.Items[2])
	}
	if u, ok := l.Items[1].(*undecoded); !ok || u.Name != "bad" {
		t.Fatalf("item 1 = %#v, want undecoded bad", l.Items[1])
	}
	if l, err := d.decodeListCBOR(serverCBOR(t, `{"metadata":{"resourceVersion":"1"},"items":null}`)); err != nil || len(l.Items) != 0 {
		t.Fatalf("null items: %v, %v", l, err)
	}

	ev, err := d.decodeEventCBOR(cborEvent(t, "MODIFIED", widgetJSON("a", "5")))
	if err != nil || ev.Type != watch.Modified || ev.Object.(*widget).Spec.Size != 5 {
		t.Fatalf("event %+v, %v", ev, err)
	}
	ev, err = d.decodeEventCBOR(cborEvent(t, "ERROR", `{"kind":"Status","apiVersion":"v1","status":"Failure","code":410,"reason":"Expired","message":"too old"}`))
	if err != nil || ev.Type != watch.Error || ev.Object.(*metav1.Status).Code != 410 {
		t.Fatalf("error event %+v, %v", ev, err)
	}
	for _, bad := range [][]byte{serverCBOR(t, `{"type":"ADDED"}`), serverCBOR(t, `{"type":5,"object":{}}`), {0x80}} {
		if _, err := d.decodeEventCBOR(bad); err == nil {
			t.Errorf("decodeEventCBOR(%x) succeeded", bad)
		}
	}
}

// cborEvent is a watch event as the server frames it: a tagged map whose
// object is itself a tagged map.
func cborEvent(t testing.TB, typ, objJSON string) []byte {
	obj := serverCBOR(t, objJSON)
	b := append([]byte{}, cborSelfDescribed...)
	b = append(b, 0xa2, 0x44)
	b = append(b, "type"...)
	b = appendHead(b, cborBytes, uint64(len(typ)))
	b = append(b, typ...)
	b = append(b, 0x46)
	b = append(b, "object"...)
	return append(b, obj...)
}

func TestWatchFramesSniffsTheEncoding(t *testing.T) {
	big := strings.Repeat("z", 100<<10) // larger than the initial buffer
	var events [][]byte
	for i, obj := range []string{widgetJSON("a", "1"), `{"metadata":{"name":"` + big + `"}}`, `{}`} {
		events = append(events, cborEvent(t, fmt.Sprint("T", i), obj))
	}
	stream := bytes.Join(events, nil)
	for _, r := range []io.Reader{bytes.NewReader(stream), oneByteReader{bytes.NewReader(stream)}} {
		w := newWatchFrames(r)
		for i, want := range events {
			got, err := w.next()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("frame %d: %d bytes, %v; want %d bytes", i, len(got), err, len(want))
			}
		}
		if _, err := w.next(); err != io.EOF || !w.cbor {
			t.Fatalf("after the last frame: %v (cbor %v), want EOF", err, w.cbor)
		}
	}
	if _, err := newWatchFrames(bytes.NewReader(stream[:len(stream)-1])).next(); err != nil {
		t.Fatalf("first frame of a truncated stream: %v", err)
	}
	w := newWatchFrames(bytes.NewReader(append(events[0], events[2][:5]...)))
	w.next()
	if _, err := w.next(); err != io.ErrUnexpectedEOF {
		t.Fatalf("truncated frame: %v, want unexpected EOF", err)
	}
	w = newWatchFrames(strings.NewReader(" {\"a\":1}\n{}"))
	if f, err := w.next(); err != nil || string(f) != `{"a":1}` || w.cbor {
		t.Fatalf("JSON stream: %q, %v, cbor %v", f, err, w.cbor)
	}
	if _, err := newWatchFrames(bytes.NewReader([]byte{0x1c})).next(); err == nil {
		t.Fatal("malformed CBOR accepted")
	}
}

func TestWireWatchDeliversCBOR(t *testing.T) {
	d := newWireDecoder[*widget]("widgets.demo.skiff.dev")
	var stream bytes.Buffer
	for i := range 3 {
		stream.Write(cborEvent(t, "ADDED", widgetJSON(fmt.Sprint("w", i), fmt.Sprint(i))))
	}
	w := startWireWatch(io.NopCloser(&stream), d.decodeAnyEvent, d.resource)
	var names []string
	for ev := range w.ResultChan() {
		names = append(names, ev.Object.(*widget).Name)
	}
	w.Stop()
	if strings.Join(names, ",") != "w0,w1,w2" {
		t.Fatalf("events %v", names)
	}
}

func TestIsCBOR(t *testing.T) {
	for _, c := range []struct {
		ct   string
		body []byte
		want bool
	}{
		{"application/cbor", nil, true},
		{"application/cbor-seq", nil, true},
		{"application/json", cborSelfDescribed, false},
		{"application/json; charset=utf-8", nil, false},
		{"", cborSelfDescribed, true},
		{"", []byte("{}"), false},
	} {
		if got := isCBOR(c.ct, c.body); got != c.want {
			t.Errorf("isCBOR(%q, %x) = %v", c.ct, c.body, got)
		}
	}
	if EncodingJSON.accept() != "application/json" || !strings.HasPrefix(EncodingAuto.accept(), "application/cbor,") {
		t.Fatalf("accept headers %q, %q", EncodingAuto.accept(), EncodingJSON.accept())
	}
}

// FuzzCBORDecode: the CBOR decode path never panics on any bytes, and for
// any JSON content it yields exactly what the JSON path yields for the same
// content (typed and unstructured; both fail or neither).
func FuzzCBORDecode(f *testing.F) {
	f.Add(widgetJSON("a", "1"), []byte(nil))
	f.Add(widgetJSON("b", `"x"`), []byte{0xa1, 0x48, 'm', 'e', 't', 'a', 'd', 'a', 't', 'a', 0xbf, 0xff})
	f.Add(`{"metadata":{"annotations":{"`+lastApplied+`":"x"},"labels":{"a":"b"}},"spec":{"size":1.5}}`, []byte{0xd9, 0xd9, 0xf7, 0xa0})
	f.Add(`{"metadata":{"managedFields":5,"name":"a","creationTimestamp":"2026-01-01T00:00:00Z"},"spec":{"tags":[null,"x"]}}`, []byte{0x5f, 0x41, 'a', 0xff})
	f.Add(`{"spec":{"size":1e30},"status":{"conditions":[{"lastTransitionTime":"x"}]}}`, []byte{0x9f, 0x9f})
	d := newWireDecoder[*widget]("widgets")
	du := newWireDecoder[*unstructured.Unstructured]("widgets")
	f.Fuzz(func(t *testing.T, in string, raw []byte) {
		// Any bytes: no panic, in every entry point.
		d.decodeCBOR(bytes.Clone(raw))
		du.decodeCBOR(bytes.Clone(raw))
		d.decodeListCBOR(bytes.Clone(raw))
		d.decodeEventCBOR(bytes.Clone(raw))
		for w := newWatchFrames(bytes.NewReader(raw)); ; {
			if _, err := w.next(); err != nil {
				break
			}
		}

		// The same content from JSON and from CBOR.
		var m map[string]any
		if kjson.UnmarshalCaseSensitivePreserveInts([]byte(in), &m) != nil || m == nil {
			return
		}
		// What the server holds: JSON numbers as int64 where integral.
		canon, err := json.Marshal(m)
		if err != nil {
			return
		}
		m = nil
		if err := kjson.UnmarshalCaseSensitivePreserveInts(canon, &m); err != nil {
			t.Fatal(err)
		}
		cb := serverCBOR(t, m)
		want, wbad := d.decode(bytes.Clone(canon))
		got, gbad := d.decodeCBOR(bytes.Clone(cb))
		if (wbad == nil) != (gbad == nil) {
			t.Fatalf("%s: JSON error %v, CBOR error %v", canon, errOf(wbad), errOf(gbad))
		}
		if wbad == nil && !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Fatalf("%s:\n got %+v\nwant %+v", canon, got, want)
		}
		uwant, wbad := du.decode(bytes.Clone(canon))
		ugot, gbad := du.decodeCBOR(bytes.Clone(cb))
		if (wbad == nil) != (gbad == nil) {
			t.Fatalf("%s: unstructured JSON error %v, CBOR error %v", canon, errOf(wbad), errOf(gbad))
		}
		if wbad == nil && !reflect.DeepEqual(ugot, uwant) {
			t.Fatalf("%s: unstructured\n got %v\nwant %v", canon, ugot, uwant)
		}
	})
}

func errOf(u *undecoded) error {
	if u == nil {
		return nil
	}
	return u.err
}
