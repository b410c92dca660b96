package foo_test

import (
	"context"
	"testing"

	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/webhook"
)

func size(n int32) *int32 { return &n }

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		size   *int32
		allow  bool
		reason string
	}{
		{nil, true, ""},
		{size(0), true, ""},
		{size(foo.MaxSize), true, ""},
		{size(-1), false, "spec.size -1 is negative; a Foo's size is 0 to 100"},
		{size(foo.MaxSize + 1), false, "spec.size 101 is above the maximum 100"},
	} {
		f := &foo.Foo{Spec: foo.FooSpec{Message: "m", Size: tc.size}}
		r := foo.Validate(context.Background(), webhook.Request[*foo.Foo]{Operation: webhook.Create, Object: f})
		if r.Allowed != tc.allow || r.Reason != tc.reason {
			t.Errorf("size %v: allowed %v reason %q, want %v %q", tc.size, r.Allowed, r.Reason, tc.allow, tc.reason)
		}
	}
}

func TestDefault(t *testing.T) {
	f := &foo.Foo{}
	if r := foo.Default(context.Background(), webhook.Request[*foo.Foo]{Operation: webhook.Create, Object: f}); !r.Allowed {
		t.Fatalf("Default refused: %+v", r)
	}
	if f.Spec.Size == nil || *f.Spec.Size != foo.DefaultSize {
		t.Fatalf("spec.size after Default: %v, want %d", f.Spec.Size, foo.DefaultSize)
	}
	f.Spec.Size = size(7)
	foo.Default(context.Background(), webhook.Request[*foo.Foo]{Operation: webhook.Update, Object: f})
	if *f.Spec.Size != 7 {
		t.Fatalf("Default changed a set size to %d", *f.Spec.Size)
	}
}
