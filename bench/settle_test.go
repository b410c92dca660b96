package bench

import (
	"testing"
	"time"

	"github.com/skiffkit/skiff/testenv"
)

// Settling the control plane between timed operations. After a contender
// (or its warm-up) streamed thousands of objects, the API server and etcd
// go on working for a while (garbage collection of the encode buffers,
// watch cache upkeep); at 10k pods that leftover was up to 0.7 s of server
// CPU landing in the next contender's timed window. Every contender waits
// the same way before each timed operation.
const (
	settleWindow = 200 * time.Millisecond
	// settleIdleCPU: the control plane counts as idle when it used at
	// most this much CPU over one settleWindow (10% of a core; its idle
	// upkeep is 0–10 ms per window, counted in 10 ms ticks).
	settleIdleCPU = 20 * time.Millisecond
	settleMax     = 15 * time.Second
)

// settleServer waits until env's control plane is idle, or settleMax has
// passed (then it logs and goes on: the run is still valid, only noisier).
func settleServer(b *testing.B, env *testenv.Env) {
	b.Helper()
	deadline := time.Now().Add(settleMax)
	prev, err := env.CPUTime()
	if err != nil {
		b.Fatal(err)
	}
	for time.Now().Before(deadline) {
		time.Sleep(settleWindow)
		cur, err := env.CPUTime()
		if err != nil {
			b.Fatal(err)
		}
		if cur-prev <= settleIdleCPU {
			return
		}
		prev = cur
	}
	b.Logf("control plane still busy after %v; timing anyway", settleMax)
}
