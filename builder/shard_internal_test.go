package builder

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/shard"
)

// An Item whose labels are unknown (an owner reference's UID) decides a
// key only while no member claims objects by label selector; a key whose
// object carried its labels is decided by them.
func TestShardGateItemOfTrustsUnlabeledItemsOnlyWithoutSelectors(t *testing.T) {
	for _, field := range []shard.Field{shard.UID, shard.Namespace} {
		g := newShardGate(nil, field, nil)
		g.inf = lookupFunc(func(types.NamespacedName) (metav1.Object, bool) { return nil, false })
		unlabeled := controller.Request{Namespace: "ns", Name: "owner"}
		labeled := controller.Request{Namespace: "ns", Name: "deleted"}
		g.record(unlabeled, shard.Item{Hash: 7}, false)
		g.record(labeled, shard.Item{Hash: 8, Labels: labels.Set{"team": "a"}}, true)

		g.assign.Store(&shard.Assignment{Ranges: []shard.Range{{}}}) // no selectors
		if _, ok := g.itemOf(unlabeled); !ok {
			t.Errorf("field %v, no selectors: the unlabeled key has no Item", field)
		}
		if it, ok := g.itemOf(labeled); !ok || it.Hash != 8 {
			t.Errorf("field %v, no selectors: labeled key = %+v, %v", field, it, ok)
		}

		sel, err := labels.Parse("team=a")
		if err != nil {
			t.Fatal(err)
		}
		g.assign.Store(&shard.Assignment{Ranges: []shard.Range{{}}, Excluded: []labels.Selector{sel}})
		if it, ok := g.itemOf(unlabeled); ok {
			t.Errorf("field %v, a member claims team=a: the unlabeled key was decided by hash alone (%+v)", field, it)
		}
		if it, ok := g.itemOf(labeled); !ok || it.Labels.Get("team") != "a" {
			t.Errorf("field %v, a member claims team=a: labeled key = %+v, %v", field, it, ok)
		}
	}
}
