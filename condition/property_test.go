package condition

import (
	"math/rand/v2"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// model is a naive reference: a map from type to condition plus the order in
// which types were first added, rebuilt from scratch on every step.
type model struct {
	order  []string
	byType map[string]metav1.Condition
}

func (m *model) set(c metav1.Condition, now time.Time) bool {
	now = now.Truncate(time.Second)
	old, ok := m.byType[c.Type]
	if !ok {
		m.order = append(m.order, c.Type)
		c.LastTransitionTime = metav1.NewTime(now)
		m.byType[c.Type] = c
		return true
	}
	if old.Status != c.Status {
		c.LastTransitionTime = metav1.NewTime(now)
	} else {
		c.LastTransitionTime = old.LastTransitionTime
	}
	m.byType[c.Type] = c
	return old.Status != c.Status || old.Reason != c.Reason || old.Message != c.Message || old.ObservedGeneration != c.ObservedGeneration
}

func (m *model) remove(t string) bool {
	if _, ok := m.byType[t]; !ok {
		return false
	}
	delete(m.byType, t)
	var order []string
	for _, o := range m.order {
		if o != t {
			order = append(order, o)
		}
	}
	m.order = order
	return true
}

func (m *model) list() []metav1.Condition {
	var out []metav1.Condition
	for _, t := range m.order {
		out = append(out, m.byType[t])
	}
	return out
}

// TestSetRemoveMatchModel drives Set and Remove with random operations and
// checks every result against the model, plus the queries.
func TestSetRemoveMatchModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	types := []string{"Ready", "Synced", "example.com/Degraded"}
	statuses := []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}
	reasons := []string{"Up", "Down", "Waiting"}
	messages := []string{"", "hello", "world"}

	for run := range 200 {
		var conds []metav1.Condition
		m := &model{byType: map[string]metav1.Condition{}}
		now := t0
		for step := range 50 {
			now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
			typ := types[rng.IntN(len(types))]
			if rng.IntN(5) == 0 {
				got, want := Remove(&conds, typ), m.remove(typ)
				if got != want {
					t.Fatalf("run %d step %d: Remove(%q) = %v, model %v", run, step, typ, got, want)
				}
			} else {
				c := metav1.Condition{
					Type:               typ,
					Status:             statuses[rng.IntN(len(statuses))],
					Reason:             reasons[rng.IntN(len(reasons))],
					Message:            messages[rng.IntN(len(messages))],
					ObservedGeneration: int64(rng.IntN(3)),
					LastTransitionTime: metav1.NewTime(now.Add(-time.Duration(rng.IntN(100)) * time.Hour)),
				}
				got, err := Set(&conds, c, now)
				if err != nil {
					t.Fatalf("run %d step %d: Set(%+v): %v", run, step, c, err)
				}
				if want := m.set(c, now); got != want {
					t.Fatalf("run %d step %d: Set(%+v) changed = %v, model %v", run, step, c, got, want)
				}
			}
			if want := m.list(); !equal(conds, want) {
				t.Fatalf("run %d step %d: conditions\n%+v\nmodel\n%+v", run, step, conds, want)
			}
			for _, ty := range types {
				mc, ok := m.byType[ty]
				if IsTrue(conds, ty) != (ok && mc.Status == metav1.ConditionTrue) ||
					IsFalse(conds, ty) != (ok && mc.Status == metav1.ConditionFalse) ||
					IsCurrent(conds, ty, 1) != (ok && mc.ObservedGeneration == 1) {
					t.Fatalf("run %d step %d: queries for %q disagree with the model %+v", run, step, ty, mc)
				}
			}
		}
	}
}
