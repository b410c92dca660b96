package condition_test

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/condition"
)

func Example() {
	var conds []metav1.Condition
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

	changed, err := condition.Set(&conds, metav1.Condition{
		Type: "Ready", Status: metav1.ConditionFalse, Reason: "Creating", ObservedGeneration: 1,
	}, start)
	fmt.Println(changed, err)

	// Same status, new reason: changed, but the transition time stays.
	changed, _ = condition.Set(&conds, metav1.Condition{
		Type: "Ready", Status: metav1.ConditionFalse, Reason: "WaitingForPods", ObservedGeneration: 1,
	}, start.Add(time.Minute))
	fmt.Println(changed, condition.Find(conds, "Ready").LastTransitionTime.UTC().Format(time.Kitchen))

	changed, _ = condition.Set(&conds, metav1.Condition{
		Type: "Ready", Status: metav1.ConditionTrue, Reason: "PodsReady", ObservedGeneration: 2,
	}, start.Add(2*time.Minute))
	fmt.Println(changed, condition.IsTrue(conds, "Ready"), condition.IsCurrent(conds, "Ready", 2),
		condition.Find(conds, "Ready").LastTransitionTime.UTC().Format(time.Kitchen))

	_, err = condition.Set(&conds, metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "pods ready"}, start)
	fmt.Println(err)
	// Output:
	// true <nil>
	// true 12:00PM
	// true true true 12:02PM
	// invalid condition: condition "Ready": reason "pods ready": want CamelCase (a letter, then letters, digits, '_', ',' or ':'; not ending in ',' or ':')
}
