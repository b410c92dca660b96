package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/internal/netdial"
)

// Tune returns a copy of cfg with Skiff's transport defaults: an adaptive
// client-side concurrency limiter instead of client-go's token bucket,
// retries that honour 429 and Retry-After, a timeout for every non-watch
// request, and a dialer that finds dead connections in seconds. cfg is not
// modified. Share the result's HTTP client (rest.HTTPClientFor once, as
// Client does): the limiter and the retry budget are per Tune call, and
// the dialer makes client-go build a new connection pool per HTTPClientFor
// call.
//
// The defaults beside client-go's (rest.Config as clientcmd or
// rest.InClusterConfig returns it) and controller-runtime's (v0.24,
// config.GetConfig and client.New):
//
//	setting                   Skiff (Tune)                        client-go               controller-runtime
//	client-side rate limit    none (QPS -1): adaptive concurrency  token bucket 5 QPS,     none (QPS -1)
//	                          limit, see below                     burst 10
//	adaptive limit (AIMD)     starts at 256 in flight; halves on   none                    none
//	                          429; +8/s while no 429; never < 1
//	retries: 429              any request, up to 10 retries,      10, only with a         as client-go
//	                          backoff, Retry-After, budget         Retry-After header
//	retries: 503/504/reset    GET/HEAD/PUT/apply-PATCH only,       5xx with Retry-After:   as client-go
//	                          as above                             any verb; GET resets
//	retry backoff             100ms×2ⁿ, equal jitter, cap 10s;     Retry-After only (1s    as client-go
//	                          ≥ Retry-After (cap 60s)              for resets)
//	retry budget              10 retries/s, burst 100, per client  none                    none
//	request timeout           60s for non-watch requests,          none (Config.Timeout    none
//	                          all attempts included                0; it would cut watches)
//	TCP keepalive             idle 15s, every 5s, 3 probes         30s (Go: 15s×9)         as client-go
//	TCP_USER_TIMEOUT (Linux)  30s                                  kernel (~15 min)        as client-go
//	HTTP/2 health ping        client-go's: 30s idle, 15s timeout   same (env HTTP2_READ_   as client-go
//	                                                               IDLE_TIMEOUT_SECONDS,
//	                                                               HTTP2_PING_TIMEOUT_..)
//	idle connections per host client-go's 25 (HTTP/1.1 only;       25                      as client-go
//	                          HTTP/2 multiplexes one connection)
//
// Why the transport is client-go's and not our own: rest.Config lets a
// caller replace the Transport only without TLS settings (client-go refuses
// both), and client-go's transport is what rotates certificates from files
// and exec plugins and reloads a CA file (in-cluster). So Tune keeps it and
// sets only what rest.Config exposes per config — Dial (keepalive and
// TCP_USER_TIMEOUT: a dead peer is found by the kernel within ~30s whether
// the connection is idle or has unacknowledged data, for HTTP/2 and
// HTTP/1.1 alike) and Wrap (everything else). The HTTP/2 ping interval and
// the idle pool size are fixed inside client-go's transport (the ping only
// via process-wide environment variables); Tune leaves them.
//
// The limiter, timeout and retries run in one RoundTripper installed with
// cfg.Wrap, below client-go's authentication wrappers. Watches (GET with
// watch=true) bypass all three: they are long-running and their owners
// resume them.
//
// How the two retry layers meet: client-go's rest.Request retries (up to
// 10 times) a response with status 429 or 5xx that carries Retry-After,
// and a GET that failed with a reset or EOF. If both layers acted, the
// attempts would multiply (10 × 11). So this transport owns the decision:
// it removes Retry-After from every response it returns (the API server's
// Status body still carries details.retryAfterSeconds, so
// apierrors.SuggestsClientDelay keeps working), and when it gives up on a
// failed connection it returns a RetryError that client-go does not
// recognise as retryable. With retries disabled (MaxRetries < 0) it does
// neither, and client-go's own retries apply as usual.
//
// Every request waits for a slot of the adaptive limiter; its wait is
// recorded in rest_client_rate_limiter_duration_seconds. Backoff waits do
// not hold a slot.
func Tune(cfg *rest.Config, o TransportOptions) (*rest.Config, error) {
	if cfg == nil {
		return nil, errors.New("client: Tune: nil rest.Config")
	}
	if err := o.defaults(); err != nil {
		return nil, err
	}
	out := rest.CopyConfig(cfg)
	if out.RateLimiter == nil && out.QPS == 0 {
		out.QPS = -1 // the adaptive limiter below replaces client-go's 5 QPS token bucket
	}
	if out.Dial == nil {
		out.Dial = netdial.Dialer(o.KeepAlive).DialContext
	}
	host := hostOf(out)
	t := &tuned{o: o, host: host, budget: newRetryBudget(o.RetryRate, o.RetryBurst, o.Now())}
	if o.MaxInFlight > 0 {
		t.limiter = newAdaptiveLimiter(newAIMD(float64(o.MaxInFlight), o.LimitIncrease, 0.5, o.Now()), o.Now,
			o.Metrics.limitGauge(host))
	}
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &tunedRoundTripper{tuned: t, next: rt}
	})
	return out, nil
}

// TransportOptions configure Tune. The zero value gives Skiff's defaults;
// every field states its own.
type TransportOptions struct {
	// Timeout bounds a non-watch request from the first attempt to the
	// response headers, retries and waits included (the body is read
	// under the same deadline). Default 60s (the API server's own
	// --request-timeout); negative: none.
	Timeout time.Duration
	// MaxInFlight is where the adaptive limiter starts and the most it
	// allows. Default 256; negative: no limiter.
	MaxInFlight int
	// LimitIncrease is how fast the limit grows back while the server does
	// not answer 429, in requests per second. Default 8 (from 1 back to 256
	// in ~32s).
	LimitIncrease float64
	// MaxRetries bounds the retries of one request. Default 10; negative:
	// this transport retries nothing (client-go's own retries then apply).
	MaxRetries int
	// RetryRate and RetryBurst size the client-wide retry budget (a token
	// bucket; a retry takes a token). When it is empty a retry after a 503,
	// 504 or failed connection is not made; a retry after 429 waits for a
	// token, within the request's deadline. Default 10 per second, burst
	// 100.
	RetryRate  float64
	RetryBurst int
	// BackoffBase and BackoffMax shape the exponential backoff between
	// retries. Default 100ms and 10s.
	BackoffBase, BackoffMax time.Duration
	// KeepAlive is the TCP keepalive idle time; probes follow every third
	// of it, 3 of them, and TCP_USER_TIMEOUT is twice it. Default 15s;
	// used only when cfg.Dial is nil.
	KeepAlive time.Duration
	// Metrics, if non-nil, receives the limiter's and the retries' metrics.
	// Default nil.
	Metrics *TransportMetrics
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// maxRetryAfter caps a server's Retry-After: a misconfigured proxy asking
// for an hour must not park a request for an hour.
const maxRetryAfter = time.Minute

func (o *TransportOptions) defaults() error {
	if o.LimitIncrease < 0 || o.RetryRate < 0 || o.RetryBurst < 0 || o.BackoffBase < 0 || o.BackoffMax < 0 || o.KeepAlive < 0 {
		return fmt.Errorf("client: Tune: negative option in %+v", *o)
	}
	if o.Timeout == 0 {
		o.Timeout = time.Minute
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 256
	}
	if o.LimitIncrease == 0 {
		o.LimitIncrease = 8
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 10
	}
	if o.RetryRate == 0 {
		o.RetryRate = 10
	}
	if o.RetryBurst == 0 {
		o.RetryBurst = 100
	}
	if o.BackoffBase == 0 {
		o.BackoffBase = 100 * time.Millisecond
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 10 * time.Second
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

func hostOf(cfg *rest.Config) string {
	u, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return cfg.Host
	}
	return u.Host
}

// tuned is the state one Tune call shares among its RoundTrippers (client-go
// may build several from one config).
type tuned struct {
	o       TransportOptions
	host    string
	limiter *adaptiveLimiter // nil: no limiter
	budget  *retryBudget
}

type tunedRoundTripper struct {
	*tuned
	next http.RoundTripper
}

func (t *tunedRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if isWatch(req) {
		return t.next.RoundTrip(req)
	}
	ctx, cancel := req.Context(), context.CancelFunc(func() {})
	if t.o.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, t.o.Timeout)
	}
	resp, err := t.attempts(ctx, req)
	if err != nil || resp.Body == nil {
		cancel()
		return resp, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// attempts sends req until it succeeds, fails in a way not to retry, or a
// bound is reached.
func (t *tunedRoundTripper) attempts(ctx context.Context, req *http.Request) (*http.Response, error) {
	retries := t.o.MaxRetries >= 0 && replayable(req)
	for attempt := 1; ; attempt++ {
		r, err := t.request(ctx, req, attempt)
		if err != nil {
			return nil, err
		}
		sentAt, err := t.acquire(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("%s %s: waiting for the client-side limiter: %w", req.Method, req.URL.Redacted(), err)
		}
		resp, err := t.next.RoundTrip(r)
		class := classify(resp, err)
		if t.limiter != nil {
			t.limiter.Release(sentAt, class == retryThrottled)
		}
		if class == retryThrottled {
			t.o.Metrics.throttled()
		}
		if !retries || class == noRetry || (class == retryIfRepeatable && !repeatable(req)) {
			return t.finish(resp), err
		}
		delay, why := t.plan(ctx, class, attempt, resp)
		if why != "" {
			return t.giveUp(req, attempt, why, resp, err)
		}
		t.o.Metrics.retried(resp, req.Method)
		discard(resp)
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("%s %s: waiting %v to retry (attempt %d): %w", req.Method, req.URL.Redacted(), delay, attempt, ctx.Err())
		}
	}
}

// request is req for attempt n, under ctx, with a fresh body after the
// first attempt.
func (t *tunedRoundTripper) request(ctx context.Context, req *http.Request, n int) (*http.Request, error) {
	if n == 1 {
		if ctx == req.Context() {
			return req, nil
		}
		return req.WithContext(ctx), nil
	}
	r := req.Clone(ctx)
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("%s %s: replay the request body for attempt %d: %w", req.Method, req.URL.Redacted(), n, err)
		}
		r.Body = body
	}
	return r, nil
}

func (t *tunedRoundTripper) acquire(ctx context.Context, req *http.Request) (time.Time, error) {
	if t.limiter == nil {
		return time.Time{}, nil
	}
	start := t.o.Now()
	sentAt, err := t.limiter.Acquire(ctx)
	t.o.Metrics.waited(req.Method, t.host, t.o.Now().Sub(start))
	return sentAt, err
}

// plan decides the wait before the next attempt, or why there is none
// ("attempts", "budget", "deadline").
func (t *tunedRoundTripper) plan(ctx context.Context, class retryClass, attempt int, resp *http.Response) (time.Duration, string) {
	if attempt > t.o.MaxRetries {
		return 0, "attempts"
	}
	var ra time.Duration
	if resp != nil {
		ra, _ = retryAfter(resp.Header, maxRetryAfter)
	}
	delay := backoff(attempt, t.o.BackoffBase, t.o.BackoffMax, ra, rand.Float64())
	now := t.o.Now()
	deadline, hasDeadline := ctx.Deadline()
	if hasDeadline && !now.Add(delay).Before(deadline) {
		return 0, "deadline"
	}
	if class != retryThrottled {
		if !t.budget.take(now) {
			return 0, "budget"
		}
		return delay, ""
	}
	// The server asked us to come back: wait for a token rather than fail.
	delay = max(delay, t.budget.reserve(now))
	if hasDeadline && !now.Add(delay).Before(deadline) {
		t.budget.cancel(now)
		return 0, "deadline"
	}
	return delay, ""
}

// finish hands a response up: without Retry-After when this transport owns
// retries, so client-go's rest.Request does not retry it again.
func (t *tunedRoundTripper) finish(resp *http.Response) *http.Response {
	if resp != nil && t.o.MaxRetries >= 0 {
		resp.Header.Del("Retry-After")
	}
	return resp
}

func (t *tunedRoundTripper) giveUp(req *http.Request, attempts int, why string, resp *http.Response, err error) (*http.Response, error) {
	if err != nil {
		return nil, &RetryError{Method: req.Method, URL: req.URL.Redacted(), Attempts: attempts, Reason: why, Last: err}
	}
	return t.finish(resp), nil
}

// discard reads a little of a response that will not be used and closes
// it, so its connection can be reused.
func discard(resp *http.Response) {
	if resp == nil || resp.Body == nil {
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
}

// cancelOnClose releases a request's timeout when its body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func statusLabel(resp *http.Response) string {
	if resp == nil {
		return "<error>"
	}
	return strconv.Itoa(resp.StatusCode)
}
