package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"sync"
	"sync/atomic"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// eventSource is a watch the reflector reads on its own goroutine, in
// batches, with no goroutine or channel in between (client-go's
// StreamWatcher reads on a goroutine of its own and hands each event over
// a channel: one wake-up per event).
type eventSource interface {
	watch.Interface
	// nextEvent blocks for the next event. At a clean end of the stream
	// it returns io.EOF; a read error (the stream broke) or a stream it
	// cannot decode returns another error.
	nextEvent() (watch.Event, error)
	// bufferedEvent reports whether nextEvent would return an event
	// without reading.
	bufferedEvent() bool
}

// protoObject is a generated protobuf type of k8s.io/api.
type protoObject interface {
	runtime.Object
	Unmarshal([]byte) error
}

// protoWatchDecoder turns the enveloped objects of a protobuf watch stream
// into runtime.Objects: objects of kinds.Object are unmarshalled straight
// into newObject() (after the lean cut, if lean); anything else (a Status
// in an ERROR event) goes through fallback, as client-go decodes it.
type protoWatchDecoder struct {
	kinds     wireKinds
	newObject func() protoObject // nil: always fallback
	objType   reflect.Type       // what newObject returns, nil if nil
	fallback  runtime.Decoder
	lean      bool
}

// protoNewer returns a constructor of T's element type if T is a pointer
// to a generated protobuf struct, else nil.
func protoNewer[T Object]() func() protoObject {
	typ := reflect.TypeFor[T]()
	if typ.Kind() != reflect.Pointer || typ.Elem().Kind() != reflect.Struct {
		return nil
	}
	if _, ok := reflect.New(typ.Elem()).Interface().(protoObject); !ok {
		return nil
	}
	elem := typ.Elem()
	return func() protoObject { return reflect.New(elem).Interface().(protoObject) }
}

// protoWatch reads a protobuf watch response body on the caller's
// goroutine. As a watch.Interface (for ListerWatcher wrappers that read
// ResultChan) it starts one goroutine on the first ResultChan call, which
// Stop ends and waits for.
type protoWatch struct {
	body   io.ReadCloser
	frames protoFrameReader
	dec    *protoWatchDecoder
	strip  []byte // reused buffer of the lean cut
	// reuse, if set, decodes objects reusing stored specs (lean only;
	// nextEvent on the reflector's goroutine only: ResultChan drops it).
	reuse *specReuse
	rest  []byte // reused buffer of an object without its spec
	// relist, if set, is the session of the watch-list this stream
	// answers: until the initial-events-end bookmark, objects it finds
	// unchanged are sent as unchangedObject, not decoded (relistskip.go).
	// Used by whichever goroutine reads events.
	relist relistFilter

	stopOnce sync.Once
	stopped  chan struct{}
	chOnce   sync.Once
	ch       chan watch.Event
	pumpDone chan struct{}
}

func newProtoWatch(body io.ReadCloser, dec *protoWatchDecoder) *protoWatch {
	return &protoWatch{body: body, frames: protoFrameReader{r: body}, dec: dec, stopped: make(chan struct{})}
}

func (w *protoWatch) nextEvent() (watch.Event, error) {
	frame, err := w.frames.next()
	if err != nil {
		return watch.Event{}, err
	}
	typ, raw, err := parseWatchEvent(frame)
	if err != nil {
		return watch.Event{}, fmt.Errorf("decode watch stream: %w", err)
	}
	obj, err := w.decodeObject(typ, raw)
	if err != nil {
		return watch.Event{}, fmt.Errorf("decode object of %s watch event: %w", typ, err)
	}
	if typ == watch.Bookmark && w.relist != nil && initialEventsEnd(obj) {
		w.relist = nil // the session is finished with this event
	}
	return watch.Event{Type: typ, Object: obj}, nil
}

func (w *protoWatch) bufferedEvent() bool { return w.frames.buffered() }

// decodeObject decodes one enveloped object. Everything it returns is
// copied out of data (generated Unmarshal copies strings and bytes), so
// the frame buffer is reused.
func (w *protoWatch) decodeObject(typ watch.EventType, data []byte) (runtime.Object, error) {
	d := w.dec
	if w.relist != nil && (typ == watch.Added || typ == watch.Modified) {
		if u := w.peekUnchanged(data); u != nil {
			return u, nil
		}
	}
	if d.lean {
		if out, ok := stripProtobuf(w.strip[:0], data, d.kinds); ok {
			data = out
			if cap(out) <= 1<<20 {
				w.strip = out[:0]
			}
		}
	}
	if d.newObject != nil {
		if kind, raw, encoded, ok := envelopeParts(data); ok && !encoded && string(kind) == d.kinds.Object {
			obj := d.newObject()
			if w.reuse != nil && (typ == watch.Added || typ == watch.Modified) {
				rest, done, err := w.reuse.decode(obj, raw, w.rest)
				if cap(rest) <= 1<<20 {
					w.rest = rest[:0]
				}
				if err != nil {
					return nil, fmt.Errorf("unmarshal %s: %w", d.kinds.Object, err)
				}
				if done {
					return obj, nil
				}
			}
			if err := obj.Unmarshal(raw); err != nil {
				return nil, fmt.Errorf("unmarshal %s: %w", d.kinds.Object, err)
			}
			return obj, nil
		}
	}
	return runtime.Decode(d.fallback, data)
}

// Stop closes the body (a blocked read returns) and waits for the
// ResultChan goroutine, if any. Idempotent.
func (w *protoWatch) Stop() {
	w.stopOnce.Do(func() {
		close(w.stopped)
		w.body.Close()
	})
	if w.pumpDone != nil {
		<-w.pumpDone
	}
}

// ResultChan delivers the events on a channel that closes when the stream
// ends or Stop is called; a stream that breaks with an error that is not a
// clean end delivers an ERROR event first, as client-go does. Do not mix
// with nextEvent.
func (w *protoWatch) ResultChan() <-chan watch.Event {
	w.chOnce.Do(func() {
		w.reuse = nil // the pump decodes on a goroutine of its own
		w.ch = make(chan watch.Event)
		w.pumpDone = make(chan struct{})
		go w.pump()
	})
	return w.ch
}

func (w *protoWatch) pump() {
	defer close(w.pumpDone)
	defer close(w.ch)
	for {
		ev, err := w.nextEvent()
		if err != nil {
			if endsNormally(err) {
				return
			}
			ev = watch.Event{Type: watch.Error, Object: errorStatus(err)}
		}
		select {
		case w.ch <- ev:
		case <-w.stopped:
			return
		}
		if err != nil {
			return
		}
	}
}

// endsNormally reports a read error after which a watch just ends (and is
// resumed), as client-go treats it: the end of the stream, a connection
// that broke or timed out.
func endsNormally(err error) bool {
	return errors.Is(err, io.EOF) || isProbableEOFOrTimeout(err)
}

func isProbableEOFOrTimeout(err error) bool {
	return utilnet.IsProbableEOF(err) || utilnet.IsTimeout(err)
}

// errorStatus is the Status of an ERROR event for a stream that broke.
func errorStatus(err error) *metav1.Status {
	st := apierrors.NewInternalError(fmt.Errorf("unable to decode an event from the watch stream: %w", err)).Status()
	return &st
}

// protoStream opens watches whose protobuf response body the reflector
// reads itself (see eventSource). Its client accepts only protobuf, is
// not rate limited (client-go does not rate-limit watches either), and
// speaks HTTP/1.1 on connections of its own (see streamConfig).
type protoStream struct {
	c          rest.Interface
	full, lean *protoWatchDecoder
	off        atomic.Bool // the server answered 406: use the negotiated watch
}

// newProtoStream returns a protoStream for T from cfg, the config of T's
// REST client (protobuf serializer set), whose requests go through hc (a
// stream client, see NewStreamClient), or if hc is nil through the shared
// stream client of cfg (sharedStreamClient).
func newProtoStream[T Object](cfg *rest.Config, kinds wireKinds, hc *http.Client) (*protoStream, error) {
	var fallback runtime.Decoder
	for _, info := range cfg.NegotiatedSerializer.SupportedMediaTypes() {
		if info.MediaType == runtime.ContentTypeProtobuf && info.Serializer != nil {
			fallback = runtime.WithoutVersionDecoder{Decoder: info.Serializer}
		}
	}
	if fallback == nil {
		return nil, errors.New("the serializer has no protobuf decoder")
	}
	if hc == nil {
		var err error
		if hc, err = sharedStreamClient(cfg); err != nil {
			return nil, err
		}
	}
	wc := streamConfig(cfg) // HTTP/1.1, a connection of its own
	wc.AcceptContentTypes = runtime.ContentTypeProtobuf
	wc.RateLimiter, wc.QPS = nil, -1
	c, err := rest.RESTClientForConfigAndClient(wc, hc)
	if err != nil {
		return nil, err
	}
	full := &protoWatchDecoder{kinds: kinds, newObject: protoNewer[T](), fallback: fallback}
	if full.newObject != nil {
		full.objType = reflect.TypeFor[T]().Elem()
	}
	lean := *full
	lean.lean = true
	return &protoStream{c: c, full: full, lean: &lean}, nil
}

// watch opens req (a watch request of s.c, asking the server for
// timeoutSeconds) and returns its stream, which ends at the latest
// streamSlack after that (see streamconn.go). A connection that broke or
// timed out before the response returns an empty watch, as client-go's
// does: the reflector then simply watches again.
func (s *protoStream) watch(ctx context.Context, req *rest.Request, timeoutSeconds *int64, lean bool) (watch.Interface, error) {
	sctx, cancel := withStreamDeadline(ctx, timeoutSeconds)
	body, err := req.Stream(sctx)
	if err != nil {
		cancel()
		if ctx.Err() == nil && isProbableEOFOrTimeout(err) {
			return watch.NewEmptyWatch(), nil
		}
		return nil, err
	}
	body = cancelOnClose{body, cancel}
	dec := s.full
	if lean {
		dec = s.lean
	}
	w := newProtoWatch(body, dec)
	w.relist = relistFilterOf(ctx)
	if r := specReuseOf(ctx); lean && r != nil && dec.objType == r.typ {
		w.reuse = r
	}
	return w, nil
}

// notAcceptable reports a server that cannot answer in the content type
// asked for.
func notAcceptable(err error) bool {
	return apierrors.IsNotAcceptable(err) || apierrors.IsUnsupportedMediaType(err)
}
