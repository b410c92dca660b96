package manager

import "time"

// verdict is the outcome of checking one request: let it through, or answer
// it with 401 or 403. Errors talking to the API server are not verdicts and
// are never cached.
type verdict uint8

const (
	allow verdict = iota + 1
	unauthenticated
	forbidden
)

// decisionKey identifies a decision: the token (by its SHA-256, so the cache
// never holds a credential), the verb and the path.
type decisionKey struct {
	token [32]byte
	verb  string
	path  string
}

type decision struct {
	v       verdict
	reason  string
	expires time.Time
}

// decisionCache remembers verdicts for ttl, holding at most size of them.
// It does no I/O and reads no clock: the caller passes now. When it is full
// and a new key arrives, it first drops every expired entry and, if still
// full, the entry that expires first (with one ttl for all, the oldest).
// It is not safe for concurrent use; the authenticator locks around it.
type decisionCache struct {
	ttl     time.Duration
	size    int
	entries map[decisionKey]decision
}

func newDecisionCache(ttl time.Duration, size int) *decisionCache {
	return &decisionCache{ttl: ttl, size: size, entries: make(map[decisionKey]decision)}
}

// get returns the verdict for k if one was put less than ttl before now.
func (c *decisionCache) get(k decisionKey, now time.Time) (decision, bool) {
	d, ok := c.entries[k]
	if !ok {
		return decision{}, false
	}
	if !now.Before(d.expires) {
		delete(c.entries, k)
		return decision{}, false
	}
	return d, true
}

// put records a verdict for k, valid until now+ttl. A cache with ttl <= 0 or
// size <= 0 records nothing.
func (c *decisionCache) put(k decisionKey, v verdict, reason string, now time.Time) {
	if c.ttl <= 0 || c.size <= 0 {
		return
	}
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.size {
		c.evict(now)
	}
	c.entries[k] = decision{v: v, reason: reason, expires: now.Add(c.ttl)}
}

func (c *decisionCache) evict(now time.Time) {
	var oldest decisionKey
	var oldestAt time.Time
	first := true
	for k, d := range c.entries {
		if !now.Before(d.expires) {
			delete(c.entries, k)
			continue
		}
		if first || d.expires.Before(oldestAt) {
			oldest, oldestAt, first = k, d.expires, false
		}
	}
	if len(c.entries) >= c.size && !first {
		delete(c.entries, oldest)
	}
}

func (c *decisionCache) len() int { return len(c.entries) }
