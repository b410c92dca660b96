package webhook_test

import (
	"flag"
	"os"
	"testing"

	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

// TestMain shares one control plane among the integration tests; fuzzing
// (the coordinator and its workers) runs without one, so fuzzing the decoder
// starts no API servers.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run())
	}
	if f := flag.Lookup("test.fuzzworker"); f != nil && f.Value.String() == "true" {
		os.Exit(m.Run())
	}
	os.Exit(testenv.RunTests(m, testenv.Options{}, func(e *testenv.Env) error { env = e; return nil }))
}
