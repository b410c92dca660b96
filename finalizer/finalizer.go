// Package finalizer runs cleanup before an object is deleted, the way
// Kubernetes finalizers intend: a controller adds its finalizer to the
// objects it manages; when one is deleted, the API server only sets its
// deletionTimestamp and waits; the controller cleans up (external
// resources, say) and then removes its finalizer, and the object goes.
//
//	deleting, err := finalizer.Handle(ctx, c, obj, "example.com/cleanup", func(ctx context.Context) error {
//		return deleteExternalThing(ctx, obj)
//	})
//	if deleting || err != nil {
//		return controller.Result{}, err // nothing else to do for an object on its way out
//	}
//
// Writes are merge patches with an optimistic lock on the object's
// resourceVersion, so a finalizer list changed by someone else in between
// is never overwritten (the write fails with a Conflict and the reconcile is
// retried). Through Skiff's client, the next reconcile reads the patched
// object even before the watch delivers it (read-your-own-writes), so the
// finalizer is not added twice and cleanup does not run again after a
// successful removal. Cleanup still must be idempotent: if the process
// dies between a finished cleanup and the removal, it runs again.
package finalizer

import (
	"context"
	"fmt"
	"slices"

	"github.com/skiffkit/skiff/client"
)

// Has reports whether obj carries finalizer name.
func Has(obj client.Object, name string) bool { return slices.Contains(obj.GetFinalizers(), name) }

// Add adds name to obj's finalizers in memory; it reports whether obj changed.
func Add(obj client.Object, name string) bool {
	if Has(obj, name) {
		return false
	}
	obj.SetFinalizers(append(obj.GetFinalizers(), name))
	return true
}

// Remove removes name from obj's finalizers in memory; it reports whether
// obj changed.
func Remove(obj client.Object, name string) bool {
	fs := obj.GetFinalizers()
	kept := slices.DeleteFunc(slices.Clone(fs), func(f string) bool { return f == name })
	if len(kept) == len(fs) {
		return false
	}
	obj.SetFinalizers(kept)
	return true
}

// Ensure adds finalizer name to obj on the server unless obj has it or is
// being deleted (a finalizer cannot be added then). It reports whether it
// wrote; obj is updated with the server's answer.
func Ensure(ctx context.Context, c *client.Client, obj client.Object, name string) (bool, error) {
	if obj.GetDeletionTimestamp() != nil || Has(obj, name) {
		return false, nil
	}
	if err := validName(name); err != nil {
		return false, err
	}
	orig := obj.DeepCopyObject().(client.Object)
	Add(obj, name)
	if err := c.Patch(ctx, obj, client.MergeFromWithOptimisticLock(orig)); err != nil {
		return false, fmt.Errorf("add finalizer %s to %s: %w", name, client.KeyOf(obj), err)
	}
	return true, nil
}

// Handle is the whole finalizer protocol for one reconcile of obj. If obj is
// not being deleted, it ensures the finalizer and reports deleting=false.
// If obj is being deleted and still carries the finalizer, it runs cleanup
// and, when cleanup succeeds, removes the finalizer; it reports
// deleting=true. An error from cleanup is returned as is (so
// controller.Terminal and controller.RetryAfter keep their meaning) and the
// finalizer stays.
func Handle(ctx context.Context, c *client.Client, obj client.Object, name string, cleanup func(ctx context.Context) error) (deleting bool, err error) {
	if obj.GetDeletionTimestamp() == nil {
		_, err := Ensure(ctx, c, obj, name)
		return false, err
	}
	if !Has(obj, name) {
		return true, nil
	}
	if err := cleanup(ctx); err != nil {
		return true, err
	}
	orig := obj.DeepCopyObject().(client.Object)
	Remove(obj, name)
	if err := c.Patch(ctx, obj, client.MergeFromWithOptimisticLock(orig)); err != nil {
		return true, fmt.Errorf("remove finalizer %s from %s after cleanup: %w", name, client.KeyOf(obj), err)
	}
	return true, nil
}

// validName checks the form Kubernetes requires of finalizer names that are
// not built in: a qualified name with a domain prefix, "example.com/name".
func validName(name string) error {
	domain, rest, ok := cutLast(name, '/')
	if !ok || domain == "" || rest == "" || !slices.Contains([]byte(domain), '.') {
		return fmt.Errorf("finalizer name %q must be domain-qualified, like example.com/cleanup", name)
	}
	return nil
}

func cutLast(s string, sep byte) (before, after string, found bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
