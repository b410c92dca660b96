package client

import (
	"encoding/json"
	"errors"
	"fmt"
)

// ErrNotComposable is returned by ComposeMergePatches when no single JSON
// merge patch has the effect of applying the two in turn.
var ErrNotComposable = errors.New("merge patches cannot be composed into one")

// ComposeMergePatches returns one JSON merge patch (RFC 7386) whose effect on
// any document is that of applying first and then second. Both must be JSON
// objects. Keys of second override those of first; nested objects compose
// key by key; a null (delete) in second stays a null.
//
// Merge patches are not closed under composition: when first sets a key to
// a non-object (a scalar, a list or null) and second sets the same key to an
// object, applying them in turn replaces the key's value with second's
// object, but a single merge patch would merge that object into whatever the
// document held. Then ComposeMergePatches returns ErrNotComposable and the
// caller must send the patches separately, in order. It is a pure function:
// the inputs are not changed.
func ComposeMergePatches(first, second []byte) ([]byte, error) {
	a, err := decodePatchObject(first)
	if err != nil {
		return nil, fmt.Errorf("first patch: %w", err)
	}
	b, err := decodePatchObject(second)
	if err != nil {
		return nil, fmt.Errorf("second patch: %w", err)
	}
	c, err := composeObjects(a, b)
	if err != nil {
		return nil, err
	}
	return json.Marshal(c)
}

// decodePatchObject parses a merge patch that must be a JSON object.
func decodePatchObject(p []byte) (map[string]any, error) {
	var v any
	if err := json.Unmarshal(p, &v); err != nil {
		return nil, fmt.Errorf("not JSON: %w", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("a merge patch of an object must be a JSON object, got %.40s", p)
	}
	return m, nil
}

// composeObjects composes two decoded merge-patch objects into a new map; a
// and b are not changed (nested maps of b that are used whole are shared).
func composeObjects(a, b map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(a)+len(b))
	for k, v := range a {
		out[k] = v
	}
	for k, bv := range b {
		bm, bIsObj := bv.(map[string]any)
		av, inA := a[k]
		if !bIsObj || !inA {
			out[k] = bv
			continue
		}
		am, aIsObj := av.(map[string]any)
		if !aIsObj {
			return nil, fmt.Errorf("%w: key %q is set to a non-object, then to an object", ErrNotComposable, k)
		}
		c, err := composeObjects(am, bm)
		if err != nil {
			return nil, fmt.Errorf("%w (under %q)", err, k)
		}
		out[k] = c
	}
	return out, nil
}
