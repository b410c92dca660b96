package deadletter

import (
	"cmp"
	"maps"
	"slices"
)

// Change is a set of writes to the ConfigMap's data: entries to put,
// entries to replace, and keys (Entry.Key) whose entries to delete.
type Change struct {
	Put []Entry
	// Replace rewrites entries the writer saw stored, only if they are
	// still there when the write is applied: an entry deleted meanwhile
	// (a replay asked on another replica) is not brought back.
	Replace []Entry
	Delete  []string
}

// Applied says what Apply did.
type Applied struct {
	Changed bool     // data differs from before
	Deleted []string // keys whose entries were there and are gone
	Refused []string // keys not put: the bound was reached
	// Vanished are keys of Replace whose entries were gone.
	Vanished []string
}

// Apply applies c to data in place, the pure core of every store write.
// Deletes come first and remove only valid entries of the key (a
// malformed value under its data key stays, to be looked at). A replace
// writes only over a data key that is there. A put of a
// key already stored replaces its entry; a put of a new key is refused
// once data holds maxEntries data keys (malformed ones count: they take
// space too). Puts are tried oldest LastFailure first, so under the bound
// the newest dead letters are the ones refused.
func Apply(data map[string]string, c Change, maxEntries int) (Applied, error) {
	var a Applied
	for _, k := range c.Delete {
		dk := DataKey(k)
		v, ok := data[dk]
		if !ok {
			continue
		}
		if e, err := Decode(dk, v); err != nil || e.Key != k {
			continue
		}
		delete(data, dk)
		a.Changed = true
		a.Deleted = append(a.Deleted, k)
	}
	for _, e := range c.Replace {
		dk := DataKey(e.Key)
		old, exists := data[dk]
		if !exists {
			a.Vanished = append(a.Vanished, e.Key)
			continue
		}
		v, err := Encode(e)
		if err != nil {
			return a, err
		}
		if old != v {
			data[dk] = v
			a.Changed = true
		}
	}
	puts := slices.Clone(c.Put)
	slices.SortStableFunc(puts, func(x, y Entry) int { return cmp.Compare(x.LastFailure.UnixNano(), y.LastFailure.UnixNano()) })
	for _, e := range puts {
		dk := DataKey(e.Key)
		v, err := Encode(e)
		if err != nil {
			return a, err
		}
		old, exists := data[dk]
		if !exists && len(data) >= maxEntries {
			a.Refused = append(a.Refused, e.Key)
			continue
		}
		if old != v {
			data[dk] = v
			a.Changed = true
		}
	}
	return a, nil
}

// Input is what one sync pass looks at, for the keys this replica owns.
type Input struct {
	// Local holds the keys dead in this replica's queue, as entries.
	Local map[string]Entry
	// Stored holds the valid entries of the ConfigMap.
	Stored map[string]Entry
	// Held holds the keys this replica held at the end of the last pass:
	// dead here and persisted (written by this replica, or seen in the
	// ConfigMap while dead here).
	Held map[string]bool
	// Succeeded holds the keys reconciled successfully since the last pass.
	Succeeded map[string]bool
}

// Plan is what a pass does. The driver performs it and then adds to Held
// the keys whose Put or Restore succeeded.
type Plan struct {
	Put     []Entry  // dead here and not persisted
	Replace []Entry  // dead here and persisted differently
	Delete  []string // persisted, but no longer dead anywhere
	Restore []Entry  // persisted and not dead here: load into the queue
	Replay  []string // dead here, and its entry was deleted elsewhere
	Held    map[string]bool
}

// Decide is the sync protocol's pure core. For every key in Local, Stored
// or Held (each key: dead here D, stored S, held H):
//
//	D  S  H   action
//	✓  ✓  ·   held; Replace with the local record if the stored one
//	          differs (for example another replica wrote it before a
//	          hand-off); if a replay deletes the entry first, the replace
//	          does not bring it back and the next pass replays the key
//	✓  ✗  ✓   Replay: the entry was deleted by another replica (a replay
//	          requested there) or by hand
//	✓  ✗  ✗   Put: newly dead here
//	✗  ✓  ✓   Delete: replayed here straight through the queue
//	✗  ✓  ✗   Delete if it succeeded since the last pass, else Restore
//	          (load on start, after a hand-off, or a Restore refused while
//	          the key was being processed)
//	✗  ✗  ·   nothing
func Decide(in Input) Plan {
	p := Plan{Held: map[string]bool{}}
	keys := make(map[string]struct{}, len(in.Local)+len(in.Stored))
	for k := range in.Local {
		keys[k] = struct{}{}
	}
	for k := range in.Stored {
		keys[k] = struct{}{}
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		local, dead := in.Local[k]
		stored, persisted := in.Stored[k]
		held := in.Held[k]
		switch {
		case dead && persisted:
			p.Held[k] = true
			if !sameEntry(local, stored) {
				p.Replace = append(p.Replace, local)
			}
		case dead && held:
			p.Replay = append(p.Replay, k)
		case dead:
			p.Put = append(p.Put, local)
		case persisted && (held || in.Succeeded[k]):
			p.Delete = append(p.Delete, k)
		case persisted:
			p.Restore = append(p.Restore, stored)
		}
	}
	return p
}

func sameEntry(a, b Entry) bool {
	return a.Key == b.Key && a.Attempts == b.Attempts && a.LastError == b.LastError && a.Replica == b.Replica &&
		a.FirstFailure.Equal(b.FirstFailure) && a.LastFailure.Equal(b.LastFailure)
}
