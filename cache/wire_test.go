package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
)

var podKinds = wireKinds{Object: "Pod", List: "PodList"}

func protobufSerializer(t testing.TB) runtime.Serializer {
	t.Helper()
	info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		t.Fatal("no protobuf serializer in client-go's scheme")
	}
	return info.Serializer
}

func encodeProtobuf(t testing.TB, obj runtime.Object) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := protobufSerializer(t).Encode(obj, &buf); err != nil {
		t.Fatalf("encode %T: %v", obj, err)
	}
	return buf.Bytes()
}

// decodeProtobuf decodes enveloped protobuf the way a client does.
func decodeProtobuf(t testing.TB, data []byte) (runtime.Object, error) {
	t.Helper()
	obj, _, err := protobufSerializer(t).Decode(data, nil, nil)
	return obj, err
}

// wantStripped is the reference: decode everything, then DefaultTransform.
func wantStripped(t testing.TB, data []byte) (runtime.Object, error) {
	t.Helper()
	obj, err := decodeProtobuf(t, data)
	if err != nil {
		return nil, err
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		DefaultTransform(o)
	case *corev1.PodList:
		for i := range o.Items {
			DefaultTransform(&o.Items[i])
		}
	}
	return obj, nil
}

// checkStrip asserts the rewriter's contract on data: if data decodes, the
// rewritten bytes (when the rewriter rewrote) decode to the same object as
// decode-then-strip.
func checkStrip(t testing.TB, data []byte) (out []byte, rewrote bool) {
	t.Helper()
	out, rewrote = stripProtobuf(nil, data, podKinds)
	if !rewrote {
		if len(out) != 0 {
			t.Fatalf("not rewritten but appended %d bytes", len(out))
		}
		return out, false
	}
	want, err := wantStripped(t, data)
	if err != nil {
		return out, true // the original does not decode; only "no panic" is asked
	}
	got, err := decodeProtobuf(t, out)
	if err != nil {
		t.Fatalf("original decodes, rewritten does not: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("rewritten decodes to\n%#v\nwant (decode, then DefaultTransform)\n%#v", got, want)
	}
	return out, true
}

func testPod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: "shop", UID: "u-1", ResourceVersion: "42",
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"a": "1", LastAppliedAnnotation: `{"kind":"Pod"}`, "z": "2"},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply, APIVersion: "v1", FieldsType: "FieldsV1",
					FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{}}`)}, Time: &metav1.Time{Time: time.Unix(1700000000, 0)}},
			},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}}}},
	}
}

// appendField appends field num (length-delimited) holding val.
func appendField(dst []byte, num int, val []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(num)<<3|wireBytes)
	dst = binary.AppendUvarint(dst, uint64(len(val)))
	return append(dst, val...)
}

// envelope builds "k8s\0" + Unknown{typeMeta{apiVersion, kind}, raw}.
func envelope(kind string, raw []byte, extra ...byte) []byte {
	tm := appendField(appendField(nil, 1, []byte("v1")), 2, []byte(kind))
	u := appendField(appendField(nil, unknownTypeMetaField, tm), unknownRawField, raw)
	return append(append(append([]byte(nil), protobufMagic...), u...), extra...)
}

func TestStripProtobufCases(t *testing.T) {
	podRaw := func(mut func(p *corev1.Pod)) []byte {
		p := testPod()
		if mut != nil {
			mut(p)
		}
		b, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	huge := strings.Repeat("x", 1<<20)
	specOnly := appendField(nil, 2, podRaw(nil)[0:0]) // a pod message with an empty spec and no metadata field
	unknownInMeta := func() []byte {
		p := testPod()
		meta, _ := p.ObjectMeta.Marshal()
		meta = appendField(meta, 99, []byte("future"))
		spec, _ := p.Spec.Marshal()
		return appendField(appendField(appendField(nil, 1, meta), 2, spec), 98, []byte("future too"))
	}()
	list := func() []byte {
		l := &corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}, ListMeta: metav1.ListMeta{ResourceVersion: "7"}}
		for range 3 {
			l.Items = append(l.Items, *testPod())
		}
		return encodeProtobuf(t, l)
	}()
	status := encodeProtobuf(t, &metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Code: 410, Reason: metav1.StatusReasonExpired})

	cases := []struct {
		name        string
		data        []byte
		wantRewrite bool
		check       func(t *testing.T, out []byte)
	}{
		{name: "pod", data: encodeProtobuf(t, testPod()), wantRewrite: true},
		{name: "no metadata", data: envelope("Pod", specOnly), wantRewrite: true},
		{name: "empty object", data: envelope("Pod", nil), wantRewrite: true},
		{name: "empty managedFields", data: envelope("Pod", podRaw(func(p *corev1.Pod) { p.ManagedFields = []metav1.ManagedFieldsEntry{} })), wantRewrite: true},
		{name: "empty managedFields entry", data: envelope("Pod", podRaw(func(p *corev1.Pod) { p.ManagedFields = []metav1.ManagedFieldsEntry{{}} })), wantRewrite: true},
		{name: "only last-applied", data: envelope("Pod", podRaw(func(p *corev1.Pod) { p.Annotations = map[string]string{LastAppliedAnnotation: "{}"} })), wantRewrite: true,
			check: func(t *testing.T, out []byte) {
				obj, _ := decodeProtobuf(t, out)
				if a := obj.(*corev1.Pod).Annotations; a != nil {
					t.Errorf("annotations = %v, want nil", a)
				}
			}},
		{name: "huge last-applied", data: envelope("Pod", podRaw(func(p *corev1.Pod) { p.Annotations[LastAppliedAnnotation] = huge })), wantRewrite: true,
			check: func(t *testing.T, out []byte) {
				if len(out) > 1000 {
					t.Errorf("rewritten pod is %d bytes; the 1 MiB annotation was not cut", len(out))
				}
			}},
		{name: "huge kept annotation", data: envelope("Pod", podRaw(func(p *corev1.Pod) { p.Annotations["big"] = huge })), wantRewrite: true},
		{name: "unknown fields kept", data: envelope("Pod", unknownInMeta, append(appendField(nil, 7, []byte("env")), 0x40, 0x01)...), wantRewrite: true,
			check: func(t *testing.T, out []byte) {
				for _, s := range []string{"future", "future too", "env"} {
					if !bytes.Contains(out, []byte(s)) {
						t.Errorf("unknown field %q was dropped", s)
					}
				}
			}},
		{name: "list", data: list, wantRewrite: true},
		{name: "other kind passes", data: status},
		{name: "no kind", data: envelope("", podRaw(nil))},
		{name: "content encoding", data: envelope("Pod", podRaw(nil), appendField(nil, unknownContentEncodingField, []byte("gzip"))...)},
		{name: "no magic", data: podRaw(nil)},
		{name: "magic only", data: protobufMagic},
		{name: "truncated", data: encodeProtobuf(t, testPod())[:60]},
		{name: "group wire type", data: envelope("Pod", append(podRaw(nil), 0x0b, 0x0c))},
		{name: "managedFields as varint", data: envelope("Pod", appendField(nil, 1, []byte{17<<3 | wireVarint, 1}))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, rewrote := checkStrip(t, c.data)
			if rewrote != c.wantRewrite {
				t.Fatalf("rewrote = %v, want %v", rewrote, c.wantRewrite)
			}
			if rewrote && bytes.Contains(out, []byte(LastAppliedAnnotation)) {
				t.Error("rewritten bytes still hold the last-applied annotation")
			}
			if c.check != nil {
				c.check(t, out)
			}
		})
	}
}

// randomPod is a pod with random metadata: labels, annotations (sometimes
// last-applied, of random size), managed fields, owners, containers.
func randomPod(r *rand.Rand) *corev1.Pod {
	str := func(n int) string {
		b := make([]byte, r.IntN(n+1))
		for i := range b {
			b[i] = byte('a' + r.IntN(26))
		}
		return string(b)
	}
	m := func(n int) map[string]string {
		if r.IntN(4) == 0 {
			return nil
		}
		out := map[string]string{}
		for range r.IntN(n) {
			out[str(12)] = str(40)
		}
		return out
	}
	p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}}
	p.Name, p.Namespace, p.ResourceVersion = str(20), str(10), fmt.Sprint(r.Int64())
	p.Labels, p.Annotations = m(8), m(6)
	if r.IntN(2) == 0 {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[LastAppliedAnnotation] = str([]int{0, 10, 200, 20000}[r.IntN(4)])
	}
	for range r.IntN(4) {
		p.ManagedFields = append(p.ManagedFields, metav1.ManagedFieldsEntry{Manager: str(10), Operation: metav1.ManagedFieldsOperationUpdate,
			FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:` + str(3000) + `":{}}`)}})
	}
	for range r.IntN(3) {
		p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: str(10), UID: "u"})
	}
	for range r.IntN(4) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: str(8), Image: str(30), Args: []string{str(10)}})
	}
	p.Spec.NodeName = str(8)
	return p
}

func TestStripProtobufRandomPods(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for range 300 {
		p := randomPod(r)
		if _, ok := checkStrip(t, encodeProtobuf(t, p)); !ok {
			t.Fatalf("pod %s not rewritten", p.Name)
		}
		l := &corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}, Items: []corev1.Pod{*p, *randomPod(r)}}
		if _, ok := checkStrip(t, encodeProtobuf(t, l)); !ok {
			t.Fatal("list not rewritten")
		}
	}
}

func FuzzStripProtobuf(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 8 {
		f.Add(encodeProtobuf(f, randomPod(r)))
	}
	f.Add(encodeProtobuf(f, &corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"}, Items: []corev1.Pod{*testPod()}}))
	f.Add(envelope("Pod", nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		out, rewrote := checkStrip(t, data)
		if rewrote {
			// Rewriting is idempotent: a second pass finds nothing to cut.
			again, ok := stripProtobuf(nil, out, podKinds)
			if !ok || !bytes.Equal(again, out) {
				t.Fatalf("second rewrite changed the bytes (ok=%v)", ok)
			}
		}
	})
}

func TestProtobufKinds(t *testing.T) {
	k, ok := protobufKinds[*corev1.Pod](scheme.Scheme)
	if !ok || k != podKinds {
		t.Fatalf("protobufKinds[*corev1.Pod] = %v, %v; want %v, true", k, ok, podKinds)
	}
	if k, ok := protobufKinds[*corev1.ConfigMap](scheme.Scheme); !ok || k.Object != "ConfigMap" {
		t.Fatalf("protobufKinds[*corev1.ConfigMap] = %v, %v", k, ok)
	}
	if _, ok := protobufKinds[*corev1.Pod](runtime.NewScheme()); ok {
		t.Error("a type missing from the scheme got kinds")
	}
	if _, ok := protobufKinds[*noProtobuf](noProtobufScheme()); ok {
		t.Error("a type without protobuf tags got kinds")
	}
}

func TestLeanDecoder(t *testing.T) {
	codecs := newLeanCodecs(scheme.Codecs.WithoutConversion(), podKinds)
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		t.Fatal("no protobuf serializer")
	}
	dec := codecs.DecoderToVersion(info.Serializer, schema.GroupVersion{Version: "v1"})
	for range 3 { // the pooled buffer is reused
		obj, _, err := dec.Decode(encodeProtobuf(t, testPod()), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		p := obj.(*corev1.Pod)
		if p.ManagedFields != nil || p.Annotations[LastAppliedAnnotation] != "" || p.Annotations["a"] != "1" || p.Name != "web-1" {
			t.Fatalf("decoded %+v", p.ObjectMeta)
		}
	}
	// A Status passes through the same decoder untouched.
	obj, _, err := dec.Decode(encodeProtobuf(t, &metav1.Status{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}, Code: 410}), nil, nil)
	if err != nil || obj.(*metav1.Status).Code != 410 {
		t.Fatalf("status: %v, %v", obj, err)
	}
}

// noProtobuf is a CRD-like type: json tags only.
type noProtobuf struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
}

func (n *noProtobuf) DeepCopyObject() runtime.Object { c := *n; return &c }

type noProtobufList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []noProtobuf `json:"items"`
}

func (n *noProtobufList) DeepCopyObject() runtime.Object { c := *n; return &c }

func noProtobufScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	gv := schema.GroupVersion{Group: "x.skiff.dev", Version: "v1"}
	s.AddKnownTypeWithName(gv.WithKind("NoProtobuf"), &noProtobuf{})
	s.AddKnownTypeWithName(gv.WithKind("NoProtobufList"), &noProtobufList{})
	return s
}
