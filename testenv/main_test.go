package testenv_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/skiffkit/skiff/testenv"
)

// shared is one control plane for the tests that only need "a cluster";
// tests that exercise lifecycle start their own.
var shared *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{}, func(e *testenv.Env) error { shared = e; return nil }))
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
