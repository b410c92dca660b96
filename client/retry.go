package client

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// Which requests are retried, and on what. Kept pure (no I/O, no clock):
// the transport asks, and acts.
//
// Any request is retried on 429 Too Many Requests: the API server's
// max-in-flight filter and API Priority and Fairness reject before the
// request reaches a handler, so nothing was executed.
//
// 503, 504 and a failed connection (reset, EOF, HTTP/2 connection lost or
// GOAWAY, refused) may come after the server executed the request, so they
// are retried only for requests that are safe to repeat:
//
//   - GET and HEAD (reads; watches are never retried here, a watch's owner
//     resumes it from its last resourceVersion);
//   - PUT: an update carries the object's resourceVersion as a precondition
//     (a repeat of an update that was applied fails with Conflict rather
//     than writing twice), and an unconditional update writes the same
//     content again;
//   - PATCH of type application/apply-patch (server-side apply is
//     declarative: applying the same configuration twice yields the same
//     object).
//
// Never repeated after a possible execution:
//
//   - POST: a create with generateName would make a second object, and a
//     repeated plain create turns a success into AlreadyExists;
//   - other PATCH types (a JSON patch "add" to a list appends twice);
//   - DELETE: its preconditions live in an encoded DeleteOptions body
//     (JSON or protobuf) that would have to be decoded to tell, and a
//     repeated delete of an object already deleted answers NotFound for a
//     request that succeeded.
type retryClass int

const (
	noRetry           retryClass = iota
	retryThrottled               // 429: retry any request
	retryIfRepeatable            // 503, 504, connection failure: only safe requests
)

// classify says what an attempt's outcome calls for. resp is nil when err
// is not.
func classify(resp *http.Response, err error) retryClass {
	if err != nil {
		if connectionFailed(err) {
			return retryIfRepeatable
		}
		return noRetry
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests:
		return retryThrottled
	case http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return retryIfRepeatable
	}
	return noRetry
}

// connectionFailed reports whether err says the connection broke or could
// not be made: the server may or may not have seen the request. A timeout
// is not one of them (it is the caller's deadline, or ours).
func connectionFailed(err error) bool {
	return utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) ||
		utilnet.IsHTTP2ConnectionLost(err) || utilnet.IsConnectionRefused(err)
}

// repeatable reports whether req may be sent again after the server may
// have executed it (see the rules above). Watches are not: they are
// excluded from retries altogether.
func repeatable(req *http.Request) bool {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut:
		return true
	case http.MethodPatch:
		return strings.HasPrefix(req.Header.Get("Content-Type"), "application/apply-patch")
	}
	return false
}

// isWatch reports whether req is a watch (long-running: no timeout, no
// limiter slot, no retry, no transfer phase): a GET whose query has
// watch=true or watch=1, as the API server accepts. It scans the raw query
// rather than parsing it: it runs on every request.
func isWatch(req *http.Request) bool {
	if req.Method != http.MethodGet {
		return false
	}
	for rest := req.URL.RawQuery; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, "&")
		if part == "watch=true" || part == "watch=1" {
			return true
		}
	}
	return false
}

// replayable reports whether req's body can be sent again.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// retryAfter parses a Retry-After header given in seconds (the form the
// API server sends). An absent, malformed, negative or HTTP-date value
// gives 0, false. Values are capped at capAt.
func retryAfter(h http.Header, capAt time.Duration) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	s, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || s < 0 {
		return 0, false
	}
	if s >= int(capAt/time.Second) { // before multiplying: a huge value would overflow
		return capAt, true
	}
	return time.Duration(s) * time.Second, true
}

// backoff is the wait before retry number n (1 for the first retry):
// exponential from base, capped at maxDelay, with "equal jitter" (a
// uniform draw from the upper half, u in [0,1)) so clients throttled
// together do not come back together. When the server sent Retry-After ra,
// the wait is ra plus that jitter: never earlier than the server asked.
func backoff(n int, base, maxDelay, ra time.Duration, u float64) time.Duration {
	exp := float64(base) * math.Pow(2, float64(max(n, 1)-1))
	exp = math.Min(exp, float64(maxDelay))
	jitter := time.Duration(u * exp / 2)
	if ra > 0 {
		return ra + jitter
	}
	return time.Duration(exp/2) + jitter
}

// retryBudget is the client-wide token bucket of retries: rate tokens per
// second up to burst; every retry takes one. It bounds how hard one client
// can hit a server that keeps failing, whatever the number of requests.
// Time is an argument. Safe for concurrent use.
type retryBudget struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	at     time.Time
}

func newRetryBudget(rate float64, burst int, now time.Time) *retryBudget {
	return &retryBudget{rate: rate, burst: float64(burst), tokens: float64(burst), at: now}
}

func (b *retryBudget) refillLocked(now time.Time) {
	if dt := now.Sub(b.at); dt > 0 {
		b.tokens = math.Min(b.burst, b.tokens+b.rate*dt.Seconds())
		b.at = now
	}
}

// take spends a token if there is one.
func (b *retryBudget) take(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now)
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// reserve spends a token now or in the future: it returns how long the
// caller must wait before using it (0: now). A reservation not used must be
// given back with cancel.
func (b *retryBudget) reserve(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now)
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	if b.rate <= 0 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(-b.tokens / b.rate * float64(time.Second))
}

// cancel returns a token taken by reserve and not used.
func (b *retryBudget) cancel(now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refillLocked(now)
	b.tokens = math.Min(b.burst, b.tokens+1)
}

// RetryError is returned when the transport gave up on a request whose
// connection failed and that it was allowed to retry: it tried Attempts
// times and the last attempt failed with Last.
//
// It deliberately does not unwrap to Last, and its message does not quote
// it: client-go's rest.Request retries a GET whose error looks like a
// connection reset or EOF (by type and by message) up to 10 more times,
// and each of those would run this transport's retries again. Hiding the
// cause keeps the retry decisions in one layer. Last is there for a caller
// that wants the cause.
type RetryError struct {
	Method, URL string
	Attempts    int
	Reason      string // why the transport stopped: "attempts", "budget", "deadline"
	Last        error
}

func (e *RetryError) Error() string {
	return fmt.Sprintf("%s %s: the connection to the server failed %d times (%s); gave up: retry %s exhausted",
		e.Method, e.URL, e.Attempts, describeConnError(e.Last), e.Reason)
}

// describeConnError names a connection failure in words client-go's
// retry matchers do not recognise (see RetryError).
func describeConnError(err error) string {
	switch {
	case utilnet.IsConnectionRefused(err):
		return "refused"
	case utilnet.IsConnectionReset(err):
		return "reset"
	case utilnet.IsHTTP2ConnectionLost(err):
		return "HTTP/2 connection lost"
	}
	return "closed early"
}
