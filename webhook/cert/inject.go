package cert

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

var (
	validatingGVR = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	mutatingGVR   = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}
	crdGVR        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// errStale says the object changed between read and patch.
var errStale = errors.New("object changed since read")

// target is one object whose caBundle is kept in sync.
type target struct {
	gvr  schema.GroupVersionResource
	name string
}

func (t target) String() string { return t.gvr.Resource + "/" + t.name }

// targetStatus is what an injector last saw of a target.
type targetStatus struct {
	known   bool
	absent  bool   // missing, or (a CRD) without a conversion webhook: nothing to trust
	carried []byte // the bundle every caBundle of the object holds
}

// injector keeps caBundle equal to the wanted bundle in every target, one
// goroutine per target, and tracks since when all of them carry it.
type injector struct {
	dyn     dynamic.Interface
	log     *slog.Logger
	now     func() time.Time
	retry   time.Duration
	targets []target
	onAll   func() // called (under mu) when every target comes to carry the bundle

	mu       sync.Mutex
	want     []byte
	changed  chan struct{} // closed and replaced when want changes
	status   map[target]targetStatus
	allFor   []byte // the bundle every target carries, since allSince
	allSince time.Time
}

func newInjector(dyn dynamic.Interface, o SecretOptions, onAll func()) *injector {
	in := &injector{dyn: dyn, log: o.Logger, now: o.Now, retry: o.RetryInterval, onAll: onAll,
		changed: make(chan struct{}), status: map[target]targetStatus{}}
	add := func(gvr schema.GroupVersionResource, names []string) {
		for _, n := range names {
			in.targets = append(in.targets, target{gvr, n})
		}
	}
	add(validatingGVR, o.ValidatingWebhookConfigurations)
	add(mutatingGVR, o.MutatingWebhookConfigurations)
	add(crdGVR, o.CRDs)
	return in
}

func (in *injector) start(ctx context.Context, wg *sync.WaitGroup) {
	for _, t := range in.targets {
		wg.Go(func() { in.run(ctx, t) })
	}
}

// carriedSince is since when every target carries bundle; zero if some
// target does not (yet).
func (in *injector) carriedSince(bundle []byte) time.Time {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.allFor != nil && bytes.Equal(in.allFor, bundle) {
		return in.allSince
	}
	return time.Time{}
}

func (in *injector) setBundle(b []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if bytes.Equal(in.want, b) {
		return
	}
	in.want = bytes.Clone(b)
	close(in.changed)
	in.changed = make(chan struct{})
	in.recomputeLocked()
}

func (in *injector) setStatus(t target, st targetStatus) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.status[t] = st
	in.recomputeLocked()
}

func (in *injector) recomputeLocked() {
	for _, t := range in.targets {
		st := in.status[t]
		if !st.known || !st.absent && !bytes.Equal(st.carried, in.want) {
			in.allFor = nil
			return
		}
	}
	if in.want != nil && !bytes.Equal(in.allFor, in.want) {
		in.allFor, in.allSince = in.want, in.now()
		in.onAll() // must not block or lock: it pokes a buffered channel
	}
}

func (in *injector) run(ctx context.Context, t target) {
	res := in.dyn.Resource(t.gvr)
	sel := fields.OneTermEqualSelector("metadata.name", t.name).String()
	for ctx.Err() == nil {
		in.mu.Lock()
		want, changed := in.want, in.changed
		in.mu.Unlock()
		if want == nil {
			select {
			case <-ctx.Done():
			case <-changed:
			}
			continue
		}
		rv, err := in.sync(ctx, t, want)
		if err == nil {
			wi, werr := res.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: rv})
			if werr == nil {
				select { // any change to the object, or a new bundle: check again
				case <-ctx.Done():
				case <-changed:
				case <-wi.ResultChan():
				}
				wi.Stop()
				continue
			}
			err = fmt.Errorf("watch %s: %w", t, werr)
		}
		if errors.Is(err, errStale) {
			continue // read it again now
		}
		if ctx.Err() == nil {
			in.log.Warn("cert: caBundle injection will retry", "object", t.String(), "err", err)
		}
		sleep(ctx, in.retry)
	}
}

// sync makes every caBundle of t equal to want and records what t
// carries. It returns a resourceVersion to watch t from.
func (in *injector) sync(ctx context.Context, t target, want []byte) (string, error) {
	res := in.dyn.Resource(t.gvr)
	list, err := res.List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", t.name).String()})
	if err != nil {
		return "", fmt.Errorf("get %s: %w", t, err)
	}
	if len(list.Items) == 0 {
		in.setStatus(t, targetStatus{known: true, absent: true})
		return list.GetResourceVersion(), nil
	}
	obj := &list.Items[0]
	paths, err := bundlePaths(t, obj)
	if err != nil {
		return "", err
	}
	if len(paths) == 0 {
		in.setStatus(t, targetStatus{known: true, absent: true})
		return list.GetResourceVersion(), nil
	}
	enc := base64.StdEncoding.EncodeToString(want)
	// The resourceVersion test makes the patch apply only to the object
	// read here (optimistic concurrency): no index can have shifted.
	ops := []map[string]any{{"op": "test", "path": "/metadata/resourceVersion", "value": obj.GetResourceVersion()}}
	for _, p := range paths {
		if p.current != enc {
			ops = append(ops, map[string]any{"op": "add", "path": p.path, "value": enc})
		}
	}
	if len(ops) > 1 {
		// Not carrying the bundle until the patch lands: the grace period
		// before a CA switch then counts from the patch, also when someone
		// wrote an old bundle back or recreated the object.
		in.setStatus(t, targetStatus{known: true})
		body, err := json.Marshal(ops)
		if err != nil {
			return "", fmt.Errorf("encode caBundle patch for %s: %w", t, err)
		}
		if _, err := res.Patch(ctx, t.name, types.JSONPatchType, body, metav1.PatchOptions{}); err != nil {
			in.setStatus(t, targetStatus{known: true})
			if apierrors.IsInvalid(err) || apierrors.IsConflict(err) {
				// The resourceVersion test failed: another replica (or
				// anyone) wrote the object since it was read.
				return "", errStale
			}
			return "", fmt.Errorf("patch caBundle of %s: %w", t, err)
		}
		in.log.Info("cert: caBundle updated", "object", t.String())
	}
	in.setStatus(t, targetStatus{known: true, carried: bytes.Clone(want)})
	return list.GetResourceVersion(), nil
}

// bundlePath is one caBundle field of an object.
type bundlePath struct {
	path    string // JSON pointer
	current string // base64, as stored
}

func bundlePaths(t target, obj *unstructured.Unstructured) ([]bundlePath, error) {
	if t.gvr == crdGVR {
		strategy, _, _ := unstructured.NestedString(obj.Object, "spec", "conversion", "strategy")
		if strategy != "Webhook" {
			return nil, nil // no conversion webhook: nothing calls us
		}
		cc, ok, _ := unstructured.NestedMap(obj.Object, "spec", "conversion", "webhook", "clientConfig")
		if !ok {
			return nil, fmt.Errorf("%s: conversion strategy Webhook without spec.conversion.webhook.clientConfig", t)
		}
		cur, _ := cc["caBundle"].(string)
		return []bundlePath{{
			path:    "/spec/conversion/webhook/clientConfig/caBundle",
			current: cur,
		}}, nil
	}
	hooks, _, err := unstructured.NestedSlice(obj.Object, "webhooks")
	if err != nil {
		return nil, fmt.Errorf("%s: webhooks: %w", t, err)
	}
	var out []bundlePath
	for i, h := range hooks {
		m, ok := h.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: webhooks[%d] is %T, want an object", t, i, h)
		}
		cur, _, _ := unstructured.NestedString(m, "clientConfig", "caBundle")
		out = append(out, bundlePath{
			path:    fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i),
			current: cur,
		})
	}
	return out, nil
}
