package deadletter_test

import (
	"errors"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/skiffkit/skiff/deadletter"
)

func TestDataKey(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"default/web", "default_2fweb"},
		{"/cluster-scoped", "_2fcluster-scoped"},
		{"a_b/c.d", "a__b_2fc.d"},
		{"ü", "_c3_bc"},
		{".", "_2e"},
		{"..", "_2e."},
		{"...", "_2e.."},
	} {
		if got := deadletter.DataKey(tc.key); got != tc.want {
			t.Errorf("DataKey(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
	long := strings.Repeat("n", 63) + "/" + strings.Repeat("x", 253)
	if got := deadletter.DataKey(long); !strings.HasPrefix(got, "_h") || len(got) != 66 {
		t.Errorf("DataKey of a %d-byte key = %q, want the hashed form", len(long), got)
	}
}

// Every data key is a valid ConfigMap key, and distinct keys get distinct
// data keys.
func TestDataKeyValidAndInjective(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := "ab_/.-Z9ü\x00%"
	seen := map[string]string{}
	for range 20000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		if r.IntN(50) == 0 {
			b.WriteString(strings.Repeat("_", 130))
		}
		k := b.String()
		dk := deadletter.DataKey(k)
		if k != "" {
			if errs := validation.IsConfigMapKey(dk); len(errs) > 0 {
				t.Fatalf("DataKey(%q) = %q: %v", k, dk, errs)
			}
		}
		if other, ok := seen[dk]; ok && other != k {
			t.Fatalf("DataKey(%q) = DataKey(%q) = %q", k, other, dk)
		}
		seen[dk] = k
	}
}

func TestConfigMapName(t *testing.T) {
	for _, tc := range []struct{ controller, want string }{
		{"widgets", "skiff-deadletters-widgets"},
		{"foo-2", "skiff-deadletters-foo-2"},
	} {
		if got := deadletter.ConfigMapName(tc.controller); got != tc.want {
			t.Errorf("ConfigMapName(%q) = %q, want %q", tc.controller, got, tc.want)
		}
	}
	hashed := regexp.MustCompile(`^skiff-deadletters(-[a-z0-9-]*)?-[0-9a-f]{8}$`)
	names := map[string]string{}
	for _, c := range []string{"Widgets", "widgets/v2", "widgets_v2", "", "-", strings.Repeat("X", 300), "a..b", "foo.example.com"} {
		got := deadletter.ConfigMapName(c)
		if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
			t.Errorf("ConfigMapName(%q) = %q: %v", c, got, errs)
		}
		if !hashed.MatchString(got) {
			t.Errorf("ConfigMapName(%q) = %q, want a hash suffix", c, got)
		}
		if other, ok := names[got]; ok {
			t.Errorf("ConfigMapName(%q) = ConfigMapName(%q)", c, other)
		}
		names[got] = c
	}
}

func TestEntryRoundTripAndBounds(t *testing.T) {
	first, last := time.Unix(10, 5).UTC(), time.Unix(20, 7).UTC()
	e := deadletter.NewEntry("ns/a", 3, errors.New(strings.Repeat("é", 2000)), first, last, strings.Repeat("r", 400))
	if len(e.LastError) > deadletter.MaxErrorBytes || !utf8.ValidString(e.LastError) || !strings.HasSuffix(e.LastError, "…") {
		t.Fatalf("LastError not cut to %d valid bytes: %d bytes", deadletter.MaxErrorBytes, len(e.LastError))
	}
	if len(e.Replica) > 253 {
		t.Fatalf("Replica is %d bytes", len(e.Replica))
	}
	v, err := deadletter.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	got, err := deadletter.Decode(deadletter.DataKey("ns/a"), v)
	if err != nil || got.Key != e.Key || got.Attempts != 3 || got.LastError != e.LastError || !got.FirstFailure.Equal(first) || !got.LastFailure.Equal(last) || got.Replica != e.Replica {
		t.Fatalf("Decode(Encode(e)) = %+v, %v; e = %+v", got, err, e)
	}
	// Control characters escape to six bytes each: Encode cuts further.
	ctl := deadletter.NewEntry("ns/b", 1, errors.New(strings.Repeat("\x01", 1000)), first, last, "r")
	v, err = deadletter.Encode(ctl)
	if err != nil || len(v) > deadletter.MaxEntryBytes {
		t.Fatalf("Encode of an escaped error: %d bytes, %v", len(v), err)
	}
	if _, err := deadletter.Decode(deadletter.DataKey("ns/b"), v); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ name, dataKey, value, want string }{
		{"not JSON", "x", "{{{", "invalid character"},
		{"no key", "x", `{"attempts":1}`, "no key"},
		{"negative attempts", "ns_2fa", `{"key":"ns/a","attempts":-1}`, "negative attempts"},
		{"wrong data key", "x", `{"key":"ns/a","attempts":1}`, `belongs under data key "ns_2fa"`},
		{"array", "x", `[]`, "cannot unmarshal"},
	} {
		_, err := deadletter.Decode(tc.dataKey, tc.value)
		if !errors.Is(err, deadletter.ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Decode = %v, want ErrMalformed mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestRequestCodec(t *testing.T) {
	c := deadletter.RequestCodec{}
	for _, k := range []types.NamespacedName{{Namespace: "ns", Name: "a"}, {Name: "cluster"}, {Namespace: "ns", Name: "a/b"}} {
		got, err := c.Decode(c.Encode(k))
		if err != nil || got != k {
			t.Errorf("round trip of %v = %v, %v", k, got, err)
		}
	}
	for _, bad := range []string{"", "noslash", "ns/"} {
		if _, err := c.Decode(bad); err == nil {
			t.Errorf("Decode(%q) succeeded", bad)
		}
	}
}

// FuzzParse feeds arbitrary ConfigMap data: Parse never panics, every data
// key is either an entry or a problem, and entries survive a round trip.
func FuzzParse(f *testing.F) {
	v, _ := deadletter.Encode(deadletter.NewEntry("ns/a", 2, errors.New("x"), time.Unix(1, 0), time.Unix(2, 0), "r"))
	f.Add("ns_2fa", v)
	f.Add("x", "{{{")
	f.Add("ns_2fa", `{"key":"ns/a","attempts":1,"firstFailure":"not a time"}`)
	f.Add("a", `{"key":"a","attempts":1e400}`)
	f.Fuzz(func(t *testing.T, dataKey, value string) {
		entries, problems := deadletter.Parse(map[string]string{dataKey: value, "other": "{}"})
		if len(entries)+len(problems) != 2 && !(dataKey == "other") {
			t.Fatalf("%d entries + %d problems for 2 data keys", len(entries), len(problems))
		}
		for _, p := range problems {
			if !errors.Is(p.Err, deadletter.ErrMalformed) {
				t.Fatalf("problem without ErrMalformed: %v", p)
			}
		}
		for k, e := range entries {
			v, err := deadletter.Encode(e)
			if err != nil {
				continue // an entry too big to encode: never written by Skiff
			}
			back, err := deadletter.Decode(deadletter.DataKey(k), v)
			if err != nil || back.Key != e.Key || back.Attempts != e.Attempts {
				t.Fatalf("round trip of %+v: %+v, %v", e, back, err)
			}
		}
	})
}
