package cert

import (
	"os"
	"testing"

	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

// TestMain shares one control plane among the tests that talk to an API
// server (the caBundle injector's); the pure tests do not use it.
func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{Controllers: "none"}, func(e *testenv.Env) error { env = e; return nil }))
}
