package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/watch"
)

// maxWatchFrame bounds one watch event's size. The API server's own limit
// on an object is ~1.5 MiB (etcd's request size), so this is only a guard
// against a stream that never closes its object.
const maxWatchFrame = 64 << 20

// frameReader splits a stream of JSON objects (a watch response: one event
// object after another, white space between) into frames. A frame is valid
// until the next call to next, and the caller may change its bytes.
type frameReader struct {
	r     io.Reader
	buf   []byte
	start int // first unread byte
	end   int // end of data read
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: r, buf: make([]byte, 32<<10)}
}

// fill reads more data, compacting or growing the buffer first.
func (f *frameReader) fill() error {
	if f.start > 0 {
		f.end = copy(f.buf, f.buf[f.start:f.end])
		f.start = 0
	}
	if f.end == len(f.buf) {
		if len(f.buf) >= maxWatchFrame {
			return fmt.Errorf("watch event larger than %d bytes", maxWatchFrame)
		}
		nb := make([]byte, 2*len(f.buf))
		copy(nb, f.buf[:f.end])
		f.buf = nb
	}
	n, err := f.r.Read(f.buf[f.end:])
	f.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// next returns the next frame; io.EOF when the stream ended between frames.
func (f *frameReader) next() ([]byte, error) {
	// Skip white space between frames.
	for {
		i := skipSpace(f.buf[:f.end], f.start)
		f.start = i
		if i < f.end {
			break
		}
		if err := f.fill(); err != nil {
			return nil, err
		}
	}
	if f.buf[f.start] != '{' {
		return nil, fmt.Errorf("watch stream: invalid character %q before an event", f.buf[f.start])
	}
	// Find the end of the object: track depth and strings, carrying the
	// state across reads (pos is relative to f.start, which fill may move).
	pos, depth, inString, escaped := 0, 0, false, false
	for {
		b := f.buf[f.start:f.end]
		for ; pos < len(b); pos++ {
			c := b[pos]
			switch {
			case inString:
				switch {
				case escaped:
					escaped = false
				case c == '\\':
					escaped = true
				case c == '"':
					inString = false
				}
			case c == '"':
				inString = true
			case c == '{' || c == '[':
				depth++
			case c == '}' || c == ']':
				depth--
				if depth == 0 {
					frame := b[:pos+1]
					f.start += pos + 1
					return frame, nil
				}
			}
		}
		if err := f.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// wireWatch is a watch.Interface over a response body: one goroutine reads
// frames, decodes them and sends the events; Stop closes the body and waits
// for that goroutine.
type wireWatch struct {
	body     io.ReadCloser
	ch       chan watch.Event
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

// startWireWatch starts the reader goroutine; the caller must call Stop.
func startWireWatch(body io.ReadCloser, decode func([]byte) (watch.Event, error), resource string) *wireWatch {
	w := &wireWatch{body: body, ch: make(chan watch.Event), done: make(chan struct{})}
	w.wg.Go(func() { w.read(decode, resource) })
	return w
}

func (w *wireWatch) read(decode func([]byte) (watch.Event, error), resource string) {
	defer close(w.ch)
	fr := newWatchFrames(w.body)
	for {
		frame, err := fr.next()
		if err == nil {
			var ev watch.Event
			if ev, err = decode(frame); err == nil {
				select {
				case w.ch <- ev:
					continue
				case <-w.done:
					return
				}
			}
		}
		select {
		case <-w.done:
			return // Stop closed the body: not an error
		default:
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isClosedRead(err) || errors.Is(err, context.DeadlineExceeded) {
			return // the server ended the watch, or its deadline did; the reflector resumes
		}
		st := apierrors.NewInternalError(fmt.Errorf("read watch stream of %s: %w", resource, err)).ErrStatus
		select {
		case w.ch <- watch.Event{Type: watch.Error, Object: &st}:
		case <-w.done:
		}
		return
	}
}

// ResultChan is closed when the stream ends or after Stop.
func (w *wireWatch) ResultChan() <-chan watch.Event { return w.ch }

// Stop ends the watch and waits for its reader. It is idempotent.
func (w *wireWatch) Stop() {
	w.stopOnce.Do(func() {
		close(w.done)
		w.body.Close()
	})
	w.wg.Wait()
}
