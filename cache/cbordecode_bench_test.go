package cache

import (
	"bytes"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/cbor"
)

// BenchmarkCustomResourceDecodeCBOR: one custom resource (widgetJSON:
// managedFields and last-applied included) as the server sends it in JSON
// and in CBOR, decoded per object by the wire decoder into the typed struct
// and into unstructured (both cut the skipped fields from the bytes first),
// and by apimachinery's CBOR serializer (everything decoded) for reference.
func BenchmarkCustomResourceDecodeCBOR(b *testing.B) {
	in := []byte(widgetJSON("a", "3"))
	cb := serverCBOR(b, string(in))
	typed := newWireDecoder[*widget]("widgets")
	untyped := newWireDecoder[*unstructured.Unstructured]("widgets")
	buf := make([]byte, max(len(in), len(cb)))
	run := func(name string, src []byte, decode func([]byte) *undecoded) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				n := copy(buf, src) // decoding cuts in place
				if bad := decode(buf[:n]); bad != nil {
					b.Fatal(bad.err)
				}
			}
		})
	}
	run("into=typed/wire=json", in, func(p []byte) *undecoded { _, bad := typed.decode(p); return bad })
	run("into=typed/wire=cbor", cb, func(p []byte) *undecoded { _, bad := typed.decodeCBOR(p); return bad })
	run("into=unstructured/wire=json", in, func(p []byte) *undecoded { _, bad := untyped.decode(p); return bad })
	run("into=unstructured/wire=cbor", cb, func(p []byte) *undecoded { _, bad := untyped.decodeCBOR(p); return bad })

	gv := schema.GroupVersion{Group: "demo.skiff.dev", Version: "v1"}
	s := runtime.NewScheme()
	s.AddKnownTypeWithName(gv.WithKind("Widget"), &widget{})
	ser := cbor.NewSerializer(s, s)
	b.Run("into=typed/wire=cbor/apimachinery", func(b *testing.B) {
		b.SetBytes(int64(len(cb)))
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := ser.Decode(cb, nil, &widget{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	if !bytes.HasPrefix(cb, cborSelfDescribed) {
		b.Fatal("server CBOR without its tag")
	}
}
