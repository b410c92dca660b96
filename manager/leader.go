package manager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaderElection configures Lease-based leader election
// (coordination.k8s.io/v1). Defaults favour fast failover: a released Lease
// is taken over within about RetryPeriod; a crashed leader's within
// LeaseDuration.
type LeaderElection struct {
	// Namespace and Name of the Lease. Required.
	Namespace, Name string
	// Identity of this candidate. Default: hostname + "_" + random suffix.
	Identity string
	// LeaseDuration is how long a Lease is valid without renewal. Default 10s.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader retries renewing before it gives
	// up leadership. Default 7s.
	RenewDeadline time.Duration
	// RetryPeriod is how often candidates try to acquire, and the leader
	// renews. Default 1s.
	RetryPeriod time.Duration
}

func (le *LeaderElection) defaults() error {
	if le.Namespace == "" || le.Name == "" {
		return errors.New("manager: LeaderElection needs Namespace and Name")
	}
	if le.Identity == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		rand.Read(b)
		le.Identity = host + "_" + hex.EncodeToString(b)
	}
	if le.LeaseDuration == 0 {
		le.LeaseDuration = 10 * time.Second
	}
	if le.RenewDeadline == 0 {
		le.RenewDeadline = 7 * time.Second
	}
	if le.RetryPeriod == 0 {
		le.RetryPeriod = time.Second
	}
	if le.LeaseDuration <= le.RenewDeadline || float64(le.RenewDeadline) <= leaderelection.JitterFactor*float64(le.RetryPeriod) {
		return fmt.Errorf("manager: LeaderElection needs LeaseDuration (%v) > RenewDeadline (%v) > %.1f × RetryPeriod (%v)",
			le.LeaseDuration, le.RenewDeadline, leaderelection.JitterFactor, le.RetryPeriod)
	}
	return nil
}

// runElected campaigns, runs controllers while leading, and on stop drains
// the controllers before releasing the Lease.
func (m *Manager) runElected(ctx context.Context, controllers []Controller, cacheErrs chan error) error {
	o := m.o.LeaderElection
	cs, err := kubernetes.NewForConfig(m.o.Config)
	if err != nil {
		return fmt.Errorf("manager: leader election client: %w", err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	leading := make(chan struct{})
	lost := make(chan struct{})
	var leadOnce, lostOnce sync.Once
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            o.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			// Controllers run on the manager's goroutine, not on the one
			// client-go starts here, so their drain finishes before release.
			OnStartedLeading: func(context.Context) { leadOnce.Do(func() { close(leading) }) },
			OnStoppedLeading: func() { lostOnce.Do(func() { close(lost) }) },
			OnNewLeader: func(id string) {
				m.log.Info("leader observed", "lease", o.Namespace+"/"+o.Name, "leader", id, "me", id == o.Identity)
			},
		},
	})
	if err != nil {
		return fmt.Errorf("manager: leader election: %w", err)
	}
	electCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	electDone := make(chan struct{})
	go func() { defer close(electDone); elector.Run(electCtx) }()
	// Releasing the Lease is the step after the controllers' drain.
	defer func() { stopElection(); <-electDone }()

	m.log.Info("campaigning for leadership", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
	select {
	case <-ctx.Done():
		return nil
	case <-lost: // Run returned without leading (cannot happen unless ctx ended)
		return ErrLeadershipLost
	case err := <-cacheErrs:
		return err
	case <-leading:
	}
	m.log.Info("became leader", "lease", o.Namespace+"/"+o.Name, "identity", o.Identity)
	m.leading.Store(true)
	defer m.leading.Store(false)
	return m.runControllers(ctx, controllers, lost, cacheErrs)
}
