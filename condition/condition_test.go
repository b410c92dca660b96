package condition

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func cond(t string, s metav1.ConditionStatus, reason string) metav1.Condition {
	return metav1.Condition{Type: t, Status: s, Reason: reason}
}

func TestValidate(t *testing.T) {
	ok := cond("Ready", metav1.ConditionTrue, "AllGood")
	tests := []struct {
		name  string
		mod   func(c *metav1.Condition)
		field string // substring the error must contain; "" means valid
	}{
		{"valid", func(c *metav1.Condition) {}, ""},
		{"prefixed type", func(c *metav1.Condition) { c.Type = "example.com/Synced" }, ""},
		{"type with dots, dashes, underscores", func(c *metav1.Condition) { c.Type = "a.b-c_D" }, ""},
		{"one-letter type", func(c *metav1.Condition) { c.Type = "R" }, ""},
		{"longest type", func(c *metav1.Condition) { c.Type = strings.Repeat("a", MaxTypeLength) }, ""},
		{"status Unknown", func(c *metav1.Condition) { c.Status = metav1.ConditionUnknown }, ""},
		{"reason with ,:_", func(c *metav1.Condition) { c.Reason = "A_b,c:D9" }, ""},
		{"one-letter reason", func(c *metav1.Condition) { c.Reason = "X" }, ""},
		{"longest reason", func(c *metav1.Condition) { c.Reason = strings.Repeat("R", MaxReasonLength) }, ""},
		{"longest message", func(c *metav1.Condition) { c.Message = strings.Repeat("m", MaxMessageLength) }, ""},

		{"empty type", func(c *metav1.Condition) { c.Type = "" }, "type is empty"},
		{"type too long", func(c *metav1.Condition) { c.Type = strings.Repeat("a", MaxTypeLength+1) }, "type"},
		{"type with space", func(c *metav1.Condition) { c.Type = "Not Ready" }, `type "Not Ready"`},
		{"type ending in dash", func(c *metav1.Condition) { c.Type = "Ready-" }, `type "Ready-"`},
		{"type with uppercase prefix", func(c *metav1.Condition) { c.Type = "Example.com/Ready" }, `type "Example.com/Ready"`},
		{"type with empty name after prefix", func(c *metav1.Condition) { c.Type = "example.com/" }, `type "example.com/"`},
		{"empty status", func(c *metav1.Condition) { c.Status = "" }, `status ""`},
		{"lowercase status", func(c *metav1.Condition) { c.Status = "true" }, `status "true"`},
		{"empty reason", func(c *metav1.Condition) { c.Reason = "" }, "reason is empty"},
		{"reason starting with digit", func(c *metav1.Condition) { c.Reason = "1Bad" }, `reason "1Bad"`},
		{"reason with space", func(c *metav1.Condition) { c.Reason = "Not Good" }, `reason "Not Good"`},
		{"reason with dash", func(c *metav1.Condition) { c.Reason = "Not-Good" }, `reason "Not-Good"`},
		{"reason ending in colon", func(c *metav1.Condition) { c.Reason = "Bad:" }, `reason "Bad:"`},
		{"reason too long", func(c *metav1.Condition) { c.Reason = strings.Repeat("R", MaxReasonLength+1) }, "reason is 1025 characters"},
		{"message too long", func(c *metav1.Condition) { c.Message = strings.Repeat("m", MaxMessageLength+1) }, "message is 32769 bytes"},
		{"negative generation", func(c *metav1.Condition) { c.ObservedGeneration = -1 }, "observedGeneration -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := Validate(c)
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Validate(%+v) = %v, want nil", c, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%+v) = nil, want an error mentioning %q", c, tt.field)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v does not wrap ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not mention %q", err, tt.field)
			}
		})
	}
}

func TestSet(t *testing.T) {
	t1 := t0.Add(time.Minute)
	ready := func(s metav1.ConditionStatus, reason, msg string, gen int64, ltt time.Time) metav1.Condition {
		return metav1.Condition{Type: "Ready", Status: s, Reason: reason, Message: msg, ObservedGeneration: gen, LastTransitionTime: metav1.NewTime(ltt)}
	}
	synced := metav1.Condition{Type: "Synced", Status: metav1.ConditionTrue, Reason: "Done", LastTransitionTime: metav1.NewTime(t0)}
	tests := []struct {
		name    string
		before  []metav1.Condition
		set     metav1.Condition
		now     time.Time
		want    []metav1.Condition
		changed bool
	}{
		{
			name:    "append to nil",
			set:     ready("True", "Up", "", 1, time.Time{}),
			now:     t0,
			want:    []metav1.Condition{ready("True", "Up", "", 1, t0)},
			changed: true,
		},
		{
			name:    "append after others, keeping their order",
			before:  []metav1.Condition{synced},
			set:     ready("False", "Down", "m", 2, time.Time{}),
			now:     t0,
			want:    []metav1.Condition{synced, ready("False", "Down", "m", 2, t0)},
			changed: true,
		},
		{
			name:    "same everything: no change, time kept",
			before:  []metav1.Condition{ready("True", "Up", "m", 1, t0)},
			set:     ready("True", "Up", "m", 1, time.Time{}),
			now:     t1,
			want:    []metav1.Condition{ready("True", "Up", "m", 1, t0)},
			changed: false,
		},
		{
			name:    "status change moves lastTransitionTime",
			before:  []metav1.Condition{synced, ready("True", "Up", "m", 1, t0)},
			set:     ready("False", "Down", "m", 1, time.Time{}),
			now:     t1,
			want:    []metav1.Condition{synced, ready("False", "Down", "m", 1, t1)},
			changed: true,
		},
		{
			name:    "reason change alone keeps lastTransitionTime",
			before:  []metav1.Condition{ready("True", "Up", "m", 1, t0)},
			set:     ready("True", "StillUp", "m", 1, time.Time{}),
			now:     t1,
			want:    []metav1.Condition{ready("True", "StillUp", "m", 1, t0)},
			changed: true,
		},
		{
			name:    "message change alone keeps lastTransitionTime",
			before:  []metav1.Condition{ready("True", "Up", "m", 1, t0)},
			set:     ready("True", "Up", "other", 1, time.Time{}),
			now:     t1,
			want:    []metav1.Condition{ready("True", "Up", "other", 1, t0)},
			changed: true,
		},
		{
			name:    "new generation alone keeps lastTransitionTime",
			before:  []metav1.Condition{ready("True", "Up", "m", 1, t0)},
			set:     ready("True", "Up", "m", 2, time.Time{}),
			now:     t1,
			want:    []metav1.Condition{ready("True", "Up", "m", 2, t0)},
			changed: true,
		},
		{
			name:    "caller's lastTransitionTime is ignored",
			before:  []metav1.Condition{ready("True", "Up", "m", 1, t0)},
			set:     ready("Unknown", "Lost", "m", 1, t0.Add(-time.Hour)),
			now:     t1,
			want:    []metav1.Condition{ready("Unknown", "Lost", "m", 1, t1)},
			changed: true,
		},
		{
			name:    "now truncated to seconds",
			set:     ready("True", "Up", "", 0, time.Time{}),
			now:     t0.Add(1500 * time.Millisecond),
			want:    []metav1.Condition{ready("True", "Up", "", 0, t0.Add(time.Second))},
			changed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conds := append([]metav1.Condition(nil), tt.before...)
			changed, err := Set(&conds, tt.set, tt.now)
			if err != nil {
				t.Fatalf("Set: %v", err)
			}
			if changed != tt.changed {
				t.Errorf("changed = %v, want %v", changed, tt.changed)
			}
			if !equal(conds, tt.want) {
				t.Errorf("conditions =\n%+v\nwant\n%+v", conds, tt.want)
			}
		})
	}
}

func TestSetRejectsInvalidWithoutTouching(t *testing.T) {
	conds := []metav1.Condition{{Type: "Ready", Status: "True", Reason: "Up", LastTransitionTime: metav1.NewTime(t0)}}
	before := append([]metav1.Condition(nil), conds...)
	changed, err := Set(&conds, cond("Ready", "False", "not camel"), t0.Add(time.Hour))
	if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "reason") {
		t.Fatalf("Set with a bad reason: err = %v, want an ErrInvalid naming reason", err)
	}
	if changed || !equal(conds, before) {
		t.Errorf("Set with a bad reason changed the conditions: changed=%v %+v", changed, conds)
	}
	if _, err := Set(nil, cond("Ready", "True", "Up"), t0); err == nil || !strings.Contains(err.Error(), "nil") {
		t.Errorf("Set(nil, ...) = %v, want an error about the nil pointer", err)
	}
}

func TestQueries(t *testing.T) {
	conds := []metav1.Condition{
		{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Up", ObservedGeneration: 3},
		{Type: "Degraded", Status: metav1.ConditionFalse, Reason: "Fine", ObservedGeneration: 2},
		{Type: "Progressing", Status: metav1.ConditionUnknown, Reason: "Unsure", ObservedGeneration: 3},
	}
	tests := []struct {
		typ                    string
		found, isTrue, isFalse bool
		currentAt3             bool
	}{
		{"Ready", true, true, false, true},
		{"Degraded", true, false, true, false},
		{"Progressing", true, false, false, true},
		{"Missing", false, false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			c := Find(conds, tt.typ)
			if (c != nil) != tt.found {
				t.Fatalf("Find = %v, want found=%v", c, tt.found)
			}
			if c != nil && c.Type != tt.typ {
				t.Errorf("Find returned type %q", c.Type)
			}
			if got := IsTrue(conds, tt.typ); got != tt.isTrue {
				t.Errorf("IsTrue = %v, want %v", got, tt.isTrue)
			}
			if got := IsFalse(conds, tt.typ); got != tt.isFalse {
				t.Errorf("IsFalse = %v, want %v", got, tt.isFalse)
			}
			if got := IsCurrent(conds, tt.typ, 3); got != tt.currentAt3 {
				t.Errorf("IsCurrent(gen 3) = %v, want %v", got, tt.currentAt3)
			}
		})
	}
	// Find's pointer aliases the slice element.
	Find(conds, "Ready").Message = "via pointer"
	if conds[0].Message != "via pointer" {
		t.Errorf("write through Find's pointer did not reach the slice")
	}
}

func TestRemove(t *testing.T) {
	mk := func(types ...string) []metav1.Condition {
		var cs []metav1.Condition
		for _, ty := range types {
			cs = append(cs, cond(ty, "True", "R"))
		}
		return cs
	}
	tests := []struct {
		before  []string
		remove  string
		want    []string
		removed bool
	}{
		{nil, "A", nil, false},
		{[]string{"A"}, "A", nil, true},
		{[]string{"A", "B", "C"}, "B", []string{"A", "C"}, true},
		{[]string{"A", "B", "C"}, "A", []string{"B", "C"}, true},
		{[]string{"A", "B", "C"}, "C", []string{"A", "B"}, true},
		{[]string{"A", "B"}, "Z", []string{"A", "B"}, false},
	}
	for _, tt := range tests {
		conds := mk(tt.before...)
		if got := Remove(&conds, tt.remove); got != tt.removed {
			t.Errorf("Remove(%v, %q) = %v, want %v", tt.before, tt.remove, got, tt.removed)
		}
		if !equal(conds, mk(tt.want...)) {
			t.Errorf("Remove(%v, %q) left %+v, want types %v", tt.before, tt.remove, conds, tt.want)
		}
	}
	if Remove(nil, "A") {
		t.Errorf("Remove(nil) = true")
	}
}

func equal(a, b []metav1.Condition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message ||
			x.ObservedGeneration != y.ObservedGeneration || !x.LastTransitionTime.Equal(&y.LastTransitionTime) {
			return false
		}
	}
	return true
}
