package controller

import (
	"errors"
	"fmt"
	"time"
)

// Result says what to do with a key after a successful reconcile. The zero
// value means done: forget the key's failures and wait for the next event.
type Result struct {
	// RequeueAfter > 0 reconciles the key again no sooner than this. The
	// requeue also goes through the controller's requeue rate limit
	// (Options.RequeueQPS), so RequeueAfter cannot make a controller exceed
	// it; the later of the two wins. It is not a failure: the key's backoff
	// and retry budget are reset.
	RequeueAfter time.Duration
	// Requeue reconciles the key again as soon as the requeue rate limit
	// allows. It is not a failure. Ignored when RequeueAfter > 0.
	Requeue bool
	// Priority is the requeued key's priority (higher first; see
	// queue.AddOptions.Priority). Default 0.
	Priority int
}

// TerminalError marks an error that retrying cannot fix (invalid spec,
// missing permission the operator will not get). The key is not retried,
// its failures are forgotten, and the error is counted
// (controller_runtime_terminal_reconcile_errors_total) and logged.
type TerminalError struct{ Err error }

func (e *TerminalError) Error() string { return "terminal: " + e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

// Terminal wraps err as a TerminalError. Terminal(nil) is nil.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &TerminalError{Err: err}
}

// RetryAfterError asks for a retry after a delay the caller knows (for
// example a server's Retry-After). The key is requeued after After, at the
// same priority, without growing its backoff; it does not count against the
// retry budget, so a reconciler that always returns it retries forever at
// that pace.
type RetryAfterError struct {
	Err   error
	After time.Duration
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %v: %v", e.After, e.Err)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err as a RetryAfterError. RetryAfter(nil, d) is nil. A
// delay <= 0 is treated as a transient error (backoff).
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &RetryAfterError{Err: err, After: d}
}

// errorClass is how the controller treats a reconcile error.
type errorClass int

const (
	classNone errorClass = iota
	classTransient
	classTerminal
	classRetryAfter
)

// classify returns the class of err and, for classRetryAfter, the delay.
// Every error that is neither terminal nor a positive retry-after is
// transient: it is retried with backoff and counts against the retry budget.
func classify(err error) (errorClass, time.Duration) {
	if err == nil {
		return classNone, 0
	}
	var t *TerminalError
	if errors.As(err, &t) {
		return classTerminal, 0
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.After > 0 {
		return classRetryAfter, ra.After
	}
	return classTransient, 0
}

// PanicError is the error a recovered reconcile panic becomes. It is
// transient: the key is retried with backoff.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("reconcile panicked: %v", e.Value) }
