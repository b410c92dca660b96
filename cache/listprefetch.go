package cache

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// This file runs a paginated list with the next page requested early: a
// protobuf list response starts with its ListMeta (continue token
// included) before the items, so page k+1 is requested as soon as the
// start of page k is read, and the server produces k+1 while the client
// reads and decodes k.

// pageSource is a ListerWatcher that can run a whole paginated list itself
// that way. listPages calls each with every page in order, from the
// caller's goroutine; a request or decode error ends it. It starts and
// waits for a goroutine per page request and leaves nothing running.
type pageSource interface {
	canListPages() bool
	listPages(ctx context.Context, opts metav1.ListOptions, each func(runtime.Object) error) error
}

// pageDecoders decode a list page read from the wire.
type pageDecoders struct {
	full, lean runtime.Decoder // protobuf (lean: managedFields and last-applied cut)
	json       runtime.Decoder // a server that answers in JSON
	// items, leanItems, if not nil, decode protobuf pages item by item
	// (see pageItemDecoder) when the list is lean or a relist.
	items, leanItems *protoWatchDecoder
}

// newPageDecoders returns the decoders of full's and lean's protobuf and
// JSON serializers, or nil if either lacks one.
func newPageDecoders(full, lean runtime.NegotiatedSerializer) *pageDecoders {
	find := func(ns runtime.NegotiatedSerializer, mediaType string) runtime.Decoder {
		for _, info := range ns.SupportedMediaTypes() {
			if info.MediaType == mediaType && info.Serializer != nil {
				return info.Serializer
			}
		}
		return nil
	}
	d := &pageDecoders{full: find(full, runtime.ContentTypeProtobuf), lean: find(lean, runtime.ContentTypeProtobuf), json: find(full, runtime.ContentTypeJSON)}
	if d.full == nil || d.lean == nil || d.json == nil {
		return nil
	}
	return d
}

func (l *restLW) canListPages() bool { return l.pages != nil }

// pageResp is a page request's response body or error.
type pageResp struct {
	body io.ReadCloser
	err  error
}

// listPages decodes protobuf pages item by item (pageItemDecoder) when
// the list is lean, so that specs are shared as in a watch-list, or fills
// a session that can skip unchanged items (ctx's relistFilter); else, and
// for JSON pages, with the client's serializer.
func (l *restLW) listPages(ctx context.Context, opts metav1.ListOptions, each func(runtime.Object) error) error {
	c, dec, items := l.c, l.pages.full, l.pages.items
	lean := l.lean != nil && isLean(ctx)
	if lean {
		c, dec, items = l.lean, l.pages.lean, l.pages.leanItems
	}
	var byItem *pageItemDecoder
	if relist := relistFilterOf(ctx); items != nil && (lean || relist != nil) {
		byItem = &pageItemDecoder{dec: items, relist: relist}
		if r := specReuseOf(ctx); lean && r != nil && items.objType == r.typ {
			byItem.reuse = r
		}
	}
	fetch := func(ctx context.Context, opts metav1.ListOptions) (io.ReadCloser, error) {
		return c.Get().NamespaceIfScoped(l.ns, l.ns != "").Resource(l.resource).
			VersionedParams(&opts, metav1.ParameterCodec).Stream(ctx)
	}
	decode := func(data []byte) (runtime.Object, error) {
		if !bytes.HasPrefix(data, protobufMagic) {
			return runtime.Decode(l.pages.json, data)
		}
		if byItem != nil {
			if page, ok, err := byItem.decode(data); ok {
				return page, err
			}
		}
		return runtime.Decode(dec, data)
	}
	return listPagesWith(ctx, opts, l.resource, fetch, decode, each)
}

// listPagesWith runs a paginated list: fetch requests a page, decode
// decodes one read in full, each gets every decoded page. Page k+1 is
// requested as soon as page k's continue token is known (see readPage),
// so the server produces it while page k is read and decoded.
func listPagesWith(ctx context.Context, opts metav1.ListOptions, resource string,
	fetch func(context.Context, metav1.ListOptions) (io.ReadCloser, error),
	decode func([]byte) (runtime.Object, error), each func(runtime.Object) error) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	start := func(opts metav1.ListOptions) chan pageResp {
		ch := make(chan pageResp, 1)
		wg.Go(func() {
			body, err := fetch(ctx, opts)
			ch <- pageResp{body, err}
		})
		return ch
	}
	next := start(opts)
	defer func() {
		cancel()
		wg.Wait()
		if r := <-next; r.body != nil { // a page requested and not read
			r.body.Close()
		}
	}()
	for page := 1; ; page++ {
		r := <-next
		next = make(chan pageResp, 1)
		next <- pageResp{}
		if r.err != nil {
			return r.err
		}
		requested := false
		data, token, err := readPage(r.body, func(token string) {
			opts.Continue = token
			next = start(opts)
			requested = true
		})
		r.body.Close()
		if err != nil {
			return fmt.Errorf("read page %d of %s: %w", page, resource, err)
		}
		obj, err := decode(data)
		if err != nil {
			return fmt.Errorf("decode page %d of %s (%d bytes): %w", page, resource, len(data), err)
		}
		// The decoded page's own continue token is the one that counts:
		// a token missed by the early read must not end the list short.
		lm, err := meta.ListAccessor(obj)
		if err != nil {
			return fmt.Errorf("page %d of %s: unexpected list type %T: %w", page, resource, obj, err)
		}
		if lm.GetContinue() != token {
			if requested {
				return fmt.Errorf("page %d of %s: continue token %.20q read early differs from the decoded page's %.20q", page, resource, token, lm.GetContinue())
			}
			token = lm.GetContinue()
			opts.Continue = token
			next = start(opts)
		}
		if err := each(obj); err != nil {
			return err
		}
		if token == "" {
			return nil
		}
	}
}

// readPage reads a list response body in full. As soon as the protobuf
// ListMeta at its start has been read, a non-empty continue token is
// passed to early (once); a JSON body's token is read after it was read in
// full (and passed to early then). It returns the body and the token.
func readPage(body io.Reader, early func(string)) ([]byte, string, error) {
	buf := make([]byte, 0, 64<<10)
	token, known := "", false
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if !known {
			if token, known = protoListContinue(buf); known && token != "" {
				early(token)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, "", err
		}
	}
	if !known {
		if lm, err := jsonListMeta(buf); err == nil {
			token = lm.Continue
			if token != "" {
				early(token)
			}
		}
	}
	return buf, token, nil
}

// jsonListMeta reads only the metadata of a JSON list.
func jsonListMeta(data []byte) (metav1.ListMeta, error) {
	var lm metav1.ListMeta
	start := skipSpace(data, 0)
	for m, err := range objectMembers(data, start, 1) {
		if err != nil {
			return lm, err
		}
		if m.start >= 0 && string(m.key) == "metadata" {
			err := json.Unmarshal(data[m.vStart:m.vEnd], &lm)
			return lm, err
		}
	}
	return lm, nil
}

// protoListContinue reads the continue token from the start of an
// enveloped protobuf list ("k8s\x00" + runtime.Unknown{2: raw = list{1:
// ListMeta{3: continue}}}). known is false while prefix is too short to
// tell, or is not such a list.
func protoListContinue(prefix []byte) (token string, known bool) {
	if !bytes.HasPrefix(prefix, protobufMagic) {
		return "", false
	}
	b := prefix[len(protobufMagic):]
	for {
		num, val, rest, ok := bytesFieldPrefix(b)
		if !ok {
			return "", false
		}
		if num != unknownRawField {
			if rest == nil {
				return "", false
			}
			b = rest
			continue
		}
		num, lm, rest, ok := bytesFieldPrefix(val)
		if !ok || rest == nil || num != objectMetaField {
			return "", false // ListMeta not read in full yet, or not a list
		}
		var m metav1.ListMeta
		if m.Unmarshal(lm) != nil {
			return "", false
		}
		return m.Continue, true
	}
}

// bytesFieldPrefix parses the length-delimited field at the start of b; ok
// is false if b does not hold its tag and length or the field is not
// length-delimited. When b ends inside the field, val is the part b holds
// and rest is nil.
func bytesFieldPrefix(b []byte) (num uint64, val, rest []byte, ok bool) {
	tag, n := binary.Uvarint(b)
	if n <= 0 || tag&7 != wireBytes {
		return 0, nil, nil, false
	}
	size, m := binary.Uvarint(b[n:])
	if m <= 0 {
		return 0, nil, nil, false
	}
	start := n + m
	if uint64(len(b)-start) < size {
		return tag >> 3, b[start:], nil, true
	}
	end := start + int(size)
	return tag >> 3, b[start:end], b[end:], true
}

// listPrefetched is list for a pageSource: a paginated consistent list into
// a replace session, the next page requested while this one is read.
func (r *reflector[T]) listPrefetched(ctx context.Context, ps pageSource) error {
	opts := r.baseOptions()
	opts.Limit = r.o.pageSize
	for restarted := false; ; restarted = true {
		session := r.store.BeginReplace()
		pages, rv := 0, ""
		// The source may skip decoding what the store holds unchanged
		// (relistskip.go); it is the reflector's own (pageSource), so its
		// items reach this function unread.
		lctx, revoke := withRelistFilter(ctx, session)
		err := ps.listPages(lctx, opts, func(obj runtime.Object) error {
			lm, err := meta.ListAccessor(obj)
			if err != nil {
				return fmt.Errorf("unexpected list type %T: %w", obj, err)
			}
			pages++
			rv = lm.GetResourceVersion()
			return r.putPage(obj, session)
		})
		revoke()
		if err != nil {
			if isStale(err) && pages > 0 && !restarted {
				continue // the continue token expired mid-list: start over once
			}
			return fmt.Errorf("list %s: %w", r.resource, err)
		}
		r.finish(session, rv)
		return nil
	}
}

// putPage puts a list page's items into session. Items of an objectPage
// are the decoded objects specReuse knows (it forgets them once the page
// is stored) or unchangedObjects to keep.
func (r *reflector[T]) putPage(obj runtime.Object, session *ReplaceSession[T]) error {
	put := func(o runtime.Object) {
		if t, ok := r.decodeOrSkip(o); ok && session.put(t) && r.reuse != nil {
			r.reuse.stored(KeyOf(t), t)
		}
	}
	page, ok := obj.(*objectPage)
	if !ok {
		return meta.EachListItemWithAlloc(obj, func(o runtime.Object) error {
			put(o)
			return nil
		})
	}
	if r.reuse != nil {
		defer r.reuse.batchDone()
	}
	for _, o := range page.Items {
		if u, ok := o.(*unchangedObject); ok {
			if err := r.keep(u, session); err != nil {
				return err
			}
			continue
		}
		put(o)
	}
	return nil
}
