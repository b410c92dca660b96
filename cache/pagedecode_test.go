package cache

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// podPageDecoder is the page decoder an informer of pods with the default
// options uses: lean cut, spec reuse and the pod spec sharer.
func podPageDecoder(relist relistFilter) *pageItemDecoder {
	reuse := newSpecReuse[*corev1.Pod]()
	reuse.share = newPodSpecSharer(newInterner())
	return &pageItemDecoder{
		dec:    &protoWatchDecoder{kinds: podKinds, newObject: protoNewer[*corev1.Pod](), lean: true},
		reuse:  reuse,
		relist: relist,
	}
}

// listMessage is the list message of l (what the envelope's raw holds).
func listMessage(t testing.TB, l *corev1.PodList) []byte {
	t.Helper()
	raw, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// wantPage is the reference for a list message: PodList.Unmarshal (what
// the protobuf serializer runs), each item copied out of the list (as
// meta.EachListItemWithAlloc does) and DefaultTransform'ed.
func wantPage(raw []byte) (metav1.ListMeta, []*corev1.Pod, error) {
	var l corev1.PodList
	if err := l.Unmarshal(raw); err != nil {
		return metav1.ListMeta{}, nil, err
	}
	var pods []*corev1.Pod
	for i := range l.Items {
		p := l.Items[i]
		pods = append(pods, DefaultTransform(&p))
	}
	return l.ListMeta, pods, nil
}

// checkPage decodes the enveloped list message raw with d and asserts the
// contract: not followed (ok false, nothing decoded), or the same error
// and items as the reference. It returns the decoded page (nil if none).
func checkPage(t *testing.T, d *pageItemDecoder, raw []byte) *objectPage {
	t.Helper()
	page, ok, err := d.decode(envelope("PodList", raw))
	if !ok {
		if page != nil || err != nil {
			t.Fatalf("not followed, yet page %v and error %v", page, err)
		}
		return nil
	}
	lm, want, wantErr := wantPage(raw)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("error %v, PodList.Unmarshal: %v", err, wantErr)
	}
	if err != nil {
		return nil
	}
	if !reflect.DeepEqual(page.ListMeta, lm) {
		t.Fatalf("list meta %#v, want %#v", page.ListMeta, lm)
	}
	if len(page.Items) != len(want) {
		t.Fatalf("%d items, want %d", len(page.Items), len(want))
	}
	for i, o := range page.Items {
		p, ok := o.(*corev1.Pod)
		if !ok {
			t.Fatalf("item %d is %T, want *corev1.Pod", i, o)
		}
		if got := DefaultTransform(p); !reflect.DeepEqual(got, want[i]) {
			t.Fatalf("item %d:\n%#v\nwant\n%#v", i, got, want[i])
		}
	}
	if d.reuse != nil {
		d.reuse.batchDone()
	}
	return page
}

// templatePod is pod i of template tmpl, with random metadata (managed
// fields and last-applied sometimes) around a template's spec.
func templatePod(r *rand.Rand, tmpl, i int) corev1.Pod {
	p := randomPod(r)
	p.TypeMeta = metav1.TypeMeta{}
	p.Spec = templatePodSpec(tmpl, i)
	p.Status.Phase = corev1.PodRunning
	return *p
}

// Pages of pods from a few templates decode to what the serializer makes
// of them, and pods of one template share their template's parts.
func TestPageDecodeMatchesSerializer(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	d := podPageDecoder(nil)
	for page := range 5 {
		l := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: fmt.Sprint(100 + page), Continue: "tok"}}
		for i := range 1 + r.IntN(60) {
			l.Items = append(l.Items, templatePod(r, r.IntN(3), i))
		}
		got := checkPage(t, d, listMessage(t, l))
		if got == nil {
			t.Fatal("a server's page was not decoded item by item")
		}
		first := map[int]*corev1.Pod{}
		for i, o := range got.Items {
			p := o.(*corev1.Pod)
			key := int(*l.Items[i].Spec.SecurityContext.FSGroup - 1000) // the template
			if f, ok := first[key]; ok {
				if reflect.ValueOf(p.Spec.Containers[0].Resources.Requests).UnsafePointer() != reflect.ValueOf(f.Spec.Containers[0].Resources.Requests).UnsafePointer() {
					t.Fatalf("pods %s and %s of template %d do not share their requests", f.Name, p.Name, key)
				}
				continue
			}
			first[key] = p
		}
	}
}

// Lists the walk does not follow are left to the serializer; odd but
// valid ones (ListMeta twice, unknown fields, no items) are followed.
func TestPageDecodeOddWire(t *testing.T) {
	pod := listMessage(t, &corev1.PodList{Items: []corev1.Pod{templatePod(rand.New(rand.NewPCG(1, 2)), 0, 0)}})
	lm := func(m metav1.ListMeta) []byte { b, _ := m.Marshal(); return b }
	for _, c := range []struct {
		name     string
		data     []byte
		followed bool
	}{
		{"empty list", nil, true},
		{"list meta twice", appendField(appendField(pod, 1, lm(metav1.ListMeta{ResourceVersion: "1"})), 1, lm(metav1.ListMeta{Continue: "c"})), true},
		{"unknown field", appendField(pod, 9, []byte("x")), true},
		{"items as a varint", append(append([]byte(nil), pod...), 2<<3|wireVarint, 1), false},
		{"list meta as a varint", append([]byte{1<<3 | wireVarint, 1}, pod...), false},
		{"truncated", pod[:len(pod)-1], false},
		{"broken item", appendField(nil, 2, []byte{0xff}), true},
	} {
		t.Run(c.name, func(t *testing.T) {
			page := checkPage(t, podPageDecoder(nil), c.data)
			_, ok, _ := podPageDecoder(nil).decode(envelope("PodList", c.data))
			if ok != c.followed {
				t.Fatalf("followed = %v, want %v (page %v)", ok, c.followed, page)
			}
		})
	}
	for _, data := range [][]byte{
		envelope("Pod", pod),
		envelope("PodList", pod, 3<<3|wireBytes, 4, 'g', 'z', 'i', 'p'), // content encoding
		append([]byte("{}"), pod...),
	} {
		if _, ok, _ := podPageDecoder(nil).decode(data); ok {
			t.Errorf("%q: followed, want it left to the serializer", data[:min(len(data), 16)])
		}
	}
}

// On a relist, items the session holds unchanged are not decoded: they
// come as unchangedObjects of that session; the others are decoded.
func TestPageDecodeSkipsUnchanged(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	l := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "9"}}
	for i := range 6 {
		p := templatePod(r, 0, i)
		p.Namespace, p.Name, p.ResourceVersion = "ns", fmt.Sprint("p", i), fmt.Sprint(10+i)
		l.Items = append(l.Items, p)
	}
	f := &fakeFilter{held: map[string]bool{"ns/p1@11": true, "ns/p4@14": true, "ns/p5@99": true}}
	page := checkPageSkipping(t, podPageDecoder(f), listMessage(t, l))
	for i, o := range page.Items {
		u, skipped := o.(*unchangedObject)
		if wantSkip := i == 1 || i == 4; skipped != wantSkip {
			t.Fatalf("item %d: %T, want skipped %v", i, o, wantSkip)
		}
		if skipped && (u.from != relistFilter(f) || u.Name != l.Items[i].Name || u.ResourceVersion != l.Items[i].ResourceVersion) {
			t.Fatalf("item %d: unchanged %+v from %v", i, u.ObjectMeta, u.from)
		}
	}
	if len(f.asked) != 6 {
		t.Fatalf("filter asked %d times, want once per item: %v", len(f.asked), f.asked)
	}
}

// checkPageSkipping decodes a page with a relist filter: the items not
// skipped equal the reference's.
func checkPageSkipping(t *testing.T, d *pageItemDecoder, raw []byte) *objectPage {
	t.Helper()
	page, ok, err := d.decode(envelope("PodList", raw))
	if !ok || err != nil {
		t.Fatalf("followed %v, error %v", ok, err)
	}
	_, want, err := wantPage(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range page.Items {
		if p, ok := o.(*corev1.Pod); ok && !reflect.DeepEqual(DefaultTransform(p), want[i]) {
			t.Fatalf("item %d:\n%#v\nwant\n%#v", i, p, want[i])
		}
	}
	return page
}

// An objectPage is a list to meta's helpers (the reflector's fallback
// path and ListerWatcher wrappers read it so).
func TestObjectPageIsAList(t *testing.T) {
	p := &objectPage{ListMeta: metav1.ListMeta{ResourceVersion: "7", Continue: "c"}, Items: []runtime.Object{&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "a"}}}}
	lm, err := meta.ListAccessor(p)
	if err != nil || lm.GetResourceVersion() != "7" || lm.GetContinue() != "c" {
		t.Fatalf("ListAccessor: %v, %v", lm, err)
	}
	items, err := meta.ExtractList(p)
	if err != nil || len(items) != 1 || items[0] != p.Items[0] {
		t.Fatalf("ExtractList: %v, %v", items, err)
	}
	c := p.DeepCopyObject().(*objectPage)
	if !reflect.DeepEqual(c, p) || c.Items[0] == p.Items[0] {
		t.Fatalf("DeepCopyObject: %#v", c)
	}
}

// Whatever the list message holds, the page decoder does not panic, and
// either leaves it to the serializer or ends as PodList.Unmarshal does.
func FuzzPageDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	for n := range 3 {
		l := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "1"}}
		for i := range n + 1 {
			l.Items = append(l.Items, templatePod(r, i%2, i))
		}
		f.Add(listMessage(f, l))
	}
	f.Add(appendField(appendField(nil, 2, nil), 2, []byte{2<<3 | wireBytes, 0}))
	f.Fuzz(func(t *testing.T, raw []byte) {
		d := podPageDecoder(nil)
		checkPage(t, d, raw)
		checkPage(t, d, raw) // again: specs shared from the first decode
	})
}
