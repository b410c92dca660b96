package bench

import "testing"

// TestReconcileConverge runs every C1 contender once on a few Foos: each must
// converge and leave the same children (checked by runConverge).
func TestReconcileConverge(t *testing.T) {
	env := convergeEnv(t)
	for _, c := range convergeContenders {
		t.Run(c.name, func(t *testing.T) {
			r := runConverge(t, noConvergeTimer{}, env, c, 20)
			if r.calls < 40 {
				t.Errorf("%d API calls for 20 Foos; want at least a ConfigMap create and a status update each", r.calls)
			}
			t.Logf("converged in %v, %d API calls, %d reconciles, peak workers %d", r.converge, r.calls, r.reconciles, r.peakWorkers)
		})
	}
}
