package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
)

// richCR is a custom resource with a field of every kind the fast path
// decodes, delegates or refuses.
type richCR struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              richSpec    `json:"spec"`
	Status            *richStatus `json:"status,omitempty"`
}

func (r *richCR) DeepCopyObject() runtime.Object { c := *r; return &c }

type richSpec struct {
	RichEmbedded
	Message    string                                    `json:"message"`
	Fail       bool                                      `json:"fail,omitempty"`
	Size       *int32                                    `json:"size,omitempty"`
	Small      int8                                      `json:"small"`
	Port       uint16                                    `json:"port"`
	Count      uint                                      `json:"count"`
	Big        int64                                     `json:"big"`
	Ratio      float32                                   `json:"ratio"`
	Weight     float64                                   `json:"weight"`
	Mode       richMode                                  `json:"mode"`
	Tags       []string                                  `json:"tags"`
	Matrix     [][]int                                   `json:"matrix"`
	Labels     map[string]string                         `json:"labels"`
	Limits     map[corev1.ResourceName]resource.Quantity `json:"limits"`
	ByName     map[string]*richNested                    `json:"byName"`
	IntKeys    map[int]string                            `json:"intKeys"`
	Quantity   resource.Quantity                         `json:"quantity"`
	QPtr       *resource.Quantity                        `json:"qptr"`
	When       metav1.Time                               `json:"when"`
	WhenPtr    *metav1.Time                              `json:"whenPtr"`
	Target     intstr.IntOrString                        `json:"target"`
	Ext        runtime.RawExtension                      `json:"ext"`
	Any        any                                       `json:"any"`
	AnyMap     map[string]any                            `json:"anyMap"`
	Raw        []byte                                    `json:"raw"`
	Pair       [2]int                                    `json:"pair"`
	Nested     richNested                                `json:"nested"`
	Items      []richNested                              `json:"items"`
	PtrItems   []*richNested                             `json:"ptrItems"`
	Text       richText                                  `json:"text"`
	TextPtr    *richText                                 `json:"textPtr"`
	Custom     richCustom                                `json:"custom"`
	Tree       *richTree                                 `json:"tree"`
	Conditions []metav1.Condition                        `json:"conditions"`
	Num        json.Number                               `json:"num"`
	Hidden     string                                    `json:"-"`
	Dash       string                                    `json:"-,"`
	NoTag      string
	Inline     string `json:",omitempty"`
	ignored    string //nolint:unused // unexported: never decoded
}

type RichEmbedded struct {
	Zone string `json:"zone"`
}

type richStatus struct {
	Phase string `json:"phase"`
	Seen  int64  `json:"seen"`
}

type richNested struct {
	Name  string   `json:"name"`
	Value *float64 `json:"value"`
	Flags []bool   `json:"flags"`
}

type richMode string

type richTree struct {
	Name     string      `json:"name"`
	Children []*richTree `json:"children"`
}

// richText is decoded by UnmarshalText (kjson calls it for strings).
type richText struct{ Upper string }

func (t *richText) UnmarshalText(b []byte) error {
	if string(b) == "bad" {
		return errors.New("bad text")
	}
	t.Upper = strings.ToUpper(string(b))
	return nil
}

// richCustom records the bytes UnmarshalJSON was given.
type richCustom struct{ Raw string }

func (c *richCustom) UnmarshalJSON(b []byte) error {
	if string(b) == `"fail"` {
		return errors.New("custom failure")
	}
	c.Raw = string(b)
	return nil
}

// fastVsKjson decodes in into a zero T with the fast path and with kjson;
// when the fast path says ok, kjson must accept in and decode the same T.
func fastVsKjson[T any](t testing.TB, in string) bool {
	t.Helper()
	var got, want T
	ok := decodeJSONStruct(jsonPlanFor(reflect.TypeFor[T]()), []byte(in), unsafe.Pointer(&got))
	err := kjson.UnmarshalCaseSensitivePreserveInts([]byte(in), &want)
	if ok {
		if err != nil {
			t.Fatalf("fast path accepts %q, kjson: %v", in, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nfast  %#v\nkjson %#v", in, got, want)
		}
	}
	return ok
}

const richBase = `{"apiVersion":"demo.skiff.dev/v1","kind":"Rich","metadata":{"name":"r","namespace":"ns","uid":"u-1",` +
	`"resourceVersion":"12","generation":3,"creationTimestamp":"2026-01-02T03:04:05Z","labels":{"a":"b","c":"d"},` +
	`"annotations":{"x":"y"},"ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"cm","uid":"u-2","controller":true}],` +
	`"finalizers":["f"]},"spec":%s,"status":{"phase":"Ready","seen":7}}`

func rich(spec string) string { return fmt.Sprintf(richBase, spec) }

// TestJSONStructRules: each rule of the fast path, against kjson.
func TestJSONStructRules(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"empty object", `{}`, true},
		{"white space around", " \n{ \"kind\" : \"K\" } \t", true},
		{"realistic", rich(`{"zone":"z1","message":"hi","fail":true,"size":3,"small":-128,"port":65535,"count":0,` +
			`"big":-9223372036854775808,"ratio":1.5,"weight":-2.5e-3,"mode":"fast","tags":["a","b"],"matrix":[[1,2],[],[3]],` +
			`"labels":{"k":"v"},"limits":{"cpu":"100m","memory":"1Gi"},"byName":{"x":{"name":"x","value":1},"y":null},` +
			`"intKeys":{"1":"one"},"quantity":"2","qptr":"3Mi","when":"2026-01-02T03:04:05Z","whenPtr":"2026-01-02T03:04:05+02:00",` +
			`"target":8080,"ext":{"any":["thing",1]},"any":{"n":1,"f":1.5,"l":[true,null]},"anyMap":{"i":12345678901234},` +
			`"raw":"aGVsbG8=","pair":[1,2],"nested":{"name":"n","flags":[true,false]},"items":[{"name":"i"},{}],` +
			`"ptrItems":[null,{"name":"p"}],"text":"up","textPtr":"ptr","custom": {"raw" : [1, 2]} ,` +
			`"tree":{"name":"root","children":[{"name":"leaf","children":[]}]},` +
			`"conditions":[{"type":"Ready","status":"True","lastTransitionTime":"2026-01-02T03:04:05Z","reason":"R","message":"m"}],` +
			`"Hidden":"no","-":"dash","NoTag":"nt","Inline":"in","ignored":"no"}`), true},
		{"unknown members are skipped", `{"nope":{"a":[1,2,{"b":null}]},"kind":"K","also":"x"}`, true},
		{"names are case-sensitive", `{"Kind":"K","KIND":"L","spec":{"Message":"m"}}`, true},
		{"escapes in a string", `{"kind":"a\"b\\c\n\u00e9\ud83d\ude00"}`, true},
		{"unicode", `{"kind":"héllo wörld ☃"}`, true},
		{"invalid UTF-8 becomes U+FFFD", "{\"kind\":\"a\xffb\"}", true},
		{"invalid UTF-8 map key", "{\"metadata\":{\"labels\":{\"a\xff\":\"b\"}}}", false},
		{"escaped member name", `{"\u006bind":"K"}`, false},
		{"nulls are no-ops", rich(`{"message":null,"fail":null,"size":null,"small":null,"ratio":null,"tags":null,` +
			`"labels":null,"limits":null,"qptr":null,"whenPtr":null,"any":null,"raw":null,"nested":null,"items":null,"textPtr":null,"tree":null}`), true},
		{"null labels value", `{"metadata":{"labels":{"a":null}}}`, true},
		{"null for a value json.Unmarshaler", rich(`{"when":null}`), true}, // UnmarshalJSON("null"), as kjson
		{"null for a value Quantity", rich(`{"quantity":null}`), true},
		{"null for a value IntOrString", rich(`{"target":null}`), true},
		{"json.Number from a number", rich(`{"num":12.5e3}`), true},
		{"json.Number from a valid string", rich(`{"num":"42"}`), true},
		{"json.Number from an invalid string", rich(`{"num":"abc"}`), false}, // kjson: invalid number literal (found by review)
		{"json.Number from an empty string", rich(`{"num":""}`), false},
		{"empty slices and maps", rich(`{"tags":[],"labels":{},"matrix":[[]],"byName":{},"items":[]}`), true},
		{"integer with a fraction", rich(`{"small":1.0}`), false},
		{"integer with an exponent", rich(`{"big":1e3}`), false},
		{"int8 overflow", rich(`{"small":128}`), false},
		{"int64 overflow", rich(`{"big":9223372036854775808}`), false},
		{"negative uint", rich(`{"port":-1}`), false},
		{"uint16 overflow", rich(`{"port":65536}`), false},
		{"-0 int", rich(`{"big":-0}`), true},
		{"float32 overflow", rich(`{"ratio":1e39}`), false},
		{"float64 overflow", rich(`{"weight":1e400}`), false},
		{"float64 underflow", rich(`{"weight":1e-400}`), true},
		{"big integer float", rich(`{"weight":123456789012345678901234567890}`), true},
		{"big integer into any", rich(`{"any":123456789012345678901234567890}`), true},
		{"string into int", rich(`{"small":"1"}`), false},
		{"number into string", `{"kind":1}`, false},
		{"bool into string", `{"kind":true}`, false},
		{"object into string", `{"kind":{}}`, false},
		{"array into struct", rich(`[]`), false},
		{"string into map", `{"metadata":{"labels":"x"}}`, false},
		{"number into labels value", `{"metadata":{"labels":{"a":1}}}`, false},
		{"duplicate member", `{"kind":"a","kind":"b"}`, false},
		{"duplicate nested member", rich(`{"message":"a","message":"b"}`), false},
		{"duplicate embedded member", rich(`{"zone":"a","zone":"b"}`), false},
		{"duplicate label", `{"metadata":{"labels":{"a":"1","a":"2"}}}`, false},
		{"duplicate map key", rich(`{"byName":{"x":{},"x":null}}`), false},
		{"duplicate unknown member", `{"u":1,"u":2,"kind":"K"}`, true},
		{"duplicate inside a delegated value", rich(`{"any":{"a":1,"a":2}}`), true},
		{"bad base64", rich(`{"raw":"!!"}`), false},
		{"bad quantity", rich(`{"quantity":"abc"}`), false},
		{"bad time", rich(`{"when":"yesterday"}`), false},
		{"UnmarshalText error", rich(`{"text":"bad"}`), false},
		{"UnmarshalText given a number", rich(`{"text":1}`), false},
		{"UnmarshalJSON error", rich(`{"custom":"fail"}`), false},
		{"UnmarshalJSON given a literal", rich(`{"custom":true}`), true},
		{"IntOrString string", rich(`{"target":"http"}`), true},
		{"trailing data", `{"kind":"K"} x`, false},
		{"two objects", `{}{}`, false},
		{"top-level null", `null`, false},
		{"top-level array", `[]`, false},
		{"empty input", ``, false},
		{"truncated", `{"kind":"K"`, false},
		{"truncated string", `{"kind":"K`, false},
		{"missing colon", `{"kind" "K"}`, false},
		{"trailing comma", `{"kind":"K",}`, false},
		{"bad literal", rich(`{"fail":tru}`), false},
		{"literal run-on", rich(`{"fail":truex}`), false},
		{"leading zero", rich(`{"big":01}`), false},
		{"bare minus", rich(`{"big":-}`), false},
		{"control character in string", "{\"kind\":\"a\tb\"}", false},
		{"invalid JSON in a skipped member", `{"u":[1,],"kind":"K"}`, false},
		{"invalid escape", `{"kind":"\x"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fastVsKjson[richCR](t, tc.in); got != tc.ok {
				t.Errorf("fast path ok = %v, want %v for %s", got, tc.ok, tc.in)
			}
		})
	}
}

// TestJSONStructUnmarshalerBytes: UnmarshalJSON gets the value's bytes
// exactly, without the white space around them.
func TestJSONStructUnmarshalerBytes(t *testing.T) {
	var r richCR
	in := rich(`{"custom":  { "a" : [ 1 ] }  }`)
	if !decodeJSONStruct(jsonPlanFor(reflect.TypeFor[richCR]()), []byte(in), unsafe.Pointer(&r)) {
		t.Fatal("fast path refused")
	}
	if r.Spec.Custom.Raw != `{ "a" : [ 1 ] }` {
		t.Fatalf("UnmarshalJSON got %q", r.Spec.Custom.Raw)
	}
}

// TestJSONStructDepth: nesting is bounded like kjson's, whether the fast
// path decodes, skips or delegates the deep part.
func TestJSONStructDepth(t *testing.T) {
	nest := func(n int, open, inner, closing string) string {
		return strings.Repeat(open, n) + inner + strings.Repeat(closing, n)
	}
	tree := func(n int) string { return nest(n, `{"children":[`, `{}`, `]}`) }
	for _, tc := range []struct {
		name, in string
		ok       bool
	}{
		{"tree within bound", rich(`{"tree":` + tree(100) + `}`), true},
		{"tree beyond bound", rich(`{"tree":` + tree(maxJSONDepth/2) + `}`), false},
		{"skipped beyond bound", `{"u":` + nest(maxJSONDepth, "[", "", "]") + `}`, false},
		{"skipped at bound", `{"u":` + nest(maxJSONDepth-1, "[", "", "]") + `}`, true},
		{"delegated beyond bound", rich(`{"any":` + nest(maxJSONDepth-1, "[", "", "]") + `}`), false},
		{"delegated at bound", rich(`{"any":` + nest(maxJSONDepth-2, "[", "", "]") + `}`), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := fastVsKjson[richCR](t, tc.in); got != tc.ok {
				t.Errorf("fast path ok = %v, want %v", got, tc.ok)
			}
		})
	}
}

// Types whose field naming the plan leaves to kjson.
type (
	conflictA  struct{ Name string }
	conflictB  struct{ Name string }
	conflictCR struct { // v1 drops both "name" fields
		conflictA0
		conflictB0
		Kind string `json:"kind"`
	}
	conflictA0 = conflictA
	conflictB0 = conflictB

	ptrEmbedCR struct {
		metav1.TypeMeta    `json:",inline"`
		*metav1.ObjectMeta `json:"metadata,omitempty"`
	}
	quotedCR struct {
		N int `json:"n,string"`
	}
	badTagCR struct {
		N int `json:"a\\b"`
	}
	// promoted is unnamed and gets UnmarshalJSON from metav1.Time: kjson
	// decodes it field by field in place, but calls the method alone.
	promotedCR struct {
		At struct{ metav1.Time } `json:"at"`
	}
)

func (r *ptrEmbedCR) DeepCopyObject() runtime.Object { c := *r; return &c }

func TestJSONStructUnsupported(t *testing.T) {
	for _, tc := range []struct {
		name string
		typ  reflect.Type
		in   string
	}{
		{"name conflict between embeds", reflect.TypeFor[conflictCR](), `{"Name":"n","kind":"K"}`},
		{"embedded pointer", reflect.TypeFor[ptrEmbedCR](), `{"kind":"K","metadata":{"name":"n"}}`},
		{",string option", reflect.TypeFor[quotedCR](), `{"n":"5"}`},
		{"tag name v1 rejects", reflect.TypeFor[badTagCR](), `{"N":5}`},
		{"unnamed type with promoted UnmarshalJSON", reflect.TypeFor[promotedCR](), `{"at":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := jsonPlanFor(tc.typ)
			if tc.typ == reflect.TypeFor[promotedCR]() {
				if f := p.fields["at"]; p.kind != jsonDelegate && (f == nil || f.plan.kind != jsonUnsupported) {
					t.Fatalf("plan kind %v, field plan %+v", p.kind, f)
				}
			}
			if p.kind == jsonStruct && p.fields["at"] == nil {
				t.Fatalf("%v got a struct plan", tc.typ)
			}
			v := reflect.New(tc.typ)
			if decodeJSONStruct(p, []byte(tc.in), v.UnsafePointer()) {
				t.Fatalf("fast path decoded %v", tc.typ)
			}
		})
	}
	// Nested in a supported struct, such a struct is delegated to kjson.
	type outer struct {
		C conflictCR `json:"c"`
		Q quotedCR   `json:"q"`
	}
	if !fastVsKjson[outer](t, `{"c":{"Name":"n","kind":"K"},"q":{"n":"5"}}`) {
		t.Fatal("fast path refused delegated structs")
	}
}

// TestWireDecoderFallback: objects the fast path refuses still decode
// through wireDecoder exactly as kjson decodes them.
func TestWireDecoderFallback(t *testing.T) {
	d := newWireDecoder[*richCR]("riches")
	if d.fast == nil {
		t.Fatal("richCR has no fast plan")
	}
	for _, in := range []string{
		rich(`{"message":"a","message":"b","labels":{"x":"1"}}`),            // duplicate: kjson keeps the last
		`{"metadata":{"labels":{"a":"1"}},"metadata":{"labels":{"b":"2"}}}`, // duplicate: kjson merges
		rich(`{"when":null,"quantity":null}`),                               // null Unmarshalers
		`{"\u006bind":"K","metadata":{"name":"n"}}`,                         // escaped name
		rich(`{"weight":1e400}`),                                            // kjson's type error
	} {
		want := &richCR{}
		wantErr := kjson.UnmarshalCaseSensitivePreserveInts([]byte(in), want)
		got, bad := d.decode([]byte(in))
		switch {
		case wantErr != nil && bad == nil:
			t.Errorf("%s: kjson fails (%v), wire decoder does not", in, wantErr)
		case wantErr != nil && !strings.Contains(bad.err.Error(), wantErr.Error()):
			t.Errorf("%s: error %v, want kjson's %v", in, bad.err, wantErr)
		case wantErr == nil && bad != nil:
			t.Errorf("%s: %v", in, bad.err)
		case wantErr == nil && !reflect.DeepEqual(got, want):
			t.Errorf("%s:\n got %#v\nwant %#v", in, got, want)
		}
	}
	dp := newWireDecoder[*ptrEmbedCR]("ptrs")
	if dp.fast != nil {
		t.Fatal("ptrEmbedCR got a fast plan")
	}
	got, bad := dp.decode([]byte(`{"kind":"K","metadata":{"name":"n"}}`))
	if bad != nil || got.ObjectMeta == nil || got.Name != "n" || got.Kind != "K" {
		t.Fatalf("got %+v, %v", got, bad)
	}
}

func FuzzJSONStruct(f *testing.F) {
	f.Add(rich(`{"message":"hi","size":3,"labels":{"k":"v"},"limits":{"cpu":"1"},"when":"2026-01-02T03:04:05Z","target":"x"}`))
	f.Add(string(fooJSON(7)))
	f.Add(widgetJSON("a", "3"))
	f.Add(rich(`{"tags":["a\u0000b","\ud800"],"any":{"a":[1,2.5,-0,1e400]},"raw":"AA==","matrix":[[1],[2,3]]}`))
	f.Add(rich(`{"byName":{"a":{"value":1.5,"flags":[true]},"b":null},"ptrItems":[null,{}],"tree":{"children":[{"children":null}]}}`))
	f.Add(rich(`{"small":127,"port":65535,"count":18446744073709551615,"big":-9223372036854775808,"ratio":3.4e38}`))
	f.Add(rich(`{"text":"t","textPtr":null,"custom":[1,{"a":2}],"ext":null,"qptr":"1Ki","whenPtr":null}`))
	f.Add("{\"kind\":\"\xff\xfe\",\"metadata\":{\"name\":\"\\u00e9\"}}")
	f.Add(`{"kind":"a","kind":"b","metadata":{"labels":{"x":"1","x":"2"}}}`)
	f.Add(`{"spec":{"when":null,"quantity":null,"pair":[1,2,3],"intKeys":{"x":"y"}}}`)
	f.Add(`{"spec":{"small":1.5,"big":1e2,"weight":1e999,"port":-1}}`)
	f.Add(`{"spec":{"tree":` + strings.Repeat(`{"children":[`, 50) + strings.Repeat(`]}`, 50) + `}}`)
	f.Add(`{"metadata":{"managedFields":[{"manager":"m"}],"annotations":{"` + LastAppliedAnnotation + `":"{}"}}}`)
	f.Add(`{"metadata":{"managedFields":5,"annotations":{"a":"b","` + LastAppliedAnnotation + `":null}}}`)
	f.Fuzz(func(t *testing.T, in string) {
		fastVsKjson[richCR](t, in)
		fastVsKjson[fooCR](t, in)
		wireVsStrip[richCR](t, in)
		wireVsStrip[fooCR](t, in)
	})
}

// TestJSONPlanKinds: the rich type's fields get the plans the rules say
// (so the table above exercises the fast path, not kjson).
func TestJSONPlanKinds(t *testing.T) {
	p := jsonPlanFor(reflect.TypeFor[richCR]())
	spec := p.fields["spec"].plan
	want := map[*jsonPlan]map[string]jsonKind{
		p:                         {"kind": jsonString, "apiVersion": jsonString, "metadata": jsonStruct, "spec": jsonStruct, "status": jsonPointer},
		p.fields["metadata"].plan: {"labels": jsonStringMap, "creationTimestamp": jsonUnmarshaler, "ownerReferences": jsonSlice, "generation": jsonInt},
		spec: {
			"zone": jsonString, "message": jsonString, "fail": jsonBool, "size": jsonPointer, "small": jsonInt, "port": jsonUint,
			"ratio": jsonFloat, "mode": jsonString, "tags": jsonSlice, "labels": jsonStringMap, "limits": jsonMap, "byName": jsonMap,
			"intKeys": jsonDelegate, "quantity": jsonUnmarshaler, "qptr": jsonPointer, "when": jsonUnmarshaler, "target": jsonUnmarshaler,
			"ext": jsonUnmarshaler, "any": jsonDelegate, "anyMap": jsonMap, "raw": jsonDelegate, "pair": jsonDelegate, "nested": jsonStruct,
			"text": jsonDelegate, "custom": jsonUnmarshaler, "tree": jsonPointer, "-": jsonString, "NoTag": jsonString, "Inline": jsonString,
		},
	}
	for plan, fields := range want {
		for name, k := range fields {
			if f := plan.fields[name]; f == nil || f.plan.kind != k {
				t.Errorf("%v field %q: plan %+v, want kind %d", plan.typ, name, f, k)
			}
		}
	}
	for _, name := range []string{"Hidden", "ignored", "TypeMeta", "ObjectMeta", "RichEmbedded"} {
		if spec.fields[name] != nil || p.fields[name] != nil {
			t.Errorf("field %q has a plan", name)
		}
	}
}

// TestPlainRun: the eight-bytes-at-a-time scan agrees with a byte-by-byte
// one, for every stop byte at every offset, and on random bytes.
func TestPlainRun(t *testing.T) {
	naive := func(b []byte, i int) (int, bool) {
		high := false
		for ; i < len(b); i++ {
			if c := b[i]; c < 0x20 || c == '"' || c == '\\' {
				break
			} else if c >= 0x80 {
				high = true
			}
		}
		return i, high
	}
	check := func(b []byte, i int) {
		t.Helper()
		gj, gh := plainRun(b, i)
		wj, wh := naive(b, i)
		if gj != wj || gh != wh {
			t.Fatalf("plainRun(%q, %d) = %d, %v; want %d, %v", b, i, gj, gh, wj, wh)
		}
	}
	for n := range 20 {
		for pos := range n {
			for c := range 256 {
				for _, fill := range []byte{'a', 0xc3, 0x7f, 0x20, 0xff} {
					b := bytes.Repeat([]byte{fill}, n)
					b[pos] = byte(c)
					check(b, 0)
					check(b, pos/2)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, r.IntN(40))
		for k := range b {
			b[k] = byte(r.IntN(256))
			if r.IntN(3) > 0 {
				b[k] = 'a' + byte(r.IntN(26))
			}
		}
		check(b, 0)
	}
}

// wireVsStrip decodes in into a zero T with T's wire plan, and as the
// custom-resource decoder does without it: stripJSONObject (on a copy),
// then kjson. When the wire plan says ok, the two must agree.
func wireVsStrip[T any](t testing.TB, in string) bool {
	t.Helper()
	var got, want T
	ok := decodeJSONStruct(wirePlanFor(reflect.TypeFor[T]()), []byte(in), unsafe.Pointer(&got))
	b, err := stripJSONObject([]byte(in))
	if err != nil {
		b = []byte(in)
	}
	err = kjson.UnmarshalCaseSensitivePreserveInts(b, &want)
	if ok {
		if err != nil {
			t.Fatalf("wire plan accepts %q, strip and kjson: %v", in, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nwire plan       %#v\nstrip and kjson %#v", in, got, want)
		}
	}
	return ok
}

// TestWirePlanStrips: the wire plan drops what stripJSONObject cuts.
func TestWirePlanStrips(t *testing.T) {
	la := `"` + LastAppliedAnnotation + `"`
	for _, tc := range []struct {
		name, in string
		ok       bool
		annot    map[string]string
	}{
		{"only last-applied", `{"metadata":{"name":"n","annotations":{` + la + `:"{\"a\":1}"}}}`, true, nil},
		{"last-applied among others", `{"metadata":{"annotations":{"a":"1",` + la + `:"x","b":"2"}}}`, true, map[string]string{"a": "1", "b": "2"}},
		{"last-applied null is kept", `{"metadata":{"annotations":{` + la + `:null}}}`, true, map[string]string{LastAppliedAnnotation: ""}},
		{"last-applied number", `{"metadata":{"annotations":{` + la + `:1}}}`, false, nil},
		{"empty annotations stay", `{"metadata":{"annotations":{}}}`, true, map[string]string{}},
		{"managedFields of any type", `{"metadata":{"managedFields":{"x":[1]},"name":"n"}}`, true, nil},
		{"managedFields invalid", `{"metadata":{"managedFields":[1,],"name":"n"}}`, false, nil},
		{"escaped managedFields", `{"metadata":{"\u006danagedFields":[]}}`, false, nil},
		{"last-applied invalid string", `{"metadata":{"annotations":{` + la + `:"\q"}}}`, false, nil},
		{"annotations without last-applied", rich(`{"nested":{"name":"x"}}`), true, map[string]string{"x": "y"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := wireVsStrip[richCR](t, tc.in); got != tc.ok {
				t.Fatalf("wire plan ok = %v, want %v", got, tc.ok)
			}
			if !tc.ok {
				return
			}
			var r richCR
			decodeJSONStruct(wirePlanFor(reflect.TypeFor[richCR]()), []byte(tc.in), unsafe.Pointer(&r))
			if r.ManagedFields != nil || !reflect.DeepEqual(r.Annotations, tc.annot) {
				t.Fatalf("managedFields %v, annotations %#v, want %#v", r.ManagedFields, r.Annotations, tc.annot)
			}
		})
	}
	// The plain plan of the same type keeps them.
	var r richCR
	in := `{"metadata":{"managedFields":[{"manager":"m"}],"annotations":{` + la + `:"x"}}}`
	if !fastVsKjson[richCR](t, in) || !decodeJSONStruct(jsonPlanFor(reflect.TypeFor[richCR]()), []byte(in), unsafe.Pointer(&r)) ||
		len(r.ManagedFields) != 1 || r.Annotations[LastAppliedAnnotation] != "x" {
		t.Fatalf("plain plan: %+v", r.ObjectMeta)
	}
	// A "metadata" of another type: no wire plan.
	type otherMeta struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	if wirePlanFor(reflect.TypeFor[otherMeta]()) != nil {
		t.Fatal("wire plan for a metadata that is not ObjectMeta")
	}
}
