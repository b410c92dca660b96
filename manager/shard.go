package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/shard"
)

// Sharding is the manager's membership in a group of replicas that share
// their controllers' work active-active (Options.Shard, package shard). The
// builder wires it into the controllers it builds: their primary informers
// cache only this replica's part, and their workers reconcile only the keys
// this replica owns. Its methods are safe for concurrent use.
type Sharding struct {
	replica *shard.Replica
	group   string
	cs      kubernetes.Interface
	ns      string
	log     *slog.Logger

	// detected is closed once serverShards is known (Start detects it
	// before any cache lists).
	detected     chan struct{}
	serverShards bool
	handoffs     atomic.Int64
	dropped      *prometheus.CounterVec
}

// newSharding validates o and builds the replica; it starts nothing.
func newSharding(cfg Options, o shard.Options) (*Sharding, error) {
	if cfg.LeaderElection != nil {
		return nil, errors.New("manager: Options.Shard and Options.LeaderElection exclude each other: with Shard every replica runs its controllers on its own share of the keys, while leader election would keep all but one replica idle; choose one")
	}
	if cfg.Config == nil {
		return nil, errors.New("manager: Options.Shard needs Options.Config (members hold Leases)")
	}
	if o.Logger == nil {
		o.Logger = cfg.Logger
	}
	cs, err := kubernetes.NewForConfig(cfg.Config)
	if err != nil {
		return nil, fmt.Errorf("manager: shard membership client: %w", err)
	}
	r, err := shard.New(cs, o)
	if err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	s := &Sharding{replica: r, group: o.Group, cs: cs, ns: o.Namespace, log: o.Logger, detected: make(chan struct{}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skiff_shard_dropped_keys_total",
			Help: "Keys a controller's workers dropped because this replica does not own them (or not yet: hand-off in progress).",
		}, []string{"controller"})}
	if err := cfg.Registry.Register(s.dropped); err != nil {
		return nil, fmt.Errorf("manager: shard metrics: %w", err)
	}
	if err := cfg.Registry.Register(shardCollector{s}); err != nil {
		return nil, fmt.Errorf("manager: shard metrics: %w", err)
	}
	return s, nil
}

// Shard is the manager's shard membership; nil without Options.Shard.
func (m *Manager) Shard() *Sharding { return m.shard }

// Replica is this manager's member of the group.
func (s *Sharding) Replica() *shard.Replica { return s.replica }

// Dropped is the counter of keys controller name dropped as not owned
// (skiff_shard_dropped_keys_total).
func (s *Sharding) Dropped(name string) prometheus.Counter { return s.dropped.WithLabelValues(name) }

// ServerShards waits until Start has asked the API server whether it
// applies KEP-5866 shard selectors (feature gate ShardedListAndWatch), and
// returns the answer, or ctx's error if ctx ends first. With true, sharded
// informers list and watch only this replica's hash ranges; with false
// they list everything and drop the rest on the client (every replica then
// reads every object and event of the type).
func (s *Sharding) ServerShards(ctx context.Context) (bool, error) {
	select {
	case <-s.detected:
		return s.serverShards, nil
	case <-ctx.Done():
		return false, fmt.Errorf("manager: wait for shard selector detection: %w", ctx.Err())
	}
}

// detect asks the server, through a one-item list of the group's Leases
// (the members may list them), whether it applies shard selectors. It
// retries for up to timeout.
func (s *Sharding) detect(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	leases := s.cs.CoordinationV1().Leases(s.ns)
	for delay := 200 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		ok, err := shard.ServerShards(ctx, shard.ListFunc(func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return leases.List(ctx, o)
		}))
		if err == nil {
			s.serverShards = ok
			close(s.detected)
			s.log.Info("shard selector support", "serverSide", ok, "group", s.group)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("manager: detect whether the API server applies shard selectors: %w", err)
		case <-time.After(delay):
		}
	}
}

// run runs the replica until ctx ends (then it releases the Lease: the
// controllers have drained by then) and counts completed hand-offs.
func (s *Sharding) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	wg.Go(func() {
		last := ""
		for {
			ch := s.replica.Changed()
			if a := s.replica.Assignment(); a.Active && a.Version != last {
				last = a.Version
				s.handoffs.Add(1)
			}
			select {
			case <-followCtx.Done():
				return
			case <-ch:
			}
		}
	})
	return s.replica.Run(ctx)
}

// ShardState is the shard membership on /debug/skiff.
type ShardState struct {
	Group    string `json:"group"`
	Identity string `json:"identity"`
	// ServerSide: the API server applies shard selectors; false: sharded
	// informers filter on the client.
	ServerSide bool `json:"serverSide"`
	// Version of the target ring; Active: the hand-off to it is complete.
	Version string `json:"ringVersion"`
	Active  bool   `json:"active"`
	// Members of the target ring with their weights (0: equal share).
	Members []ShardMember `json:"members"`
	// Ranges this replica owns under the target ring, and their fraction
	// of the hash space.
	Ranges        []string `json:"ranges"`
	OwnedFraction float64  `json:"ownedFraction"`
	// Handoffs completed since Start (the first activation included).
	Handoffs int64 `json:"handoffs"`
}

// ShardMember is one member of the ring on /debug/skiff.
type ShardMember struct {
	ID       string  `json:"id"`
	Weight   float64 `json:"weight,omitempty"`
	Selector string  `json:"selector,omitempty"`
}

// State is the membership as /debug/skiff shows it.
func (s *Sharding) State() ShardState {
	a := s.replica.Assignment()
	st := ShardState{Group: s.group, Identity: s.replica.ID(), Version: a.Version, Active: a.Active,
		OwnedFraction: Fraction(a.Ranges), Handoffs: s.handoffs.Load()}
	select {
	case <-s.detected:
		st.ServerSide = s.serverShards
	default:
	}
	for _, m := range a.Members {
		sm := ShardMember{ID: m.ID, Weight: m.Weight}
		if m.Selector != nil {
			sm.Selector = m.Selector.String()
		}
		st.Members = append(st.Members, sm)
	}
	for _, r := range a.Ranges {
		st.Ranges = append(st.Ranges, r.String())
	}
	return st
}

// Fraction is the share of the 64-bit hash space that ranges cover.
func Fraction(ranges []shard.Range) float64 {
	var f float64
	for _, r := range ranges {
		end := float64(r.End)
		if r.End == 0 {
			end = math.Exp2(64)
		}
		f += (end - float64(r.Start)) / math.Exp2(64)
	}
	return f
}

var (
	descOwned = prometheus.NewDesc("skiff_shard_owned_fraction",
		"Fraction of the hash space this replica owns under the target ring.", []string{"group", "identity"}, nil)
	descMembers = prometheus.NewDesc("skiff_shard_members",
		"Members of the target ring, as this replica sees them.", []string{"group", "identity"}, nil)
	descActive = prometheus.NewDesc("skiff_shard_active",
		"1 when this replica's hand-off to the target ring is complete, else 0.", []string{"group", "identity"}, nil)
	descHandoffs = prometheus.NewDesc("skiff_shard_handoffs_total",
		"Hand-offs this replica completed (activations of a new ring).", []string{"group", "identity"}, nil)
)

// shardCollector computes the shard gauges at scrape time.
type shardCollector struct{ s *Sharding }

func (c shardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOwned
	ch <- descMembers
	ch <- descActive
	ch <- descHandoffs
}

func (c shardCollector) Collect(ch chan<- prometheus.Metric) {
	a := c.s.replica.Assignment()
	id := c.s.replica.ID()
	active := 0.0
	if a.Active {
		active = 1
	}
	ch <- prometheus.MustNewConstMetric(descOwned, prometheus.GaugeValue, Fraction(a.Ranges), c.s.group, id)
	ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(len(a.Members)), c.s.group, id)
	ch <- prometheus.MustNewConstMetric(descActive, prometheus.GaugeValue, active, c.s.group, id)
	ch <- prometheus.MustNewConstMetric(descHandoffs, prometheus.CounterValue, float64(c.s.handoffs.Load()), c.s.group, id)
}

// startShard detects shard selector support and runs the member until the
// returned stop is called (a no-op without Options.Shard). stop returns
// the member's error (a Lease that could not be released, say).
func (m *Manager) startShard(ctx context.Context) (stop func() error) {
	s := m.shard
	if s == nil {
		return func() error { return nil }
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() {
		if err := s.detect(runCtx, m.o.SyncTimeout); err != nil {
			// Sharded informers wait on detection; without an answer they
			// cannot list, and the caches' sync fails with this error.
			m.log.Error("shard selector detection failed", "err", err)
		}
		done <- s.run(runCtx)
	}()
	return func() error {
		cancel()
		if err := <-done; err != nil {
			return fmt.Errorf("manager: shard member: %w", err)
		}
		return nil
	}
}
