package manager

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"
)

func key(n int) decisionKey { return decisionKey{verb: "get", path: fmt.Sprintf("/p%d", n)} }

func TestDecisionCacheExpiresAtTTL(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newDecisionCache(10*time.Second, 4)
	c.put(key(1), allow, "", t0)
	if d, ok := c.get(key(1), t0.Add(10*time.Second-time.Nanosecond)); !ok || d.v != allow {
		t.Fatalf("get just before ttl = %v %v, want allow", d, ok)
	}
	if _, ok := c.get(key(1), t0.Add(10*time.Second)); ok {
		t.Fatal("get at ttl still hit")
	}
	if c.len() != 0 {
		t.Fatalf("expired entry kept: len %d", c.len())
	}
	if _, ok := c.get(key(2), t0); ok {
		t.Fatal("hit for a key never put")
	}
}

func TestDecisionCacheKeysOnTokenVerbAndPath(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newDecisionCache(time.Minute, 8)
	base := decisionKey{token: [32]byte{1}, verb: "get", path: "/metrics"}
	c.put(base, allow, "", t0)
	for _, other := range []decisionKey{
		{token: [32]byte{2}, verb: "get", path: "/metrics"},
		{token: [32]byte{1}, verb: "post", path: "/metrics"},
		{token: [32]byte{1}, verb: "get", path: "/debug/skiff"},
	} {
		if _, ok := c.get(other, t0); ok {
			t.Errorf("%+v hit the entry of %+v", other, base)
		}
	}
}

func TestDecisionCacheEvictsExpiredThenOldest(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := newDecisionCache(10*time.Second, 3)
	c.put(key(1), allow, "", t0)
	c.put(key(2), forbidden, "no", t0.Add(1*time.Second))
	c.put(key(3), unauthenticated, "bad", t0.Add(2*time.Second))
	// Full and nothing expired: the oldest (1) goes.
	c.put(key(4), allow, "", t0.Add(3*time.Second))
	if _, ok := c.get(key(1), t0.Add(3*time.Second)); ok {
		t.Fatal("oldest entry survived an insert into a full cache")
	}
	for _, k := range []int{2, 3, 4} {
		if _, ok := c.get(key(k), t0.Add(3*time.Second)); !ok {
			t.Fatalf("entry %d evicted, want only the oldest gone", k)
		}
	}
	// At t0+11.5s entries 2 (expires 11s) is expired, 3 (12s) and 4 (13s)
	// are not: inserting drops 2 and keeps both live ones.
	now := t0.Add(11500 * time.Millisecond)
	c.put(key(5), allow, "", now)
	if c.len() != 3 {
		t.Fatalf("len %d, want 3", c.len())
	}
	for _, k := range []int{3, 4, 5} {
		if _, ok := c.get(key(k), now); !ok {
			t.Fatalf("live entry %d evicted while an expired one could go", k)
		}
	}
	// Overwriting a present key in a full cache evicts nothing.
	c.put(key(3), forbidden, "changed", now)
	if d, _ := c.get(key(3), now); d.v != forbidden || c.len() != 3 {
		t.Fatalf("overwrite: %+v len %d", d, c.len())
	}
}

func TestDecisionCacheDisabled(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, c := range []*decisionCache{newDecisionCache(-1, 10), newDecisionCache(time.Second, 0)} {
		c.put(key(1), allow, "", t0)
		if _, ok := c.get(key(1), t0); ok {
			t.Fatalf("cache ttl=%v size=%d remembered a verdict", c.ttl, c.size)
		}
	}
}

// TestDecisionCacheAgainstReference runs random operations against the cache
// and a naive model (a list in insertion order) and checks they agree, and
// that the size bound always holds.
func TestDecisionCacheAgainstReference(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	const ttl, size = 5 * time.Second, 4
	c := newDecisionCache(ttl, size)
	type entry struct {
		k       decisionKey
		v       verdict
		expires time.Time
	}
	var model []entry // oldest first
	now := time.Unix(1000, 0)
	find := func(k decisionKey) int {
		for i, e := range model {
			if e.k == k {
				return i
			}
		}
		return -1
	}
	for step := range 20000 {
		now = now.Add(time.Duration(1+r.IntN(1500)) * time.Millisecond) // distinct times: no ties for "oldest"
		k := key(r.IntN(8))
		if r.IntN(2) == 0 {
			v := verdict(1 + r.IntN(3))
			c.put(k, v, "", now)
			if i := find(k); i >= 0 {
				model = append(model[:i], model[i+1:]...)
			} else if len(model) >= size {
				live := model[:0]
				for _, e := range model {
					if now.Before(e.expires) {
						live = append(live, e)
					}
				}
				model = live
				if len(model) >= size {
					model = model[1:]
				}
			}
			model = append(model, entry{k, v, now.Add(ttl)})
		} else {
			d, ok := c.get(k, now)
			i := find(k)
			want := i >= 0 && now.Before(model[i].expires)
			if i >= 0 && !want {
				model = append(model[:i], model[i+1:]...)
			}
			if ok != want || (ok && d.v != model[i].v) {
				t.Fatalf("step %d: get(%v) = %v %v, reference says %v", step, k.path, d.v, ok, want)
			}
		}
		if c.len() > size {
			t.Fatalf("step %d: %d entries, bound %d", step, c.len(), size)
		}
	}
}

func TestBearerToken(t *testing.T) {
	cases := []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer", "", false},
		{"Bearer ", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"", "", false},
		{"abc", "", false},
	}
	for _, tc := range cases {
		got, ok := bearerToken(tc.header)
		if got != tc.token || ok != tc.ok {
			t.Errorf("bearerToken(%q) = %q %v, want %q %v", tc.header, got, ok, tc.token, tc.ok)
		}
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x ", "Basic y", "", "Bearer"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, ok := bearerToken(h)
		if !ok {
			if tok != "" {
				t.Fatalf("bearerToken(%q) refused but returned %q", h, tok)
			}
			return
		}
		if tok == "" || strings.TrimSpace(tok) != tok || !strings.Contains(h, tok) {
			t.Fatalf("bearerToken(%q) = %q", h, tok)
		}
		if scheme, _, _ := strings.Cut(strings.TrimSpace(h), " "); !strings.EqualFold(scheme, "bearer") {
			t.Fatalf("bearerToken(%q) accepted scheme %q", h, scheme)
		}
	})
}

func TestVerbOf(t *testing.T) {
	for method, want := range map[string]string{"GET": "get", "HEAD": "get", "POST": "post", "PUT": "put"} {
		if got := verbOf(method); got != want {
			t.Errorf("verbOf(%s) = %s, want %s", method, got, want)
		}
	}
}

func TestIsLoopbackAddr(t *testing.T) {
	cases := []struct {
		addr     string
		loopback bool
		err      bool
	}{
		{"127.0.0.1:8080", true, false},
		{"127.0.0.2:0", true, false},
		{"[::1]:8080", true, false},
		{"localhost:8080", true, false},
		{"LOCALHOST:1", true, false},
		{":8080", false, false},
		{"0.0.0.0:8080", false, false},
		{"[::]:8080", false, false},
		{"10.0.0.5:8080", false, false},
		{"metrics.example.com:8080", false, false},
		{"8080", false, true},
		{"", false, true},
	}
	for _, tc := range cases {
		got, err := isLoopbackAddr(tc.addr)
		if got != tc.loopback || (err != nil) != tc.err {
			t.Errorf("isLoopbackAddr(%q) = %v, %v; want %v, error %v", tc.addr, got, err, tc.loopback, tc.err)
		}
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.addr)) {
			t.Errorf("isLoopbackAddr(%q) error %q does not name the address", tc.addr, err)
		}
	}
}

func TestIPOrLocalhost(t *testing.T) {
	cases := map[string]bool{
		"127.0.0.1:8080":         true,
		"127.0.0.1":              true,
		"[::1]:8080":             true,
		"::1":                    true,
		"10.1.2.3:9090":          true,
		"localhost:8080":         true,
		"LocalHost.":             true,
		"app.localhost:1":        true,
		"evil.example:8080":      false,
		"evil.example":           false,
		"localhost.evil.example": false,
		"127.0.0.1.nip.io:8080":  false,
		"":                       false,
	}
	for host, want := range cases {
		if got := ipOrLocalhost(host); got != want {
			t.Errorf("ipOrLocalhost(%q) = %v, want %v", host, got, want)
		}
	}
}

func FuzzIPOrLocalhost(f *testing.F) {
	for _, s := range []string{"127.0.0.1:80", "localhost", "evil.example", "[::1]:1", "a.localhost."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if !ipOrLocalhost(host) {
			return
		}
		// Whatever it accepts names no registrable domain: an IP, or
		// localhost or a name under it. (The port is not part of the name.)
		h := strings.ToLower(host)
		if name, _, err := net.SplitHostPort(h); err == nil {
			h = name
		}
		if !strings.Contains(h, "localhost") && strings.IndexFunc(h, func(r rune) bool { return r >= 'g' && r <= 'z' }) >= 0 {
			t.Fatalf("ipOrLocalhost(%q) accepted a host name", host)
		}
	})
}
