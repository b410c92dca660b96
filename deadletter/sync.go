package deadletter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skiffkit/skiff/queue"
)

// DefaultResync is SyncOptions.Resync's default.
const DefaultResync = 10 * time.Second

// SyncOptions configure a Syncer. Every field states its default.
type SyncOptions[K comparable] struct {
	// Store persists the dead letters. Required.
	Store *Store
	// Queue is the controller's queue. Required.
	Queue *queue.Queue[K]
	// Codec turns keys into Entry keys and back. Required.
	Codec Codec[K]
	// OwnsKey reports whether this replica owns key now (a shard's
	// ownership filter). Only owned keys are written, restored, replayed
	// and deleted by the sync loop. Default nil: every key is owned (one
	// replica, or leader election).
	OwnsKey func(K) bool
	// OwnershipChanges, if non-nil, returns a channel closed at the next
	// change of OwnsKey's answers (shard.Replica.Changed); a pass runs
	// then. Default nil: changes are picked up by the Resync pass.
	OwnershipChanges func() <-chan struct{}
	// Resync is how often a pass runs without a change, which picks up
	// changes of OwnsKey's answers and retries failed writes. Default
	// DefaultResync (10s).
	Resync time.Duration
	// Clock is the time source of Resync. Default queue.RealClock{}.
	Clock queue.Clock
	// Logger receives sync errors. Default slog.Default().
	Logger *slog.Logger
}

// Syncer keeps a queue's dead-letter set and a Store in step for the keys
// this replica owns (the protocol is Decide's table). A controller creates
// it from its options and runs it; Run blocks until its context ends.
type Syncer[K comparable] struct {
	o      SyncOptions[K]
	log    *slog.Logger
	poke   chan struct{}
	loaded chan struct{}

	// passMu serialises passes and replays, so a replay never interleaves
	// with a pass that planned from an older view.
	passMu sync.Mutex
	// held is written under passMu and heldMu, read under either.
	heldMu sync.Mutex
	held   map[string]bool
	// refused holds keys the bound kept out; they are put again only when
	// the store has room.
	refused map[string]bool

	mu        sync.Mutex
	succeeded map[string]bool
	pending   map[string]bool // stored, not restored: its reconcile is running
}

// NewSyncer validates o and returns a syncer that has started nothing.
func NewSyncer[K comparable](o SyncOptions[K]) (*Syncer[K], error) {
	if o.Store == nil || o.Queue == nil || o.Codec == nil {
		return nil, errors.New("deadletter: SyncOptions needs Store, Queue and Codec")
	}
	if o.Resync < 0 {
		return nil, fmt.Errorf("deadletter: negative Resync %v", o.Resync)
	}
	if o.Resync == 0 {
		o.Resync = DefaultResync
	}
	if o.Clock == nil {
		o.Clock = queue.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Syncer[K]{
		o: o, log: o.Logger.With("configMap", o.Store.Namespace()+"/"+o.Store.Name()),
		poke: make(chan struct{}, 1), loaded: make(chan struct{}),
		held: map[string]bool{}, refused: map[string]bool{}, succeeded: map[string]bool{}, pending: map[string]bool{},
	}, nil
}

func (s *Syncer[K]) owns(k K) bool { return s.o.OwnsKey == nil || s.o.OwnsKey(k) }

// Run watches the store and runs a pass after every change of the store
// or of the queue's dead-letter set, after Finished reports a key it
// waits for, and every Resync. The first pass runs once the store has
// synced; Loaded is closed after it. Run returns nil when ctx ends, after
// the store's watch has stopped.
func (s *Syncer[K]) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { s.o.Store.Run(ctx) })
	defer wg.Wait()
	if err := s.o.Store.WaitForSync(ctx); err != nil {
		return nil // ctx ended
	}
	s.pass(ctx)
	close(s.loaded)
	t := s.o.Clock.NewTimer(s.o.Resync)
	defer t.Stop()
	owners := func() <-chan struct{} { return nil }
	if s.o.OwnershipChanges != nil {
		owners = s.o.OwnershipChanges
	}
	for {
		changed := owners()
		select {
		case <-ctx.Done():
			return nil
		case <-s.o.Queue.DeadLetterChanges():
		case <-s.o.Store.Changes():
		case <-s.poke:
		case <-changed:
		case <-t.C():
			t.Reset(s.o.Resync)
		}
		s.pass(ctx)
	}
}

// Loaded is closed after the first pass: the persisted dead letters of
// owned keys are in the queue.
func (s *Syncer[K]) Loaded() <-chan struct{} { return s.loaded }

// Finished tells the syncer that a reconcile of key ended. A key with a
// persisted entry that could not be restored because it was being
// processed is then deleted from the store (succeeded) or restored (at the
// next pass).
func (s *Syncer[K]) Finished(key K, succeeded bool) {
	k := s.o.Codec.Encode(key)
	s.mu.Lock()
	wait := s.pending[k]
	if wait {
		delete(s.pending, k)
		if succeeded {
			s.succeeded[k] = true
		}
	}
	s.mu.Unlock()
	if wait {
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
}

// pass runs Decide over the owned keys and carries out its plan.
func (s *Syncer[K]) pass(ctx context.Context) {
	s.passMu.Lock()
	defer s.passMu.Unlock()
	snap := s.o.Store.Snapshot()
	if !snap.Synced {
		return
	}
	s.mu.Lock()
	succeeded := s.succeeded
	s.succeeded = map[string]bool{}
	s.mu.Unlock()

	local := map[string]queue.DeadLetter[K]{}
	in := Input{Local: map[string]Entry{}, Stored: map[string]Entry{}, Held: s.held, Succeeded: succeeded}
	for _, d := range s.o.Queue.DeadLetters() {
		k := s.o.Codec.Encode(d.Key)
		if !s.owns(d.Key) {
			// Handed off: the new owner loads the persisted entry, so the
			// copy here goes. One not persisted yet stays until it is.
			if _, stored := snap.Entries[k]; stored && s.o.Queue.Discard(d.Key) {
				s.heldMu.Lock()
				delete(s.held, k)
				s.heldMu.Unlock()
				s.log.Info("dead letter handed off to the key's new owner", "key", k)
			}
			continue
		}
		local[k] = d
		in.Local[k] = NewEntry(k, d.Attempts, d.LastError, d.FirstFailure, d.LastFailure, s.o.Store.Replica())
	}
	decoded := map[string]K{}
	for k, e := range snap.Entries {
		key, err := s.o.Codec.Decode(k)
		if err != nil {
			s.log.Warn("skipping a dead-letter entry whose key does not decode", "key", k, "err", err)
			continue
		}
		if s.owns(key) {
			in.Stored[k] = e
			decoded[k] = key
		}
	}
	plan := Decide(in)
	held := plan.Held

	for _, k := range plan.Replay {
		if s.o.Queue.Replay(local[k].Key) {
			s.log.Info("replaying a dead letter whose persisted entry was deleted elsewhere", "key", k)
		}
	}
	for _, e := range plan.Restore {
		if s.o.Queue.Restore(deadLetterOf(decoded[e.Key], e)) {
			held[e.Key] = true
			continue
		}
		s.mu.Lock()
		s.pending[e.Key] = true
		s.mu.Unlock()
	}
	// Keys refused by the bound wait for room, so a full store is not
	// rewritten on every pass.
	room := s.o.Store.MaxEntries() - len(snap.Entries) - len(snap.Problems)
	puts := plan.Put[:0]
	for _, e := range plan.Put {
		if _, stored := in.Stored[e.Key]; s.refused[e.Key] && !stored && room <= 0 {
			continue
		}
		puts = append(puts, e)
	}
	for k := range s.refused {
		if _, dead := in.Local[k]; !dead {
			delete(s.refused, k)
		}
	}
	if len(puts) > 0 || len(plan.Replace) > 0 || len(plan.Delete) > 0 {
		a, err := s.o.Store.Update(ctx, Change{Put: puts, Replace: plan.Replace, Delete: plan.Delete})
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("persist dead letters; retrying at the next pass", "err", err)
			}
			// Entries meant to go stay held, so the next pass deletes
			// them again rather than loading them back as dead letters
			// (which would undo a replay).
			for _, k := range plan.Delete {
				held[k] = true
			}
			s.setHeld(held)
			return
		}
		refused := map[string]bool{}
		for _, k := range a.Refused {
			refused[k] = true
			s.refused[k] = true
		}
		for _, e := range puts {
			if !refused[e.Key] {
				held[e.Key] = true
			}
		}
	}
	s.setHeld(held)
}

func (s *Syncer[K]) setHeld(held map[string]bool) {
	s.heldMu.Lock()
	s.held = held
	s.heldMu.Unlock()
}

// Restorable reports whether key's dead letter is persisted, and owned
// here, but not in this replica's queue: written by the key's previous
// owner or before a restart, and waiting for a pass to restore it. Such a
// key used up its retry budget, so its worker must not reconcile it (the
// controller does not); when Restorable reports true it also asks for a
// pass. A key replayed here, or whose reconcile succeeded while it waited,
// is not restorable. Safe for concurrent use; it does not wait for a pass.
func (s *Syncer[K]) Restorable(key K) bool {
	k := s.o.Codec.Encode(key)
	if !s.o.Store.Has(k) || !s.owns(key) {
		return false
	}
	s.heldMu.Lock()
	held := s.held[k]
	s.heldMu.Unlock()
	s.mu.Lock()
	succeeded := s.succeeded[k]
	s.mu.Unlock()
	if held || succeeded {
		return false
	}
	select {
	case s.poke <- struct{}{}:
	default:
	}
	return true
}

// deadLetterOf turns a stored entry back into a queue dead letter.
func deadLetterOf[K comparable](key K, e Entry) queue.DeadLetter[K] {
	d := queue.DeadLetter[K]{Key: key, Attempts: e.Attempts, FirstFailure: e.FirstFailure, LastFailure: e.LastFailure}
	if e.LastError != "" {
		d.LastError = errors.New(e.LastError)
	}
	return d
}

// Replay replays the dead letter whose encoded key is key, from any
// replica: its persisted entry is deleted (the owner, seeing that, replays
// it) and, if it is dead in this replica's queue, it is replayed here at
// once. It reports whether there was such a dead letter.
func (s *Syncer[K]) Replay(ctx context.Context, key string) (bool, error) {
	s.passMu.Lock()
	defer s.passMu.Unlock()
	var local []K
	for _, d := range s.o.Queue.DeadLetters() {
		if s.o.Codec.Encode(d.Key) == key {
			local = append(local, d.Key)
		}
	}
	return s.replayLocked(ctx, []string{key}, local)
}

// ReplayAll replays every persisted dead letter of the controller (owned by
// any replica) and every dead letter of this replica's queue, and returns
// how many distinct keys it replayed.
func (s *Syncer[K]) ReplayAll(ctx context.Context) (int, error) {
	s.passMu.Lock()
	defer s.passMu.Unlock()
	keys := slices.Collect(maps.Keys(s.o.Store.Snapshot().Entries))
	var local []K
	for _, d := range s.o.Queue.DeadLetters() {
		local = append(local, d.Key)
		if k := s.o.Codec.Encode(d.Key); !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	ok, err := s.replayLocked(ctx, keys, local)
	if !ok || err != nil {
		return 0, err
	}
	return len(keys), nil
}

// replayLocked deletes the entries of keys, then replays local. The store
// is written first: a pass that ran between the two would otherwise find
// the key stored and not dead, and restore it.
func (s *Syncer[K]) replayLocked(ctx context.Context, keys []string, local []K) (bool, error) {
	a, err := s.o.Store.Update(ctx, Change{Delete: keys})
	if err != nil {
		return false, err
	}
	found := len(a.Deleted) > 0
	s.heldMu.Lock()
	for _, k := range keys {
		delete(s.held, k)
	}
	s.heldMu.Unlock()
	for _, k := range local {
		if s.o.Queue.Replay(k) {
			found = true
		}
	}
	return found, nil
}

// Listed is one dead letter as a debug page shows it.
type Listed struct {
	Entry
	// Here says the key is dead in this replica's queue.
	Here bool
	// Persisted says the ConfigMap holds an entry for the key.
	Persisted bool
}

// List returns the dead letters of this replica's queue and of the store,
// one per key (the local record if the key is dead here), oldest last
// failure first.
func (s *Syncer[K]) List() []Listed {
	snap := s.o.Store.Snapshot()
	by := map[string]Listed{}
	for k, e := range snap.Entries {
		by[k] = Listed{Entry: e, Persisted: true}
	}
	for _, d := range s.o.Queue.DeadLetters() {
		k := s.o.Codec.Encode(d.Key)
		_, persisted := snap.Entries[k]
		by[k] = Listed{Entry: NewEntry(k, d.Attempts, d.LastError, d.FirstFailure, d.LastFailure, s.o.Store.Replica()), Here: true, Persisted: persisted}
	}
	out := slices.Collect(maps.Values(by))
	slices.SortFunc(out, func(a, b Listed) int {
		if c := a.LastFailure.Compare(b.LastFailure); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	return out
}
