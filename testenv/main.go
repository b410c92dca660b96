package testenv

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// RunTests is a TestMain body for a package whose tests share one control
// plane: it starts one with o (building the binary if needed, reporting the
// build on stderr), calls setup with it (to keep it in a package variable,
// install CRDs, ...), runs the tests, stops the control plane, and returns
// the exit code:
//
//	func TestMain(m *testing.M) {
//		os.Exit(testenv.RunTests(m, testenv.Options{}, func(e *testenv.Env) error { env = e; return nil }))
//	}
//
// A failure to start, to set up or to stop fails the run with a message on
// stderr naming the package's test binary.
func RunTests(m *testing.M, o Options, setup func(*Env) error) int {
	name := os.Args[0]
	if o.Build.Progress == nil {
		o.Build.Progress = os.Stderr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	env, err := Start(ctx, o)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: start the shared control plane: %v\n", name, err)
		return 1
	}
	code := 1
	if err := setup(env); err != nil {
		fmt.Fprintf(os.Stderr, "%s: set up the shared control plane: %v\n", name, err)
	} else {
		code = m.Run()
	}
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "%s: stop the shared control plane: %v\n", name, err)
		code = 1
	}
	return code
}
