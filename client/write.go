package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/cache"
)

// WriteOption changes one write.
type WriteOption func(*writeOptions)

type writeOptions struct {
	fieldManager string
	force        bool
	dryRun       bool
	propagation  *metav1.DeletionPropagation
	uid          types.UID
}

// FieldOwner names the field manager of a write; Apply requires it.
func FieldOwner(name string) WriteOption { return func(o *writeOptions) { o.fieldManager = name } }

// ForceOwnership makes Apply take over fields other managers own instead of
// failing with a conflict.
func ForceOwnership(o *writeOptions) { o.force = true }

// DryRun asks the server to validate and admit the write without storing it.
// A dry-run write is not remembered for read-your-own-writes.
func DryRun(o *writeOptions) { o.dryRun = true }

// PropagationPolicy sets how Delete treats dependents (Orphan, Background,
// Foreground). Default: the resource's own default (Background for most).
func PropagationPolicy(p metav1.DeletionPropagation) WriteOption {
	return func(o *writeOptions) { o.propagation = &p }
}

// Preconditions makes Delete fail with a Conflict unless the object still has
// obj's UID (so a re-created object of the same name is not deleted).
func Preconditions(obj Object) WriteOption {
	uid := obj.GetUID()
	return func(o *writeOptions) { o.uid = uid }
}

func collect(opts []WriteOption) writeOptions {
	var o writeOptions
	for _, f := range opts {
		f(&o)
	}
	return o
}

func (o writeOptions) dryRunList() []string {
	if o.dryRun {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// Create creates obj and updates it with the server's answer (name,
// resourceVersion, defaults, ...).
func (c *Client) Create(ctx context.Context, obj Object, opts ...WriteOption) error {
	o := collect(opts)
	m, err := c.mappingFor(obj)
	if err != nil {
		return err
	}
	defer c.inFlight(obj)()
	err = m.rc.Post().NamespaceIfScoped(obj.GetNamespace(), m.namespaced).Resource(m.gvr.Resource).
		VersionedParams(&metav1.CreateOptions{FieldManager: o.fieldManager, DryRun: o.dryRunList()}, metav1.ParameterCodec).
		Body(obj).Do(ctx).Into(obj)
	return c.done(obj, o, err)
}

// Update replaces obj (optimistic concurrency: a stale resourceVersion is a
// Conflict) and updates it with the server's answer. Status is ignored by
// resources with a status subresource; use UpdateStatus.
func (c *Client) Update(ctx context.Context, obj Object, opts ...WriteOption) error {
	return c.put(ctx, obj, "", opts)
}

// UpdateStatus replaces obj's status subresource.
func (c *Client) UpdateStatus(ctx context.Context, obj Object, opts ...WriteOption) error {
	return c.put(ctx, obj, "status", opts)
}

func (c *Client) put(ctx context.Context, obj Object, sub string, opts []WriteOption) error {
	o := collect(opts)
	m, err := c.mappingFor(obj)
	if err != nil {
		return err
	}
	defer c.inFlight(obj)()
	req := m.rc.Put().NamespaceIfScoped(obj.GetNamespace(), m.namespaced).Resource(m.gvr.Resource).Name(obj.GetName())
	if sub != "" {
		req = req.SubResource(sub)
	}
	err = req.VersionedParams(&metav1.UpdateOptions{FieldManager: o.fieldManager, DryRun: o.dryRunList()}, metav1.ParameterCodec).
		Body(obj).Do(ctx).Into(obj)
	return c.done(obj, o, err)
}

// Patch is a patch to send: see MergeFrom, JSONPatch and RawPatch.
type Patch interface {
	// Type is the patch's content type.
	Type() types.PatchType
	// Data returns the patch body for obj.
	Data(obj Object) ([]byte, error)
}

// Patch patches obj and updates it with the server's answer.
func (c *Client) Patch(ctx context.Context, obj Object, p Patch, opts ...WriteOption) error {
	return c.patch(ctx, obj, "", p, opts)
}

// PatchStatus patches obj's status subresource.
func (c *Client) PatchStatus(ctx context.Context, obj Object, p Patch, opts ...WriteOption) error {
	return c.patch(ctx, obj, "status", p, opts)
}

func (c *Client) patch(ctx context.Context, obj Object, sub string, p Patch, opts []WriteOption) error {
	if p == nil {
		return errors.New("client: nil Patch")
	}
	o := collect(opts)
	data, err := p.Data(obj)
	if err != nil {
		return fmt.Errorf("client: build %s patch for %s: %w", p.Type(), KeyOf(obj), err)
	}
	return c.sendPatch(ctx, obj, sub, p.Type(), data, o)
}

func (c *Client) sendPatch(ctx context.Context, obj Object, sub string, pt types.PatchType, data []byte, o writeOptions) error {
	m, err := c.mappingFor(obj)
	if err != nil {
		return err
	}
	po := &metav1.PatchOptions{FieldManager: o.fieldManager, DryRun: o.dryRunList()}
	if pt == types.ApplyPatchType || pt == types.ApplyCBORPatchType {
		po.Force = &o.force
	}
	defer c.inFlight(obj)()
	req := m.rc.Patch(pt).NamespaceIfScoped(obj.GetNamespace(), m.namespaced).Resource(m.gvr.Resource).Name(obj.GetName())
	if sub != "" {
		req = req.SubResource(sub)
	}
	err = req.VersionedParams(po, metav1.ParameterCodec).Body(data).Do(ctx).Into(obj)
	return c.done(obj, o, err)
}

// Apply sends obj as a server-side apply configuration with the field
// manager given by FieldOwner (required), and updates obj with the result.
// The configuration is obj as JSON: build obj from scratch with just the
// fields this manager owns, not from a fetched object (that would claim
// every field). Beware Go types whose zero fields serialise anyway (fields
// without omitempty, such as a Deployment's pod template containers): they
// are sent, and so claimed or rejected, too. Status is ignored by resources
// with a status subresource; use ApplyStatus.
func (c *Client) Apply(ctx context.Context, obj Object, opts ...WriteOption) error {
	return c.apply(ctx, obj, "", opts)
}

// ApplyStatus applies obj's status through the status subresource.
func (c *Client) ApplyStatus(ctx context.Context, obj Object, opts ...WriteOption) error {
	return c.apply(ctx, obj, "status", opts)
}

func (c *Client) apply(ctx context.Context, obj Object, sub string, opts []WriteOption) error {
	o := collect(opts)
	if o.fieldManager == "" {
		return fmt.Errorf("client: apply %s: server-side apply needs a field manager (client.FieldOwner)", KeyOf(obj))
	}
	gvk, err := c.GVKFor(obj)
	if err != nil {
		return err
	}
	body, err := applyBody(obj, gvk.GroupVersion().String(), gvk.Kind)
	if err != nil {
		return fmt.Errorf("client: apply %s: %w", KeyOf(obj), err)
	}
	return c.sendPatch(ctx, obj, sub, types.ApplyPatchType, body, o)
}

// applyBody is obj as JSON with apiVersion and kind set, and without the
// fields an apply configuration must not carry (resourceVersion is kept only
// if set, as a precondition; managedFields and creationTimestamp are never
// sent).
func applyBody(obj Object, apiVersion, kind string) ([]byte, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	m["apiVersion"], m["kind"] = apiVersion, kind
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
		delete(md, "creationTimestamp")
	}
	return json.Marshal(m)
}

// Delete deletes obj. After it returns nil, cached reads through this
// client see obj as gone (or, if finalizers keep it, as the server returned
// it, with its deletionTimestamp). A missing object is a NotFound error.
func (c *Client) Delete(ctx context.Context, obj Object, opts ...WriteOption) error {
	o := collect(opts)
	m, err := c.mappingFor(obj)
	if err != nil {
		return err
	}
	do := &metav1.DeleteOptions{PropagationPolicy: o.propagation, DryRun: o.dryRunList()}
	if o.uid != "" {
		do.Preconditions = &metav1.Preconditions{UID: &o.uid}
	}
	defer c.inFlight(obj)()
	res := m.rc.Delete().NamespaceIfScoped(obj.GetNamespace(), m.namespaced).Resource(m.gvr.Resource).Name(obj.GetName()).
		Body(do).Do(ctx)
	if err := res.Error(); err != nil {
		return err
	}
	if o.dryRun {
		return nil
	}
	typ, key := reflect.TypeOf(obj), cache.KeyOf(obj)
	// The answer is the object: gone, or still there with a
	// deletionTimestamp while finalizers run.
	after := obj.DeepCopyObject().(Object)
	if err := res.Into(after); err == nil && after.GetDeletionTimestamp() != nil && len(after.GetFinalizers()) > 0 {
		c.track.wrote(typ, key, after, after.GetResourceVersion(), false, c.informerRV)
		return nil
	}
	c.track.wrote(typ, key, nil, obj.GetResourceVersion(), true, c.informerRV)
	return nil
}

// inFlight marks a write of obj as sent until the returned func is called
// (after done has recorded it), for IsOwnWrite.
func (c *Client) inFlight(obj Object) func() {
	typ, key := reflect.TypeOf(obj), cache.KeyOf(obj)
	c.track.begin(typ, key)
	return func() { c.track.end(typ, key) }
}

// done records a successful write for read-your-own-writes.
func (c *Client) done(obj Object, o writeOptions, err error) error {
	if err != nil || o.dryRun {
		return err
	}
	typ, key := reflect.TypeOf(obj), cache.KeyOf(obj)
	if obj.GetDeletionTimestamp() != nil && len(obj.GetFinalizers()) == 0 {
		// The write removed the last finalizer of an object being deleted:
		// the server deleted it, and its answer may carry the version it
		// had before. Remember a delete, not a write.
		c.track.wrote(typ, key, nil, obj.GetResourceVersion(), true, c.informerRV)
		return nil
	}
	c.track.wrote(typ, key, obj.DeepCopyObject(), obj.GetResourceVersion(), false, c.informerRV)
	return nil
}

type mergeFrom struct {
	orig Object
	lock bool
}

// MergeFrom is a JSON merge patch (RFC 7386) of the changes made to obj
// since orig, a deep copy taken before changing it:
//
//	orig := dep.DeepCopy()
//	dep.Spec.Replicas = ptr.To(int32(3))
//	err := c.Patch(ctx, dep, client.MergeFrom(orig))
//
// Lists are replaced whole (merge patches cannot change one element).
func MergeFrom(orig Object) Patch { return mergeFrom{orig: orig} }

// MergeFromWithOptimisticLock is MergeFrom that also sends obj's
// resourceVersion, so the patch fails with a Conflict if the object changed
// on the server since it was read.
func MergeFromWithOptimisticLock(orig Object) Patch { return mergeFrom{orig: orig, lock: true} }

func (mergeFrom) Type() types.PatchType { return types.MergePatchType }

func (p mergeFrom) Data(obj Object) ([]byte, error) {
	if p.orig == nil {
		return nil, errors.New("MergeFrom needs the original object")
	}
	a, err := json.Marshal(p.orig)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	patch, err := jsonpatch.CreateMergePatch(a, b)
	if err != nil || !p.lock {
		return patch, err
	}
	var m map[string]any
	if err := json.Unmarshal(patch, &m); err != nil {
		return nil, err
	}
	md, _ := m["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		m["metadata"] = md
	}
	md["resourceVersion"] = obj.GetResourceVersion()
	return json.Marshal(m)
}

// JSONPatchOp is one RFC 6902 operation.
type JSONPatchOp struct {
	Op    string `json:"op"` // add, remove, replace, move, copy, test
	Path  string `json:"path"`
	From  string `json:"from,omitempty"`
	Value any    `json:"value"` // ignored by remove, move and copy
}

type jsonPatch []JSONPatchOp

// JSONPatch is an RFC 6902 JSON patch of the given operations. A "test"
// operation makes the whole patch fail (422 Invalid) when its value does
// not match, which gives precise optimistic concurrency.
func JSONPatch(ops ...JSONPatchOp) Patch { return jsonPatch(ops) }

func (jsonPatch) Type() types.PatchType { return types.JSONPatchType }

func (p jsonPatch) Data(Object) ([]byte, error) {
	for i, op := range p {
		switch op.Op {
		case "add", "remove", "replace", "move", "copy", "test":
		default:
			return nil, fmt.Errorf("operation %d: unknown op %q", i, op.Op)
		}
	}
	return json.Marshal([]JSONPatchOp(p))
}

type rawPatch struct {
	pt   types.PatchType
	data []byte
}

// RawPatch sends data as a patch of type pt as is.
func RawPatch(pt types.PatchType, data []byte) Patch { return rawPatch{pt, data} }

func (p rawPatch) Type() types.PatchType       { return p.pt }
func (p rawPatch) Data(Object) ([]byte, error) { return p.data, nil }
