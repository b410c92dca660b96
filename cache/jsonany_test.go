package cache

import (
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "sigs.k8s.io/json"
)

// kjsonAny is what the fast path must match.
func kjsonAny(b []byte) (map[string]any, error) {
	var m map[string]any
	err := kjson.UnmarshalCaseSensitivePreserveInts(b, &m)
	return m, err
}

// checkJSONAny fails t if decodeJSONAny accepts b and decodes it other
// than kjson does. It returns whether the fast path took b.
func checkJSONAny(t *testing.T, b []byte) bool {
	t.Helper()
	got, ok := decodeJSONAny(b)
	if !ok {
		return false
	}
	want, err := kjsonAny(b)
	if err != nil {
		t.Fatalf("%q: the fast path decoded %s, kjson refuses: %v", b, jsonOf(t, got), err)
	}
	if !reflect.DeepEqual(got, want) || jsonOf(t, got) != jsonOf(t, want) {
		t.Fatalf("%q: fast path %s, kjson %s", b, jsonOf(t, got), jsonOf(t, want))
	}
	return true
}

// checkJSONAnyStripped fails t if decodeJSONObjectStripped accepts b and
// decodes it other than kjson decodes what stripJSONObject leaves of it.
func checkJSONAnyStripped(t *testing.T, b []byte) bool {
	t.Helper()
	orig := string(b)
	got, ok := decodeJSONObjectStripped(b)
	if string(b) != orig {
		t.Fatalf("%q: the fast path changed its input to %q", orig, b)
	}
	if !ok {
		return false
	}
	stripped, err := stripJSONObject(append([]byte(nil), b...))
	if err != nil {
		t.Fatalf("%q: the fast path decoded %s, stripping refuses: %v", b, jsonOf(t, got), err)
	}
	want, err := kjsonAny(stripped)
	if err != nil {
		t.Fatalf("%q: the fast path decoded %s, kjson refuses the stripped %q: %v", b, jsonOf(t, got), stripped, err)
	}
	if !reflect.DeepEqual(got, want) || jsonOf(t, got) != jsonOf(t, want) {
		t.Fatalf("%q: fast path %s, strip+kjson %s", b, jsonOf(t, got), jsonOf(t, want))
	}
	return true
}

func TestJSONAnyStripsAsStripJSONObject(t *testing.T) {
	la := LastAppliedAnnotation
	for _, in := range []string{
		`{"metadata":{"name":"a","managedFields":[{"manager":"m"}],"annotations":{"` + la + `":"{\"x\":1}"}}}`,
		`{"metadata":{"name":"a","managedFields":null,"annotations":{"` + la + `":"x","keep":"y"}}}`,
		`{"metadata":{"annotations":{"` + la + `":1}}}`,
		`{"metadata":{"annotations":{}}}`,
		`{"metadata":{"annotations":null,"managedFields":7}}`,
		`{"metadata":"not an object","spec":{"metadata":{"managedFields":[]}}}`,
		`{"spec":{"annotations":{"` + la + `":"x"}},"metadata":{"labels":{"managedFields":"x"}}}`,
		string(fooJSON(3)),
	} {
		if !checkJSONAnyStripped(t, []byte(in)) {
			t.Errorf("%.80q: the fast path refused it", in)
		}
	}
	for _, in := range []string{
		`{"metadata":{"managedFields":[}}`,                 // invalid where it is skipped
		`{"metadata":{"annotations":{"` + la + `":"\q"}}}`, // invalid escape in the skipped string
		`{"metadata":{"name":"a","name":"b"}}`,
	} {
		if checkJSONAnyStripped(t, []byte(in)) {
			t.Errorf("%q: the fast path took it", in)
		}
	}
}

func TestJSONAnyMatchesKJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		fast bool // the fast path takes it (else it falls back)
	}{
		{`{}`, true},
		{` {"a":1} `, true},
		{`{"a":1,"b":-0,"c":-0.0,"d":1e2,"e":1.5E-3,"f":9223372036854775807,"g":9223372036854775808,"h":-9223372036854775809}`, true},
		{`{"s":"plain","u":"ünïcödé","esc":"a\"b\\c\n\u00e9","empty":""}`, true},
		{`{"t":true,"f":false,"n":null,"arr":[],"obj":{},"nested":[[1,[2,{"x":[null]}]],{"y":{}}]}`, true},
		{`{"metadata":{"name":"a","labels":{"k":"v"}},"spec":{"replicas":3,"ratio":0.25}}`, true},
		{"{\"a\" : [ 1 , 2 ]\t,\n\"b\"\r:{ } }", true},
		{`{"a":1,"a":2}`, false},           // named twice: kjson keeps the last
		{`{"\u0061":1}`, false},            // escaped name
		{`{"a":1e400}`, false},             // kjson refuses
		{`{"a":01}`, false},                // invalid
		{`{"a":tru}`, false},               // invalid
		{`{"a":1,}`, false},                // invalid
		{`{"a":"x` + "\x01" + `"}`, false}, // control character
		{`{"a":1} x`, false},
		{`[1]`, false},
		{`null`, false},
		{`{"a":` + strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1) + `}`, false},
	} {
		if took := checkJSONAny(t, []byte(tc.in)); took != tc.fast {
			t.Errorf("%.60q: fast path took it: %v, want %v", tc.in, took, tc.fast)
		}
	}
}

// FuzzJSONAny: whatever the fast path accepts, kjson decodes the same.
func FuzzJSONAny(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":[1,-0,0.5,1e2,"s\n",null,true,false,{"b":{}}]}`,
		`{"metadata":{"name":"x","labels":{"a":"b"}},"spec":{"n":9223372036854775808}}`,
		`{"a":"\ud800","b":"\xff"}`, `{"a":1,"a":2}`,
	} {
		f.Add([]byte(s))
	}
	f.Add(fooJSON(1))
	f.Add([]byte(`{"metadata":{"managedFields":[],"annotations":{"` + LastAppliedAnnotation + `":"x"}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkJSONAny(t, b)
		checkJSONAnyStripped(t, b)
	})
}

// BenchmarkJSONAnyDecode: a Foo as I5 serves it into unstructured, by
// kjson and by the fast path (both on stripped bytes), and by the wire
// decoder (the fast path cutting managedFields and the last-applied
// annotation as it reads) alone and followed by interning, as the
// informer runs them.
func BenchmarkJSONAnyDecode(b *testing.B) {
	const n = 2000
	raw, objs, size := fooWire(b, n)
	b.Run("decoder=kjson", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			for _, o := range objs {
				if _, err := kjsonAny(o); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("decoder=fast", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			for _, o := range objs {
				if _, ok := decodeJSONAny(o); !ok {
					b.Fatal("fast path refused a Foo")
				}
			}
		}
	})
	d := newWireDecoder[*unstructured.Unstructured]("foos")
	buf := make([][]byte, n)
	b.Run("decoder=strip+kjson", func(b *testing.B) { // the wire decoder's path before jsonany.go
		b.SetBytes(int64(size))
		for b.Loop() {
			for i, o := range raw {
				buf[i] = append(buf[i][:0], o...)
				s, err := stripJSONObject(buf[i])
				if err != nil {
					b.Fatal(err)
				}
				if _, err := kjsonAny(s); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("decoder=wire", func(b *testing.B) {
		b.SetBytes(int64(size))
		for b.Loop() {
			for i, o := range raw {
				buf[i] = append(buf[i][:0], o...)
				if _, bad := d.decode(buf[i]); bad != nil {
					b.Fatal(bad.err)
				}
			}
		}
	})
	b.Run("decoder=wire+intern", func(b *testing.B) {
		b.SetBytes(int64(size))
		in := newInterner()
		for b.Loop() {
			for i, o := range raw {
				buf[i] = append(buf[i][:0], o...)
				u, bad := d.decode(buf[i])
				if bad != nil {
					b.Fatal(bad.err)
				}
				in.object(u, false)
			}
		}
	})
}
