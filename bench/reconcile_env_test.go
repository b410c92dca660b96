package bench

import (
	"context"
	"testing"
	"time"

	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/testenv"
)

// convergeEnv starts a control plane with the Foo CRD for one round of C1
// (every contender of the round runs against it) and stops it when tb ends.
// The package's TestMain belongs to the informer benchmarks, so C1 keeps its
// control plane's lifetime to its own round.
func convergeEnv(tb testing.TB) *testenv.Env {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		tb.Fatalf("control plane: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Errorf("stop control plane: %v", err)
		}
	})
	if _, err := testenv.ApplyCRDs(ctx, env.Config(), foo.CRD); err != nil {
		tb.Fatalf("install the Foo CRD: %v", err)
	}
	return env
}
