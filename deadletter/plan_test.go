package deadletter_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiffkit/skiff/deadletter"
)

func entry(key, replica string, attempts int) deadletter.Entry {
	return deadletter.NewEntry(key, attempts, nil, time.Unix(1, 0).UTC(), time.Unix(int64(attempts), 0).UTC(), replica)
}

// TestDecide walks every row of Decide's table.
func TestDecide(t *testing.T) {
	me := "me"
	for _, tc := range []struct {
		name                               string
		dead, stored, held, succeeded      bool
		storedBy                           string
		put, replace, del, restore, replay bool
		heldAfter                          bool
	}{
		{name: "dead and stored as written", dead: true, stored: true, storedBy: me, heldAfter: true},
		{name: "dead, stored by another replica", dead: true, stored: true, storedBy: "other", replace: true, heldAfter: true},
		{name: "dead, held, entry deleted elsewhere", dead: true, held: true, replay: true},
		{name: "newly dead", dead: true, put: true},
		{name: "replayed here through the queue", stored: true, storedBy: me, held: true, del: true},
		{name: "stored, succeeded here", stored: true, storedBy: "other", succeeded: true, del: true},
		{name: "stored, not dead here: load", stored: true, storedBy: "other", restore: true},
		{name: "gone everywhere", held: true},
		{name: "nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := deadletter.Input{Local: map[string]deadletter.Entry{}, Stored: map[string]deadletter.Entry{}, Held: map[string]bool{}, Succeeded: map[string]bool{}}
			if tc.dead {
				in.Local["k"] = entry("k", me, 2)
			}
			if tc.stored {
				in.Stored["k"] = entry("k", tc.storedBy, 2)
			}
			in.Held["k"] = tc.held
			in.Succeeded["k"] = tc.succeeded
			p := deadletter.Decide(in)
			got := fmt.Sprintf("put=%v replace=%v del=%v restore=%v replay=%v held=%v", len(p.Put) == 1, len(p.Replace) == 1, len(p.Delete) == 1, len(p.Restore) == 1, len(p.Replay) == 1, p.Held["k"])
			want := fmt.Sprintf("put=%v replace=%v del=%v restore=%v replay=%v held=%v", tc.put, tc.replace, tc.del, tc.restore, tc.replay, tc.heldAfter)
			if got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
			if tc.put && p.Put[0].Replica != me {
				t.Fatalf("put %+v, want the local record", p.Put[0])
			}
			if tc.replace && p.Replace[0].Replica != me {
				t.Fatalf("replace %+v, want the local record", p.Replace[0])
			}
		})
	}
}

func TestApply(t *testing.T) {
	data := map[string]string{"junk": "{{{"}
	a, err := deadletter.Apply(data, deadletter.Change{Put: []deadletter.Entry{entry("c", "r", 3), entry("a", "r", 1), entry("b", "r", 2)}}, 3)
	if err != nil {
		t.Fatal(err)
	}
	// Room for two beside the junk: the oldest two get in, the newest is refused.
	if !a.Changed || !slices.Equal(a.Refused, []string{"c"}) || len(data) != 3 {
		t.Fatalf("Apply = %+v, data %v", a, slices.Sorted(maps.Keys(data)))
	}
	// Replacing a stored entry needs no room; an unchanged put changes nothing.
	a, _ = deadletter.Apply(data, deadletter.Change{Put: []deadletter.Entry{entry("a", "other", 1)}}, 3)
	if !a.Changed || !strings.Contains(data[deadletter.DataKey("a")], `"other"`) {
		t.Fatalf("replace: %+v %v", a, data)
	}
	a, _ = deadletter.Apply(data, deadletter.Change{Put: []deadletter.Entry{entry("a", "other", 1)}}, 3)
	if a.Changed {
		t.Fatal("an identical put changed data")
	}
	// A replace writes only over an entry still there: one deleted
	// meanwhile (a replay elsewhere) is not brought back, even with room.
	a, _ = deadletter.Apply(data, deadletter.Change{Replace: []deadletter.Entry{entry("a", "me", 1), entry("gone", "me", 1)}}, 10)
	if !a.Changed || !slices.Equal(a.Vanished, []string{"gone"}) || data[deadletter.DataKey("gone")] != "" ||
		!strings.Contains(data[deadletter.DataKey("a")], `"me"`) {
		t.Fatalf("replace: %+v, data %v", a, data)
	}
	// Deletes remove valid entries only: the junk stays, unknown keys are no-ops.
	data["x"] = `{"key":"y","attempts":1}` // a malformed value under some data key
	a, _ = deadletter.Apply(data, deadletter.Change{Delete: []string{"a", "missing", "junk", "x"}}, 3)
	if !slices.Equal(a.Deleted, []string{"a"}) || data["junk"] != "{{{" || data["x"] == "" {
		t.Fatalf("delete: %+v, data %v", a, data)
	}
}

// FuzzApply: whatever the data holds, Apply never drops a data key it
// cannot decode, never grows data past the bound with new keys, and
// refuses only puts of new keys.
func FuzzApply(f *testing.F) {
	f.Add("junk", "{{{", "a", "b", uint8(2))
	f.Add("ns_2fa", `{"key":"ns/a","attempts":1}`, "ns/a", "ns/a", uint8(1))
	f.Fuzz(func(t *testing.T, dk, v, put, del string, bound uint8) {
		if put == "" {
			return
		}
		data := map[string]string{dk: v}
		before := maps.Clone(data)
		limit := int(bound%5) + 1
		a, err := deadletter.Apply(data, deadletter.Change{Put: []deadletter.Entry{entry(put, "r", 1)}, Delete: []string{del}}, limit)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := deadletter.Decode(dk, v); err != nil && data[dk] != v && deadletter.DataKey(put) != dk {
			t.Fatalf("malformed data key %q lost: %v", dk, data)
		}
		if len(data) > max(limit, len(before)) {
			t.Fatalf("%d data keys, bound %d", len(data), limit)
		}
		for _, k := range a.Refused {
			if _, had := before[deadletter.DataKey(k)]; had {
				t.Fatalf("put of stored key %q refused", k)
			}
		}
	})
}
