package testenv

import (
	"testing"
	"time"
)

// PollInterval is how often Eventually checks its condition.
const PollInterval = 10 * time.Millisecond

// Eventually checks cond every PollInterval until it reports done, and fails
// the test if that does not happen within timeout, naming what it waited
// for and cond's last error. It is the one way Skiff's tests wait for
// something to happen (never a fixed sleep); cond should be cheap and must
// not block for long.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (done bool, err error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, err := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, err)
			}
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(PollInterval)
	}
}
