package cache

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Paginated list pages decoded the way the protobuf watch reader decodes
// a watch-list's events (watchstream.go), item by item: each item is cut
// lean on its own (wire.go), its spec reused or shared through the
// informer's specReuse and podSpecSharer (specreuse.go, specshare.go), and
// on a relist an item the store already holds at the same
// resourceVersion is not decoded at all (relistskip.go). Decoding the
// whole page with the protobuf serializer instead makes a typed list of
// every item's full value, copies each out of it, and shares nothing of
// the pods' template parts: more CPU, and more heap per cached pod.
//
// The items come out equal to the serializer's (tested in
// pagedecode_test.go): the walk follows the list message as the generated
// Unmarshal of a typed list does (ListMeta in field 1, merged if repeated;
// each field 2 an item decoded into a new object; other fields skipped),
// and anything it does not follow (not an envelope of T's list kind, a
// content encoding, a malformed field, field 1 or 2 not length-delimited)
// is left to the serializer, which reports what is wrong as before.

// objectPage is a list page decoded item by item. Its items are the
// decoded objects themselves (specReuse knows them by identity until the
// page is stored) or, for items a relist found unchanged,
// unchangedObjects.
type objectPage struct {
	metav1.ListMeta
	Items []runtime.Object
}

// GetObjectKind implements runtime.Object; an objectPage has no kind.
func (p *objectPage) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// DeepCopyObject implements runtime.Object.
func (p *objectPage) DeepCopyObject() runtime.Object {
	c := &objectPage{Items: make([]runtime.Object, len(p.Items))}
	p.ListMeta.DeepCopyInto(&c.ListMeta)
	for i, o := range p.Items {
		c.Items[i] = o.DeepCopyObject()
	}
	return c
}

// pageItemDecoder decodes the protobuf pages of one paginated list item
// by item. It is used on one goroutine at a time (listPagesWith decodes on
// the caller's), and keeps its scratch buffers for the whole list.
type pageItemDecoder struct {
	dec *protoWatchDecoder // kinds and constructor of T; lean: cut items
	// reuse, if not nil, decodes items reusing or sharing specs.
	reuse *specReuse
	// relist, if not nil, is the replace session the list fills: items
	// it finds unchanged become unchangedObjects.
	relist relistFilter

	strip, rest []byte // scratch: one item cut lean; one item without its spec
}

// decode decodes the enveloped protobuf list data. ok is false (and
// nothing decoded) if data is not a list the walk follows; then decode
// data whole. An error names the item that could not be decoded.
func (d *pageItemDecoder) decode(data []byte) (_ *objectPage, ok bool, _ error) {
	if d.dec.newObject == nil {
		return nil, false, nil
	}
	kind, raw, encoded, ok := envelopeParts(data)
	if !ok || encoded || string(kind) != d.dec.kinds.List {
		return nil, false, nil
	}
	n := 0
	err := eachField(raw, func(num uint64, wt uint8, _ []byte) error {
		if num == objectMetaField || num == listItemsField {
			if wt != wireBytes {
				return errWire
			}
			if num == listItemsField {
				n++
			}
		}
		return nil
	})
	if err != nil {
		return nil, false, nil
	}
	page := &objectPage{Items: make([]runtime.Object, 0, n)}
	err = eachField(raw, func(num uint64, _ uint8, val []byte) error {
		switch num {
		case objectMetaField:
			if err := page.ListMeta.Unmarshal(val); err != nil {
				return fmt.Errorf("unmarshal %s metadata: %w", d.dec.kinds.List, err)
			}
		case listItemsField:
			obj, err := d.item(val)
			if err != nil {
				return fmt.Errorf("item %d of %s: %w", len(page.Items), d.dec.kinds.List, err)
			}
			page.Items = append(page.Items, obj)
		}
		return nil
	})
	if cap(d.strip) > 1<<20 {
		d.strip = nil
	}
	if cap(d.rest) > 1<<20 {
		d.rest = nil
	}
	if err != nil {
		return nil, true, err
	}
	return page, true, nil
}

// item decodes one item's object message. Everything it returns is
// copied out of raw and the scratch buffers.
func (d *pageItemDecoder) item(raw []byte) (runtime.Object, error) {
	if d.relist != nil {
		ns, name, rv, ok := peekMeta(raw)
		if ok && len(name) > 0 && len(rv) > 0 && d.relist.unchanged(ns, name, rv) {
			return &unchangedObject{
				ObjectMeta: metav1.ObjectMeta{Namespace: string(ns), Name: string(name), ResourceVersion: string(rv)},
				from:       d.relist,
			}, nil
		}
	}
	if d.dec.lean {
		// An item the cut does not follow is decoded as it came; the
		// informer's transform drops what the cut would have.
		if out, err := stripObject(d.strip[:0], raw); err == nil {
			raw, d.strip = out, out[:0]
		}
	}
	obj := d.dec.newObject()
	if d.reuse != nil {
		rest, done, err := d.reuse.decode(obj, raw, d.rest)
		d.rest = rest[:0]
		if err != nil {
			return nil, fmt.Errorf("unmarshal %s: %w", d.dec.kinds.Object, err)
		}
		if done {
			return obj, nil
		}
	}
	if err := obj.Unmarshal(raw); err != nil {
		return nil, fmt.Errorf("unmarshal %s: %w", d.dec.kinds.Object, err)
	}
	return obj, nil
}
