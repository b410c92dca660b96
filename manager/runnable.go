package manager

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
)

// Runnable is a part that runs on every replica, leader or not — a webhook
// server, say. Run blocks until ctx ends, then stops what it started and
// returns nil; an error (or a return before ctx ends) fails the manager.
type Runnable interface {
	Run(ctx context.Context) error
}

type namedRunnable struct {
	name string
	r    Runnable
}

type namedCheck struct {
	name  string
	check func(*http.Request) error
}

// Add registers a runnable under a unique name. Start runs it after the
// HTTP server is up and before caches sync and leader election (so webhooks
// serve on every replica, and while caches fill), and stops it after
// controllers and caches have stopped, just before the HTTP server. It
// fails after Start.
func (m *Manager) Add(name string, r Runnable) error {
	if r == nil {
		return fmt.Errorf("manager: Add(%s): nil runnable", name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return fmt.Errorf("manager: Add(%s) after Start", name)
	}
	for _, have := range m.runnables {
		if have.name == name {
			return fmt.Errorf("manager: two runnables named %q", name)
		}
	}
	m.runnables = append(m.runnables, namedRunnable{name, r})
	return nil
}

// AddHealthCheck adds check, under a unique name, to /healthz and /readyz:
// both answer 500 naming every failing check and its error. It fails after
// Start.
func (m *Manager) AddHealthCheck(name string, check func(*http.Request) error) error {
	if check == nil {
		return fmt.Errorf("manager: AddHealthCheck(%s): nil check", name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return fmt.Errorf("manager: AddHealthCheck(%s) after Start", name)
	}
	for _, have := range m.checks {
		if have.name == name {
			return fmt.Errorf("manager: two health checks named %q", name)
		}
	}
	m.checks = append(m.checks, namedCheck{name, check})
	return nil
}

// checkHealth runs the health checks; nil when all pass. The checks are
// fixed at Start, so no lock is needed once the server runs.
func (m *Manager) checkHealth(r *http.Request) error {
	m.mu.Lock()
	checks := m.checks
	m.mu.Unlock()
	var failed []string
	for _, c := range checks {
		if err := c.check(r); err != nil {
			failed = append(failed, c.name+": "+err.Error())
		}
	}
	if len(failed) == 0 {
		return nil
	}
	sort.Strings(failed)
	return fmt.Errorf("%s", strings.Join(failed, "\n"))
}

// startRunnables runs every runnable; a failure (or a return before ctx
// ends) is sent to errs, which must have room for one error per runnable.
// stop ends them and waits for them to return.
func (m *Manager) startRunnables(ctx context.Context, runnables []namedRunnable, errs chan<- error) (stop func()) {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, r := range runnables {
		wg.Go(func() {
			m.log.Info("starting runnable", "runnable", r.name)
			err := r.r.Run(rctx)
			switch {
			case err != nil:
				errs <- fmt.Errorf("runnable %s: %w", r.name, err)
			case rctx.Err() == nil:
				errs <- fmt.Errorf("runnable %s: stopped on its own", r.name)
			}
		})
	}
	return func() {
		cancel()
		wg.Wait()
	}
}
