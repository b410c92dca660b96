package shard

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/ptr"
)

// Replica is one replica's membership in a group: it holds its own Lease,
// reads the others', computes the ring, runs the hand-off protocol (Node)
// and admits work through Acquire. Its methods are safe for concurrent use.
type Replica struct {
	o      Options
	leases coordclient.LeaseInterface

	mu       sync.Mutex
	node     *Node
	weight   float64
	selector labels.Selector
	// renewedAt is when the last successful renewal was sent; the zero
	// time before the first one.
	renewedAt time.Time
	own       *coordinationv1.Lease
	live      liveness
	cancels   map[uint64]context.CancelFunc
	changed   chan struct{} // closed and replaced on every Assignment change
	kick      chan struct{} // capacity 1: run the next tick now
	idle      chan struct{} // closed and replaced when in-flight work reaches 0
}

// New returns a replica of group o.Group using cs for Leases. It starts
// nothing; call Run.
func New(cs kubernetes.Interface, o Options) (*Replica, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	return &Replica{
		o:        o,
		leases:   cs.CoordinationV1().Leases(o.Namespace),
		node:     NewNode(o.Identity),
		weight:   o.Weight,
		selector: o.Selector,
		cancels:  make(map[uint64]context.CancelFunc),
		changed:  make(chan struct{}),
		kick:     make(chan struct{}, 1),
		idle:     make(chan struct{}),
	}, nil
}

// ID is this member's identity (its ID in the ring).
func (m *Replica) ID() string { return m.o.Identity }

// Acquire asks to start work on it. If this member may work on it now, ok is
// true and the caller must call release exactly once when the work is done
// (release is idempotent); ctx2, derived from ctx, is cancelled if the
// member loses its Lease (self-fencing), and the work must then stop within
// LeaseDuration − RenewDeadline. If ok is false the item belongs to another
// member or is being handed off: drop it, its owner will process it.
func (m *Replica) Acquire(ctx context.Context, it Item) (ctx2 context.Context, release func(), ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.fresh(m.o.Clock.Now()) {
		return ctx, func() {}, false
	}
	token, ok := m.node.Admit(it)
	if !ok {
		return ctx, func() {}, false
	}
	ctx2, cancel := context.WithCancel(ctx)
	m.cancels[token] = cancel
	var once sync.Once
	return ctx2, func() { once.Do(func() { m.release(token) }) }, true
}

func (m *Replica) release(token uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if cancel := m.cancels[token]; cancel != nil {
		cancel()
		delete(m.cancels, token)
	}
	if m.node.Done(token) {
		m.kickLocked()
	}
	if m.node.InFlight() == 0 {
		close(m.idle)
		m.idle = make(chan struct{})
	}
}

// Owns reports whether Acquire would admit it now, without admitting it.
// For filtering (e.g. dropping keys before they reach the queue); Acquire
// is still the gate.
func (m *Replica) Owns(it Item) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fresh(m.o.Clock.Now()) && m.node.Owns(it)
}

// fresh reports whether the last renewal is recent enough to admit work.
func (m *Replica) fresh(now time.Time) bool {
	return !m.renewedAt.IsZero() && now.Sub(m.renewedAt) < m.o.RenewDeadline
}

// Assignment is a member's view of its share, for wiring informers and
// queues.
type Assignment struct {
	// Version is the target ring's version ("" before the first read).
	Version string
	// Ranges are this member's hash ranges under the target ring: what its
	// informers should list and watch (Selector). Objects in them that
	// Excluded selectors match are not this member's.
	Ranges []Range
	// Selector is this member's own label selector (nil for none): objects
	// it matches are this member's wherever they hash.
	Selector labels.Selector
	// Excluded are other members' label selectors.
	Excluded []labels.Selector
	// Active is true when hand-off is complete: Acquire admits every item
	// of the target ring this member owns. While false, it admits a subset.
	Active bool
	// Members are the target ring's members.
	Members []Member
}

// Owns reports whether it belongs to this member under the assignment's
// ring (not whether Acquire would admit it now: see Active).
func (a Assignment) Owns(it Item) bool {
	lbls := it.Labels
	if lbls == nil {
		lbls = labels.Set(nil)
	}
	if a.Selector != nil && a.Selector.Matches(lbls) {
		return true
	}
	for _, s := range a.Excluded {
		if s.Matches(lbls) {
			return false
		}
	}
	return InRanges(it.Hash, a.Ranges)
}

// Assignment returns this member's current share. The caller owns it.
func (m *Replica) Assignment() Assignment {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.node.Target()
	if r == nil {
		return Assignment{}
	}
	return Assignment{
		Version:  r.Version(),
		Ranges:   r.Ranges(m.o.Identity),
		Selector: r.Selector(m.o.Identity),
		Excluded: r.Selectors(m.o.Identity),
		Active:   m.node.Active() && m.fresh(m.o.Clock.Now()),
		Members:  r.Members(),
	}
}

// Changed returns a channel closed at the next change of Assignment (or of
// fencing). Call it again after it fires.
func (m *Replica) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// SetWeight changes this member's Weight (widen a canary, or narrow it);
// it is published with the next renewal and handed off safely.
func (m *Replica) SetWeight(w float64) error {
	if _, err := NewRing([]Member{{ID: m.o.Identity, Weight: w}}); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.weight = w
	m.kickLocked()
	return nil
}

// SetSelector changes this member's label Selector (nil for none); it is
// published with the next renewal and handed off safely.
func (m *Replica) SetSelector(s labels.Selector) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.selector = s
	m.kickLocked()
}

func (m *Replica) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *Replica) kickLocked() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// ErrReleaseTimeout is returned by Run when work was still in flight after
// ReleaseTimeout: the Lease was left to expire rather than released.
var ErrReleaseTimeout = errors.New("shard: work still in flight after ReleaseTimeout; Lease left to expire")

// Run takes part in the group until ctx is done: it renews this member's
// Lease every RetryPeriod, reads the others', and moves the hand-off along.
// When ctx is done it stops admitting work, waits (renewing) up to
// ReleaseTimeout for work in flight to be released, deletes its Lease so
// others take over at once, and returns nil. Errors talking to the API
// server are retried; a member that cannot renew fences itself. Run may be
// called once.
func (m *Replica) Run(ctx context.Context) error {
	m.o.Logger.Info("shard member starting", "group", m.o.Group, "identity", m.o.Identity, "lease", m.o.Namespace+"/"+m.o.leaseName())
	for ctx.Err() == nil {
		wait := m.tick(ctx, false)
		timer := m.o.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-timer.C():
		case <-m.kick:
		}
		timer.Stop()
	}
	return m.stop()
}

// stop withdraws admission, waits for work in flight, and releases the
// Lease.
func (m *Replica) stop() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m.mu.Lock()
	m.node.Fence()
	m.notifyLocked()
	m.mu.Unlock()
	deadline := m.o.Clock.Now().Add(m.o.ReleaseTimeout)
	for {
		m.mu.Lock()
		n, idle := m.node.InFlight(), m.idle
		m.mu.Unlock()
		if n == 0 {
			break
		}
		now := m.o.Clock.Now()
		if !now.Before(deadline) {
			m.o.Logger.Error("shard member stopping with work in flight; leaving its Lease to expire", "group", m.o.Group, "identity", m.o.Identity, "inFlight", n)
			return ErrReleaseTimeout
		}
		wait := m.tick(ctx, true)
		timer := m.o.Clock.NewTimer(min(wait, deadline.Sub(now)))
		select {
		case <-timer.C():
		case <-idle:
		}
		timer.Stop()
	}
	dctx, dcancel := context.WithTimeout(ctx, m.o.RenewDeadline)
	defer dcancel()
	err := m.leases.Delete(dctx, m.o.leaseName(), metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("shard: release Lease %s/%s: %w", m.o.Namespace, m.o.leaseName(), err)
	}
	m.o.Logger.Info("shard member released its Lease", "group", m.o.Group, "identity", m.o.Identity)
	return nil
}

// tick renews the Lease, reads the group and steps the Node; it returns how
// long to wait before the next tick. stopping skips everything but renewal.
func (m *Replica) tick(ctx context.Context, stopping bool) time.Duration {
	now := m.o.Clock.Now()
	rctx, cancel := context.WithTimeout(ctx, m.o.RetryPeriod)
	defer cancel()
	if err := m.renew(rctx, now); err != nil {
		m.o.Logger.Warn("shard member could not renew its Lease", "group", m.o.Group, "identity", m.o.Identity, "err", err)
	}
	if !stopping {
		if err := m.observe(rctx); err != nil {
			m.o.Logger.Warn("shard member could not read the group's Leases", "group", m.o.Group, "identity", m.o.Identity, "err", err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now = m.o.Clock.Now()
	if !m.fresh(now) {
		m.fenceLocked()
		return m.o.RetryPeriod
	}
	if !stopping {
		if _, ok := m.node.PrepareDrained(); ok {
			// Publish at once rather than a RetryPeriod later.
			return 0
		}
	}
	return min(m.o.RetryPeriod, m.renewedAt.Add(m.o.RenewDeadline).Sub(now))
}

// fenceLocked withdraws admission after the renew deadline passed and
// cancels work in flight.
func (m *Replica) fenceLocked() {
	if m.node.Written() == "" && len(m.cancels) == 0 && !m.node.Active() {
		return
	}
	m.o.Logger.Warn("shard member fenced: no renewal within RenewDeadline", "group", m.o.Group, "identity", m.o.Identity, "inFlight", m.node.InFlight())
	m.node.Fence()
	for _, cancel := range m.cancels {
		cancel()
	}
	m.notifyLocked()
}

// renew writes this member's Lease: renewTime, weight, selector and the
// drained version.
func (m *Replica) renew(ctx context.Context, now time.Time) error {
	m.mu.Lock()
	own := m.own
	ann := map[string]string{DrainedAnnotation: m.node.Written()}
	if m.weight != 0 {
		ann[WeightAnnotation] = strconv.FormatFloat(m.weight, 'g', -1, 64)
	}
	if m.selector != nil {
		ann[SelectorAnnotation] = m.selector.String()
	}
	m.mu.Unlock()

	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(m.o.Identity),
		LeaseDurationSeconds: ptr.To(int32(m.o.LeaseDuration / time.Second)),
		RenewTime:            &metav1.MicroTime{Time: now},
	}
	var got *coordinationv1.Lease
	var err error
	if own == nil {
		lease := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: m.o.leaseName(), Namespace: m.o.Namespace,
				Labels: map[string]string{GroupLabel: m.o.Group}, Annotations: ann},
			Spec: spec,
		}
		lease.Spec.AcquireTime = lease.Spec.RenewTime
		got, err = m.leases.Create(ctx, lease, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Our own Lease from an earlier attempt whose answer was lost.
			got, err = m.leases.Get(ctx, m.o.leaseName(), metav1.GetOptions{})
			if err == nil && (got.Spec.HolderIdentity == nil || *got.Spec.HolderIdentity != m.o.Identity) {
				return fmt.Errorf("shard: Lease %s/%s is held by %v, not %s: is Identity unique?", m.o.Namespace, m.o.leaseName(), ptr.Deref(got.Spec.HolderIdentity, ""), m.o.Identity)
			}
			if err == nil {
				m.mu.Lock()
				m.own = got
				m.mu.Unlock()
				return m.renew(ctx, now)
			}
		}
	} else {
		lease := own.DeepCopy()
		lease.Spec = spec
		lease.Spec.AcquireTime = own.Spec.AcquireTime
		lease.Annotations = ann
		got, err = m.leases.Update(ctx, lease, metav1.UpdateOptions{})
		if apierrors.IsNotFound(err) {
			// Someone deleted our Lease as expired: we were, for them, gone.
			// Fence and rejoin as new.
			m.mu.Lock()
			m.own = nil
			m.renewedAt = time.Time{}
			m.fenceLocked()
			m.mu.Unlock()
			return fmt.Errorf("shard: our Lease %s/%s was deleted; rejoining", m.o.Namespace, m.o.leaseName())
		}
		if apierrors.IsConflict(err) {
			if cur, gerr := m.leases.Get(ctx, m.o.leaseName(), metav1.GetOptions{}); gerr == nil {
				m.mu.Lock()
				m.own = cur
				m.mu.Unlock()
			}
		}
	}
	if err != nil {
		return fmt.Errorf("shard: renew Lease %s/%s: %w", m.o.Namespace, m.o.leaseName(), err)
	}
	m.mu.Lock()
	m.own = got
	m.renewedAt = now
	m.mu.Unlock()
	return nil
}

// observe lists the group's Leases, computes the live ring and steps the
// Node. It also deletes Leases that have been expired for a LeaseDuration.
func (m *Replica) observe(ctx context.Context) error {
	list, err := m.leases.List(ctx, metav1.ListOptions{LabelSelector: GroupLabel + "=" + m.o.Group})
	if err != nil {
		return fmt.Errorf("shard: list Leases of group %q in %s: %w", m.o.Group, m.o.Namespace, err)
	}
	ls := make([]leaseState, 0, len(list.Items))
	for _, l := range list.Items {
		ls = append(ls, leaseState{name: l.Name, rv: l.ResourceVersion, holder: ptr.Deref(l.Spec.HolderIdentity, ""),
			dur: time.Duration(ptr.Deref(l.Spec.LeaseDurationSeconds, 0)) * time.Second, annotations: l.Annotations})
	}
	now := m.o.Clock.Now()
	m.mu.Lock()
	g := readGroup(ls, m.o.leaseName(), m.o.Identity, m.fresh(now), &m.live, now, m.o.LeaseDuration, m.o.Logger)
	err = m.stepLocked(g)
	m.mu.Unlock()
	for _, l := range g.stale {
		// Preconditioned on the version we saw, so a renewal in between wins.
		err := m.leases.Delete(ctx, l.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &l.rv}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			m.o.Logger.Warn("shard member could not delete an expired Lease", "lease", l.name, "err", err)
		}
	}
	return err
}

// stepLocked feeds one reading of the group to the Node.
func (m *Replica) stepLocked(g group) error {
	if len(g.members) == 0 {
		return nil
	}
	ring, err := ringFor(m.node.Target(), g.members)
	if err != nil {
		return fmt.Errorf("shard: build ring of group %q: %w", m.o.Group, err)
	}
	before := m.node.Target()
	wasActive := m.node.Active()
	if m.node.Observe(ring, g.drained) {
		if before == nil || before.Version() != ring.Version() {
			m.o.Logger.Info("shard ring changed", "group", m.o.Group, "identity", m.o.Identity, "version", ring.Version(), "members", len(g.members), "share", ring.Share(m.o.Identity))
		}
		if !wasActive && m.node.Active() {
			m.o.Logger.Info("shard hand-off complete", "group", m.o.Group, "identity", m.o.Identity, "version", ring.Version())
		}
		m.notifyLocked()
	}
	return nil
}

// memberOf reads a member's published weight and selector. A value that
// does not parse is read as the default, the same way by every member, so
// they still agree on the ring.
func memberOf(id string, ann map[string]string, log warner) Member {
	mem := Member{ID: id}
	if s, ok := ann[WeightAnnotation]; ok {
		w, err := strconv.ParseFloat(s, 64)
		if err != nil || w < 0 || w > 1 {
			log.Warn("shard member publishes a bad weight; reading it as 0", "member", id, "weight", s)
		} else {
			mem.Weight = w
		}
	}
	if s, ok := ann[SelectorAnnotation]; ok {
		sel, err := labels.Parse(s)
		if err != nil {
			log.Warn("shard member publishes a bad selector; reading it as none", "member", id, "selector", s, "err", err)
		} else {
			mem.Selector = sel
		}
	}
	return mem
}
