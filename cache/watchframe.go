package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/watch"
)

// This file reads a protobuf watch stream: a sequence of frames, each a
// 4-byte big-endian length and a metav1.WatchEvent message
//
//	WatchEvent:   1: type (string), 2: object (RawExtension)
//	RawExtension: 1: raw (bytes) — an enveloped object ("k8s\x00" + runtime.Unknown)
//
// It is pure apart from the io.Reader it reads: frames are parsed in place
// in one reused buffer, and nothing panics whatever the stream holds.

// maxProtoFrame bounds one frame, as client-go's stream decoder does
// (16 MiB): a larger length prefix is a broken stream, not an object.
const maxProtoFrame = 16 << 20

// protoFrameMinBuf is the buffer a protoFrameReader starts with and shrinks
// back to: one read can return many small events at once.
const protoFrameMinBuf = 32 << 10

// Protobuf field numbers of metav1.WatchEvent and runtime.RawExtension.
const (
	watchEventTypeField   = 1
	watchEventObjectField = 2
	rawExtensionRawField  = 1
)

var errFrameTooLarge = errors.New("watch frame exceeds the 16 MiB limit")

// protoFrameReader splits a stream into length-delimited frames. It reads as
// much as one Read returns, so frames that arrived together are then
// available without another Read (see buffered). Not safe for concurrent
// use.
type protoFrameReader struct {
	r          io.Reader
	buf        []byte
	start, end int   // buf[start:end] is read and not yet returned
	err        error // the Read error that ended the stream, once seen
}

// next returns the next frame. It is valid until the next call to next.
// At the end of the stream it returns io.EOF if the stream ended between
// frames, io.ErrUnexpectedEOF inside one, or the Read error.
func (f *protoFrameReader) next() ([]byte, error) {
	if err := f.fill(4); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(f.buf[f.start:])
	if n > maxProtoFrame {
		return nil, fmt.Errorf("%w: %d bytes", errFrameTooLarge, n)
	}
	size := 4 + int(n)
	if err := f.fill(size); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	frame := f.buf[f.start+4 : f.start+size]
	f.start += size
	return frame, nil
}

// buffered reports whether a whole frame is already buffered, so that next
// returns without reading.
func (f *protoFrameReader) buffered() bool {
	have := f.end - f.start
	if have < 4 {
		return false
	}
	n := binary.BigEndian.Uint32(f.buf[f.start:])
	return n <= maxProtoFrame && have >= 4+int(n)
}

// fill reads until at least n unread bytes are buffered (n ≤ 4 +
// maxProtoFrame).
func (f *protoFrameReader) fill(n int) error {
	for f.end-f.start < n {
		if f.err != nil {
			if f.err == io.EOF && f.end > f.start {
				return io.ErrUnexpectedEOF
			}
			return f.err
		}
		f.makeRoom(n)
		m, err := f.r.Read(f.buf[f.end:])
		if m < 0 || m > len(f.buf)-f.end {
			return fmt.Errorf("watch stream: reader returned %d bytes for a %d-byte buffer", m, len(f.buf)-f.end)
		}
		f.end += m
		if err != nil {
			f.err = err
		} else if m == 0 {
			continue // a Read of 0 bytes and no error: try again
		}
	}
	return nil
}

// makeRoom makes buf[start:] hold at least n bytes, moving the unread
// bytes to the front, growing the buffer, or shrinking it back after a
// large frame.
func (f *protoFrameReader) makeRoom(n int) {
	unread := f.end - f.start
	if unread == 0 {
		f.start, f.end = 0, 0
		if len(f.buf) > 4*protoFrameMinBuf && n <= protoFrameMinBuf {
			f.buf = nil
		}
	}
	if len(f.buf)-f.start >= n && f.end < len(f.buf) {
		return
	}
	if f.start > 0 {
		copy(f.buf, f.buf[f.start:f.end])
		f.start, f.end = 0, unread
	}
	if len(f.buf) < n || f.end == len(f.buf) {
		size := max(n, 2*len(f.buf), protoFrameMinBuf)
		buf := make([]byte, size)
		copy(buf, f.buf[:f.end])
		f.buf = buf
	}
}

// parseWatchEvent returns the type of a WatchEvent message and its
// object's raw bytes (a slice of frame).
func parseWatchEvent(frame []byte) (watch.EventType, []byte, error) {
	var typ watch.EventType
	var raw []byte
	var haveType, haveObject bool
	err := eachField(frame, func(num uint64, wt uint8, val []byte) error {
		switch num {
		case watchEventTypeField:
			if wt != wireBytes {
				return errWire
			}
			t, err := eventType(val)
			if err != nil {
				return err
			}
			typ, haveType = t, true
		case watchEventObjectField:
			if wt != wireBytes {
				return errWire
			}
			haveObject = true
			raw = nil
			return eachField(val, func(num uint64, wt uint8, val []byte) error {
				if num == rawExtensionRawField {
					if wt != wireBytes {
						return errWire
					}
					raw = val
				}
				return nil
			})
		}
		return nil
	})
	switch {
	case err != nil:
		return "", nil, fmt.Errorf("watch event: %w", err)
	case !haveType:
		return "", nil, errors.New("watch event without a type")
	case !haveObject || len(raw) == 0:
		return "", nil, fmt.Errorf("%s watch event without an object", typ)
	}
	return typ, raw, nil
}

// eventType maps the wire name of an event type to its constant without
// allocating.
func eventType(b []byte) (watch.EventType, error) {
	switch string(b) {
	case string(watch.Added):
		return watch.Added, nil
	case string(watch.Modified):
		return watch.Modified, nil
	case string(watch.Deleted):
		return watch.Deleted, nil
	case string(watch.Bookmark):
		return watch.Bookmark, nil
	case string(watch.Error):
		return watch.Error, nil
	}
	return "", fmt.Errorf("invalid watch event type %q", b)
}

// envelopeParts returns the kind and the raw object bytes of an enveloped
// protobuf object ("k8s\x00" + runtime.Unknown), and whether the raw bytes
// carry a content encoding. ok is false if data is not such an envelope.
// The last occurrence of a field wins, as when decoding.
func envelopeParts(data []byte) (kind, raw []byte, encoded, ok bool) {
	if len(data) < len(protobufMagic) || string(data[:len(protobufMagic)]) != string(protobufMagic) {
		return nil, nil, false, false
	}
	err := eachField(data[len(protobufMagic):], func(num uint64, wt uint8, val []byte) error {
		if num > unknownContentEncodingField {
			return nil
		}
		if wt != wireBytes {
			return errWire
		}
		switch num {
		case unknownTypeMetaField:
			return eachField(val, func(num uint64, wt uint8, val []byte) error {
				if num == typeMetaKindField {
					if wt != wireBytes {
						return errWire
					}
					kind = val
				}
				return nil
			})
		case unknownRawField:
			raw = val
		case unknownContentEncodingField:
			encoded = len(val) > 0
		}
		return nil
	})
	if err != nil {
		return nil, nil, false, false
	}
	return kind, raw, encoded, true
}
