package cache

import (
	"errors"
	"io"
	"mime"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// CustomOptions tune CustomSourceWith. The zero value is CustomSource's
// behaviour.
type CustomOptions struct {
	// Encoding is what the source asks the server for. Default
	// EncodingAuto.
	Encoding Encoding
}

// Encoding is the wire format a CustomSource asks for.
type Encoding int

const (
	// EncodingAuto asks for CBOR, JSON accepted
	// ("application/cbor, application/json;q=0.9"), and decodes what the
	// server answers. Kubernetes v1.36 serves custom resources as CBOR
	// (application/cbor; watches as application/cbor-seq) only with the
	// alpha feature gate CBORServingAndStorage, which also makes CBOR the
	// storage format of custom resources; without it the server answers
	// JSON.
	EncodingAuto Encoding = iota
	// EncodingJSON asks for JSON only.
	EncodingJSON
)

func (e Encoding) accept() string {
	if e == EncodingJSON {
		return runtime.ContentTypeJSON
	}
	return runtime.ContentTypeCBOR + ", " + runtime.ContentTypeJSON + ";q=0.9"
}

// isCBOR reports whether a response body is CBOR: by its content type, or,
// without one, by the self-described CBOR tag the server starts it with.
func isCBOR(contentType string, body []byte) bool {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil {
		return mt == runtime.ContentTypeCBOR || mt == runtime.ContentTypeCBORSequence
	}
	return len(body) > 0 && body[0] == cborSelfDescribed[0]
}

// responseError is the error for a failed request: the Status in a CBOR
// body when there is one (client-go's decoders know only JSON and
// protobuf), else what client-go makes of the response.
func responseError(res rest.Result, contentType string, body []byte) error {
	if len(body) > 0 && isCBOR(contentType, body) {
		st := &metav1.Status{}
		if err := cborObjects.Unmarshal(body, st); err == nil && st.Kind == "Status" && st.Status == metav1.StatusFailure {
			return &apierrors.StatusError{ErrStatus: *st}
		}
	}
	return res.Error()
}

// decodeAnyEvent decodes a watch frame of either encoding: a JSON event
// starts with '{', a CBOR one never does (a map or a tag).
func (d wireDecoder[T]) decodeAnyEvent(frame []byte) (watch.Event, error) {
	if len(frame) > 0 && frame[0] == '{' {
		return d.decodeEvent(frame)
	}
	return d.decodeEventCBOR(frame)
}

// watchFrames splits a watch response into event frames, JSON objects or
// a CBOR sequence, whichever the stream turns out to be: its first byte
// tells (JSON starts with white space or '{'; a CBOR event with a tag or
// a map head).
type watchFrames struct {
	fr      *frameReader
	decided bool
	cbor    bool
}

func newWatchFrames(r io.Reader) *watchFrames {
	return &watchFrames{fr: newFrameReader(r)}
}

// next returns the next frame, valid until the next call; io.EOF when the
// stream ended between frames.
func (w *watchFrames) next() ([]byte, error) {
	if !w.decided {
		f := w.fr
		for f.start == f.end {
			if err := f.fill(); err != nil {
				return nil, err
			}
		}
		switch f.buf[f.start] {
		case '{', ' ', '\t', '\r', '\n':
		default:
			w.cbor = true
		}
		w.decided = true
	}
	if w.cbor {
		return w.fr.nextCBOR()
	}
	return w.fr.next()
}

// nextCBOR returns the next data item of a CBOR sequence.
func (f *frameReader) nextCBOR() ([]byte, error) {
	for {
		if f.start < f.end {
			b := f.buf[f.start:f.end]
			n, err := skipCBOR(b, 0)
			if err == nil {
				f.start += n
				return b[:n], nil
			}
			if !errors.Is(err, errCBOREnd) {
				return nil, err
			}
		}
		between := f.start == f.end
		if err := f.fill(); err != nil {
			if err == io.EOF && !between {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}
