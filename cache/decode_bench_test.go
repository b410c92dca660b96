package cache

import (
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

// BenchmarkDecodePods decodes 2000 realistic pods from enveloped protobuf
// the way an informer does, keeps them, and reports the live heap they
// hold per pod (after two GCs) and the decode time per pod:
//
//	mode=full:        decode everything, then DefaultTransform (before this change)
//	mode=lean:        managedFields and last-applied cut on the wire, then DefaultTransform
//	mode=lean+intern: lean, and strings shared through the informer's interner
func BenchmarkDecodePods(b *testing.B) {
	const n = 2000
	raws := make([][]byte, n)
	for i := range raws {
		raws[i] = encodeProtobuf(b, realisticPod(i))
	}
	full := scheme.Codecs.WithoutConversion()
	lean := newLeanCodecs(full, podKinds)
	decoder := func(ns kruntime.NegotiatedSerializer) kruntime.Decoder {
		info, _ := kruntime.SerializerInfoForMediaType(ns.SupportedMediaTypes(), kruntime.ContentTypeProtobuf)
		return ns.DecoderToVersion(info.Serializer, schema.GroupVersion{Version: "v1"})
	}
	for _, m := range []struct {
		name   string
		dec    kruntime.Decoder
		intern bool
	}{
		{"full", decoder(full), false},
		{"lean", decoder(lean), false},
		{"lean+intern", decoder(lean), true},
	} {
		b.Run("mode="+m.name, func(b *testing.B) {
			var live float64
			for b.Loop() {
				b.StopTimer()
				in := newInterner()
				before := liveHeap()
				b.StartTimer()
				pods := make([]*corev1.Pod, n)
				for i, raw := range raws {
					obj, _, err := m.dec.Decode(raw, nil, nil)
					if err != nil {
						b.Fatal(err)
					}
					p := DefaultTransform(obj.(*corev1.Pod))
					if m.intern {
						in.object(p, false)
					}
					pods[i] = p
				}
				b.StopTimer()
				live += float64(liveHeap()-before) / n
				runtime.KeepAlive(pods)
				runtime.KeepAlive(in)
				b.StartTimer()
			}
			b.ReportMetric(live/float64(b.N), "live-B/obj")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/obj")
		})
	}
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
