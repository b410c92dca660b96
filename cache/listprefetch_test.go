package cache

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
)

// encodedPodList is a protobuf PodList of n pods with continue token tok,
// as the server writes it.
func encodedPodList(t testing.TB, tok string, n int) []byte {
	t.Helper()
	l := &corev1.PodList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "PodList"},
		ListMeta: metav1.ListMeta{ResourceVersion: "42", Continue: tok}}
	for i := range n {
		l.Items = append(l.Items, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p" + string(rune('a'+i%26)), Namespace: "ns",
			Annotations: map[string]string{"a": string(bytes.Repeat([]byte("x"), 300))}}})
	}
	info, ok := runtime.SerializerInfoForMediaType(scheme.Codecs.SupportedMediaTypes(), runtime.ContentTypeProtobuf)
	if !ok {
		t.Fatal("no protobuf serializer")
	}
	data, err := runtime.Encode(info.Serializer, l)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The token is known exactly once the ListMeta has been read, from any
// prefix that holds it, and before the items.
func TestProtoListContinueFromPrefixes(t *testing.T) {
	for _, tok := range []string{"", "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDJ9"} {
		data := encodedPodList(t, tok, 20)
		firstKnown := -1
		for n := 0; n <= len(data); n++ {
			got, known := protoListContinue(data[:n])
			if !known {
				if firstKnown >= 0 {
					t.Fatalf("token %q: known at %d bytes but not at %d", tok, firstKnown, n)
				}
				continue
			}
			if firstKnown < 0 {
				firstKnown = n
			}
			if got != tok {
				t.Fatalf("prefix of %d bytes: token %q, want %q", n, got, tok)
			}
		}
		if firstKnown < 0 || firstKnown > 200 {
			t.Fatalf("token %q first known after %d of %d bytes, want within the first 200", tok, firstKnown, len(data))
		}
	}
}

func TestReadPageCallsEarlyOnceBeforeTheEnd(t *testing.T) {
	data := encodedPodList(t, "next", 200)
	var calls int
	var readAtCall int
	r := &countingReader{r: iotest.HalfReader(bytes.NewReader(data))}
	got, tok, err := readPage(r, func(tok string) {
		calls++
		readAtCall = r.n
		if tok != "next" {
			t.Errorf("early(%q), want next", tok)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) || tok != "next" {
		t.Fatalf("readPage = %d bytes, token %q; want the %d bytes and token next", len(got), tok, len(data))
	}
	if calls != 1 || readAtCall >= len(data) {
		t.Fatalf("early called %d times, after %d of %d bytes; want once before the end", calls, readAtCall, len(data))
	}
}

func TestReadPageJSONTokenAtTheEnd(t *testing.T) {
	data := []byte(`{"apiVersion":"v1","items":[],"kind":"List","metadata":{"continue":"tok","resourceVersion":"7"}}`)
	var early []string
	_, tok, err := readPage(iotest.OneByteReader(bytes.NewReader(data)), func(s string) { early = append(early, s) })
	if err != nil || tok != "tok" || len(early) != 1 || early[0] != "tok" {
		t.Fatalf("readPage = token %q, err %v, early %q; want tok once", tok, err, early)
	}
}

func TestReadPageReturnsReadErrors(t *testing.T) {
	_, _, err := readPage(iotest.ErrReader(io.ErrClosedPipe), func(string) { t.Error("early called") })
	if err != io.ErrClosedPipe {
		t.Fatalf("err = %v, want %v", err, io.ErrClosedPipe)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// Whatever the server sends, the prefix parser neither panics nor claims
// a token it did not read.
func FuzzProtoListContinue(f *testing.F) {
	f.Add(encodedPodList(f, "tok", 2))
	f.Add([]byte("k8s\x00\x12\x05\x0a\x03\x1a\x01x"))
	f.Add([]byte("k8s\x00\x12\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, known := protoListContinue(data)
		if known && tok != "" && !bytes.Contains(data, []byte(tok)) {
			t.Fatalf("token %q is not in the input", tok)
		}
	})
}
