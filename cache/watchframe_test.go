package cache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"
	"testing/iotest"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/streaming"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	restwatch "k8s.io/client-go/rest/watch"
)

// protobufStream encodes events exactly as the API server writes a
// protobuf watch response: each object enveloped by the protobuf
// serializer, wrapped in a metav1.WatchEvent by the stream serializer,
// length-delimited by its framer.
func protobufStream(t testing.TB, events ...watch.Event) []byte {
	t.Helper()
	info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok || info.StreamSerializer == nil {
		t.Fatal("no protobuf stream serializer in client-go's scheme")
	}
	var out bytes.Buffer
	fw := info.StreamSerializer.Framer.NewFrameWriter(&out)
	for _, ev := range events {
		var raw bytes.Buffer
		if err := info.Serializer.Encode(ev.Object, &raw); err != nil {
			t.Fatalf("encode %T: %v", ev.Object, err)
		}
		we := &metav1.WatchEvent{Type: string(ev.Type), Object: runtime.RawExtension{Raw: raw.Bytes()}}
		if err := info.StreamSerializer.Encode(we, fw); err != nil {
			t.Fatalf("encode watch event: %v", err)
		}
	}
	return out.Bytes()
}

// clientGoEvents decodes a stream the way client-go's watch does: the
// reference for protoWatch.
func clientGoEvents(t testing.TB, data []byte) []watch.Event {
	t.Helper()
	info, _ := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	fr := info.StreamSerializer.Framer.NewFrameReader(io.NopCloser(bytes.NewReader(data)))
	dec := restwatch.NewDecoder(streaming.NewDecoder(fr, info.StreamSerializer.Serializer), runtime.WithoutVersionDecoder{Decoder: info.Serializer})
	var evs []watch.Event
	for {
		typ, obj, err := dec.Decode()
		if errors.Is(err, io.EOF) {
			return evs
		}
		if err != nil {
			t.Fatalf("client-go decoder: %v", err)
		}
		evs = append(evs, watch.Event{Type: typ, Object: obj})
	}
}

func podDecoder(t testing.TB, lean bool) *protoWatchDecoder {
	t.Helper()
	return &protoWatchDecoder{kinds: podKinds, newObject: protoNewer[*corev1.Pod](), fallback: runtime.WithoutVersionDecoder{Decoder: protobufSerializer(t)}, lean: lean}
}

func readAll(w *protoWatch) ([]watch.Event, error) {
	var evs []watch.Event
	for {
		ev, err := w.nextEvent()
		if err != nil {
			return evs, err
		}
		evs = append(evs, ev)
	}
}

func sampleEvents() []watch.Event {
	bookmark := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "9", Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}}
	gone := apierrors.NewResourceExpired("too old resource version: 1 (5)").ErrStatus
	p2 := testPod()
	p2.Name, p2.ResourceVersion = "other", "7"
	evs := []watch.Event{
		{Type: watch.Added, Object: testPod()},
		{Type: watch.Modified, Object: p2},
		{Type: watch.Bookmark, Object: bookmark},
		{Type: watch.Deleted, Object: testPod()},
		{Type: watch.Error, Object: &gone},
	}
	// The server's objects carry their kind (the envelope's type meta).
	for _, ev := range evs {
		kind := "Pod"
		if ev.Type == watch.Error {
			kind = "Status"
		}
		ev.Object.GetObjectKind().SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind(kind))
	}
	return evs
}

// The stream reader decodes what client-go's decoder decodes, whatever
// sizes the reads come in; the lean one equals client-go's after
// DefaultTransform.
func TestProtoWatchMatchesClientGo(t *testing.T) {
	data := protobufStream(t, sampleEvents()...)
	want := clientGoEvents(t, data)
	readers := map[string]func(io.Reader) io.Reader{
		"whole":   func(r io.Reader) io.Reader { return r },
		"onebyte": iotest.OneByteReader,
		"half":    iotest.HalfReader,
		"dataerr": iotest.DataErrReader,
	}
	for name, wrap := range readers {
		for _, lean := range []bool{false, true} {
			w := newProtoWatch(io.NopCloser(wrap(bytes.NewReader(data))), podDecoder(t, lean))
			got, err := readAll(w)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("%s lean=%v: stream ended with %v, want io.EOF", name, lean, err)
			}
			if len(got) != len(want) {
				t.Fatalf("%s lean=%v: %d events, want %d", name, lean, len(got), len(want))
			}
			for i := range want {
				w := want[i]
				if lean {
					if p, ok := w.Object.DeepCopyObject().(*corev1.Pod); ok {
						w.Object = DefaultTransform(p)
					}
				}
				if got[i].Type != w.Type || !reflect.DeepEqual(got[i].Object, w.Object) {
					t.Fatalf("%s lean=%v event %d:\n got  %s %#v\n want %s %#v", name, lean, i, got[i].Type, got[i].Object, w.Type, w.Object)
				}
			}
		}
	}
}

// Events that arrived in one read are available without another: what
// the reflector batches.
func TestProtoWatchBuffered(t *testing.T) {
	data := protobufStream(t, sampleEvents()...)
	w := newProtoWatch(io.NopCloser(bytes.NewReader(data)), podDecoder(t, true))
	if w.bufferedEvent() {
		t.Fatal("buffered before anything was read")
	}
	if _, err := w.nextEvent(); err != nil {
		t.Fatal(err)
	}
	n := 1
	for w.bufferedEvent() {
		if _, err := w.nextEvent(); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != len(sampleEvents()) {
		t.Fatalf("%d events buffered after one read of the whole stream, want %d", n, len(sampleEvents()))
	}
}

func TestProtoFrameReaderErrors(t *testing.T) {
	frame := func(n uint32, body ...byte) []byte { return append(binary.BigEndian.AppendUint32(nil, n), body...) }
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, io.EOF},
		{"short length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"short body", frame(10, 1, 2, 3), io.ErrUnexpectedEOF},
		{"too large", frame(maxProtoFrame + 1), errFrameTooLarge},
	}
	for _, c := range cases {
		f := protoFrameReader{r: bytes.NewReader(c.data)}
		if _, err := f.next(); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	// An empty frame is a frame (and then not a valid event).
	f := protoFrameReader{r: bytes.NewReader(frame(0))}
	if b, err := f.next(); err != nil || len(b) != 0 {
		t.Fatalf("empty frame: %q, %v", b, err)
	}
	if _, _, err := parseWatchEvent(nil); err == nil {
		t.Fatal("an empty watch event parsed")
	}
}

// A large frame grows the buffer; the buffer shrinks back after it.
func TestProtoFrameReaderLargeFrame(t *testing.T) {
	big := bytes.Repeat([]byte{7}, 1<<20)
	var data []byte
	data = binary.BigEndian.AppendUint32(data, uint32(len(big)))
	data = append(data, big...)
	data = binary.BigEndian.AppendUint32(data, 3)
	data = append(data, 1, 2, 3)
	f := protoFrameReader{r: iotest.HalfReader(bytes.NewReader(data))}
	b, err := f.next()
	if err != nil || !bytes.Equal(b, big) {
		t.Fatalf("big frame: %d bytes, %v", len(b), err)
	}
	b, err = f.next()
	if err != nil || !bytes.Equal(b, []byte{1, 2, 3}) {
		t.Fatalf("small frame after big: %v, %v", b, err)
	}
	if _, err := f.next(); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
	if len(f.buf) > protoFrameMinBuf {
		t.Fatalf("buffer kept at %d bytes after the big frame", len(f.buf))
	}
}

// idleAfter serves data in full Reads, then records the size of the
// buffer the next Read is given (where a watch waits for its next event)
// and ends the stream.
type idleAfter struct {
	data     []byte
	idleRead int
}

func (r *idleAfter) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.idleRead = len(p)
		return 0, io.EOF
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// A buffer grown for one large frame is given up before the reader waits
// for the next event, so an idle watch does not hold it.
func TestProtoFrameReaderIdleAfterLargeFrame(t *testing.T) {
	for _, size := range []int{300 << 10, 1 << 20} {
		big := bytes.Repeat([]byte{7}, size)
		data := binary.BigEndian.AppendUint32(nil, uint32(len(big)))
		r := &idleAfter{data: append(data, big...)}
		f := protoFrameReader{r: r}
		if b, err := f.next(); err != nil || !bytes.Equal(b, big) {
			t.Fatalf("%d-byte frame: %d bytes, %v", size, len(b), err)
		}
		if _, err := f.next(); !errors.Is(err, io.EOF) {
			t.Fatalf("end: %v", err)
		}
		if r.idleRead > protoFrameMinBuf {
			t.Errorf("after a %d-byte frame the idle Read was given %d bytes, want at most %d", size, r.idleRead, protoFrameMinBuf)
		}
	}
}

// ResultChan delivers the same events, closes at the end of the stream,
// and turns an undecodable stream into an ERROR event, as client-go does.
func TestProtoWatchResultChan(t *testing.T) {
	data := protobufStream(t, sampleEvents()...)
	w := newProtoWatch(io.NopCloser(bytes.NewReader(data)), podDecoder(t, false))
	var n int
	for range w.ResultChan() {
		n++
	}
	w.Stop()
	if n != len(sampleEvents()) {
		t.Fatalf("%d events, want %d", n, len(sampleEvents()))
	}

	// A stream cut inside a frame just ends (the reflector resumes).
	w = newProtoWatch(io.NopCloser(bytes.NewReader(data[:len(data)-3])), podDecoder(t, false))
	n = 0
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			if _, ok := ev.Object.(*metav1.Status); !ok || n != len(sampleEvents())-1 {
				t.Fatalf("unexpected ERROR event %d: %#v", n, ev.Object)
			}
		}
		n++
	}
	w.Stop()
	if n != len(sampleEvents())-1 {
		t.Fatalf("truncated stream: %d events, want %d", n, len(sampleEvents())-1)
	}

	bad := binary.BigEndian.AppendUint32(nil, 3)
	bad = append(bad, 0xff, 0xff, 0xff)
	w = newProtoWatch(io.NopCloser(bytes.NewReader(bad)), podDecoder(t, false))
	ev, ok := <-w.ResultChan()
	if !ok || ev.Type != watch.Error {
		t.Fatalf("garbage: got %v %v, want an ERROR event", ev.Type, ok)
	}
	if _, ok := <-w.ResultChan(); ok {
		t.Fatal("channel open after the ERROR event")
	}
	w.Stop()

	// Stop with nobody reading the channel returns (the goroutine ends).
	w = newProtoWatch(io.NopCloser(bytes.NewReader(data)), podDecoder(t, false))
	w.ResultChan()
	w.Stop()
	w.Stop()
}

// Stop unblocks a read that waits for the server.
func TestProtoWatchStopUnblocksRead(t *testing.T) {
	pr, pw := io.Pipe()
	defer pw.Close()
	w := newProtoWatch(pr, podDecoder(t, false))
	done := make(chan error)
	go func() { _, err := w.nextEvent(); done <- err }()
	w.Stop()
	if err := <-done; err == nil {
		t.Fatal("read after Stop returned no error")
	}
}

// Randomly cut and corrupted streams never panic, never return more
// events than the stream holds, and every event returned has an object.
func TestProtoWatchCorrupted(t *testing.T) {
	data := protobufStream(t, sampleEvents()...)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for range 2000 {
		b := bytes.Clone(data)
		for range 1 + r.IntN(4) {
			b[r.IntN(len(b))] = byte(r.Uint32())
		}
		b = b[:r.IntN(len(b)+1)]
		evs, _ := readAll(newProtoWatch(io.NopCloser(iotest.HalfReader(bytes.NewReader(b))), podDecoder(t, r.IntN(2) == 0)))
		for _, ev := range evs {
			if ev.Object == nil {
				t.Fatalf("event %s without an object", ev.Type)
			}
		}
	}
}

func FuzzProtoWatch(f *testing.F) {
	f.Add(protobufStream(f, sampleEvents()...))
	f.Add(protobufStream(f, sampleEvents()[0]))
	f.Add([]byte{0, 0, 0, 2, 10, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lean := range []bool{false, true} {
			w := newProtoWatch(io.NopCloser(bytes.NewReader(data)), podDecoder(t, lean))
			for range len(data) + 1 {
				ev, err := w.nextEvent()
				if err != nil {
					break
				}
				if ev.Object == nil {
					t.Fatalf("event %s without an object", ev.Type)
				}
			}
		}
	})
}
