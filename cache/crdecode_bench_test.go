package cache

import (
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/cbor"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
)

// BenchmarkCustomResourceDecode compares decoding one custom resource
// (widgetJSON: managedFields and last-applied included) into its Go struct:
// the wire decoder (JSON, cutting the skipped fields first), client-go's JSON
// serializer (everything decoded), and apimachinery's CBOR serializer (what
// a server with CBORServingAndStorage would send; everything decoded).
func BenchmarkCustomResourceDecode(b *testing.B) {
	gv := schema.GroupVersion{Group: "demo.skiff.dev", Version: "v1"}
	s := runtime.NewScheme()
	s.AddKnownTypeWithName(gv.WithKind("Widget"), &widget{})
	in := []byte(widgetJSON("a", "3"))
	jsonSer := json.NewSerializerWithOptions(json.DefaultMetaFactory, s, s, json.SerializerOptions{})
	obj, _, err := jsonSer.Decode(in, nil, &widget{})
	if err != nil {
		b.Fatal(err)
	}
	cborSer := cbor.NewSerializer(s, s)
	var cb bytesWriter
	if err := cborSer.Encode(obj, &cb); err != nil {
		b.Fatal(err)
	}
	d := newWireDecoder[*widget]("widgets")
	buf := make([]byte, len(in))
	b.Run("codec=wire-json", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			copy(buf, in)
			if _, bad := d.decode(buf); bad != nil {
				b.Fatal(bad.err)
			}
		}
	})
	b.Run("codec=clientgo-json", func(b *testing.B) {
		b.SetBytes(int64(len(in)))
		for b.Loop() {
			if _, _, err := jsonSer.Decode(in, nil, &widget{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("codec=apimachinery-cbor", func(b *testing.B) {
		b.SetBytes(int64(len(cb)))
		for b.Loop() {
			if _, _, err := cborSer.Decode(cb, nil, &widget{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type bytesWriter []byte

func (w *bytesWriter) Write(p []byte) (int, error) { *w = append(*w, p...); return len(p), nil }
