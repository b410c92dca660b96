package builder

import (
	"maps"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
)

// Predicate filters changes before they enqueue a key. A nil func passes
// everything of that kind.
type Predicate[T any] struct {
	Create func(obj T) bool
	Update func(old, new T) bool
	Delete func(obj T) bool
}

// Generational is an object with a metadata.generation (spec changes bump
// it; status and metadata changes do not).
type Generational interface {
	cache.Object
	GetGeneration() int64
}

// GenerationChanged passes updates that changed metadata.generation, so
// status-only and metadata-only updates do not trigger a reconcile.
// Creates and deletes pass.
func GenerationChanged[T Generational]() Predicate[T] {
	return Predicate[T]{Update: func(old, new T) bool { return old.GetGeneration() != new.GetGeneration() }}
}

// LabelsChanged passes updates that changed labels. Creates and deletes pass.
func LabelsChanged[T cache.Object]() Predicate[T] {
	return Predicate[T]{Update: func(old, new T) bool { return !maps.Equal(old.GetLabels(), new.GetLabels()) }}
}

// Annotated is an object with annotations.
type Annotated interface {
	cache.Object
	GetAnnotations() map[string]string
}

// AnnotationsChanged passes updates that changed annotations. Creates and
// deletes pass.
func AnnotationsChanged[T Annotated]() Predicate[T] {
	return Predicate[T]{Update: func(old, new T) bool { return !maps.Equal(old.GetAnnotations(), new.GetAnnotations()) }}
}

// Or passes a change if any of preds passes it (a nil func counts as pass).
func Or[T any](preds ...Predicate[T]) Predicate[T] {
	return Predicate[T]{
		Create: func(obj T) bool {
			return anyOf(preds, func(p Predicate[T]) bool { return p.Create == nil || p.Create(obj) })
		},
		Update: func(old, new T) bool {
			return anyOf(preds, func(p Predicate[T]) bool { return p.Update == nil || p.Update(old, new) })
		},
		Delete: func(obj T) bool {
			return anyOf(preds, func(p Predicate[T]) bool { return p.Delete == nil || p.Delete(obj) })
		},
	}
}

func anyOf[T any](preds []Predicate[T], ok func(Predicate[T]) bool) bool {
	for _, p := range preds {
		if ok(p) {
			return true
		}
	}
	return false
}

// NotOwnWrites passes updates except those whose new version this process
// wrote through c (see client.Client.IsOwnWrite): the reconcile that wrote
// it already knows that state, so reconciling it again only confirms it.
// An update that carries someone else's change as well has a version of
// its own and passes. Creates and deletes pass.
func NotOwnWrites[T client.Object](c *client.Client) Predicate[T] {
	return Predicate[T]{Update: func(_, new T) bool { return !c.IsOwnWrite(new) }}
}
