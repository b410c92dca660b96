package client

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
)

func TestClassifyRetry(t *testing.T) {
	reset := &url.Error{Op: "Get", URL: "https://h/api", Err: &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}}
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	cases := []struct {
		name string
		code int
		err  error
		want retryClass
	}{
		{"200", 200, nil, noRetry},
		{"201", 201, nil, noRetry},
		{"409 conflict", 409, nil, noRetry},
		{"429", 429, nil, retryThrottled},
		{"500", 500, nil, noRetry},
		{"502", 502, nil, noRetry},
		{"503", 503, nil, retryIfRepeatable},
		{"504", 504, nil, retryIfRepeatable},
		{"reset", 0, reset, retryIfRepeatable},
		{"refused", 0, refused, retryIfRepeatable},
		{"EOF", 0, io.EOF, retryIfRepeatable},
		{"unexpected EOF", 0, fmt.Errorf("read: %w", io.ErrUnexpectedEOF), noRetry}, // wrapped: not the bare sentinel utilnet matches
		{"http2 lost", 0, errors.New("http2: client connection lost"), retryIfRepeatable},
		{"goaway", 0, errors.New("http2: server sent GOAWAY and closed the connection"), retryIfRepeatable},
		{"deadline", 0, fmt.Errorf("x: %w", os.ErrDeadlineExceeded), noRetry},
		{"tls", 0, errors.New("tls: bad certificate"), noRetry},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var resp *http.Response
			if tc.err == nil {
				resp = &http.Response{StatusCode: tc.code}
			}
			if got := classify(resp, tc.err); got != tc.want {
				t.Fatalf("classify = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRepeatableAndWatch(t *testing.T) {
	cases := []struct {
		method, url, contentType string
		repeatable, watch        bool
	}{
		{"GET", "/api/v1/namespaces/a/configmaps/x", "", true, false},
		{"GET", "/api/v1/configmaps?watch=true&resourceVersion=5", "", true, true},
		{"GET", "/api/v1/configmaps?watch=false", "", true, false},
		{"HEAD", "/api", "", true, false},
		{"PUT", "/api/v1/namespaces/a/configmaps/x", "application/vnd.kubernetes.protobuf", true, false},
		{"PATCH", "/apis/x/v1/foos/a", "application/apply-patch+yaml", true, false},
		{"PATCH", "/apis/x/v1/foos/a", "application/apply-patch+cbor", true, false},
		{"PATCH", "/apis/x/v1/foos/a", "application/merge-patch+json", false, false},
		{"PATCH", "/apis/x/v1/foos/a", "application/json-patch+json", false, false},
		{"PATCH", "/apis/x/v1/foos/a", "application/strategic-merge-patch+json", false, false},
		{"POST", "/api/v1/namespaces/a/configmaps", "application/json", false, false},
		{"POST", "/api/v1/namespaces/a/configmaps?watch=true", "application/json", false, false},
		{"DELETE", "/api/v1/namespaces/a/configmaps/x", "application/json", false, false},
	}
	for _, tc := range cases {
		req, err := http.NewRequest(tc.method, "https://h"+tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.contentType != "" {
			req.Header.Set("Content-Type", tc.contentType)
		}
		if got := repeatable(req); got != tc.repeatable {
			t.Errorf("repeatable(%s %s %s) = %v, want %v", tc.method, tc.url, tc.contentType, got, tc.repeatable)
		}
		if got := isWatch(req); got != tc.watch {
			t.Errorf("isWatch(%s %s) = %v, want %v", tc.method, tc.url, got, tc.watch)
		}
	}
}

func TestReplayable(t *testing.T) {
	withBody, _ := http.NewRequest("POST", "https://h/", strings.NewReader("x")) // sets GetBody
	opaque, _ := http.NewRequest("POST", "https://h/", io.NopCloser(strings.NewReader("x")))
	none, _ := http.NewRequest("GET", "https://h/", nil)
	noBody, _ := http.NewRequest("GET", "https://h/", http.NoBody)
	for _, tc := range []struct {
		name string
		req  *http.Request
		want bool
	}{{"GetBody", withBody, true}, {"opaque reader", opaque, false}, {"nil body", none, true}, {"NoBody", noBody, true}} {
		if got := replayable(tc.req); got != tc.want {
			t.Errorf("%s: replayable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	cases := []struct {
		v    string
		want time.Duration
		ok   bool
	}{
		{"", 0, false}, {"1", time.Second, true}, {" 3 ", 3 * time.Second, true}, {"0", 0, true},
		{"-1", 0, false}, {"1.5", 0, false}, {"Wed, 21 Oct 2015 07:28:00 GMT", 0, false},
		{"3600", time.Minute, true}, {"60", time.Minute, true}, {"59", 59 * time.Second, true},
		{"99999999999999999999", 0, false}, {"9223372036854775807", time.Minute, true},
	}
	for _, tc := range cases {
		h := http.Header{}
		if tc.v != "" {
			h.Set("Retry-After", tc.v)
		}
		got, ok := retryAfter(h, time.Minute)
		if got != tc.want || ok != tc.ok {
			t.Errorf("retryAfter(%q) = %v, %v; want %v, %v", tc.v, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzRetryAfter: the header comes from the network; whatever it says, the
// wait is within [0, cap] and parsing never panics.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"1", "-5", "1e3", "9223372036854775807", "abc", " 7"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"Retry-After": []string{v}}
		d, ok := retryAfter(h, time.Minute)
		if d < 0 || d > time.Minute || (!ok && d != 0) {
			t.Fatalf("retryAfter(%q) = %v, %v", v, d, ok)
		}
	})
}

func TestBackoffBounds(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	base, maxD := 100*time.Millisecond, 10*time.Second
	for range 10000 {
		n := 1 + r.IntN(40)
		u := r.Float64()
		var ra time.Duration
		if r.IntN(2) == 0 {
			ra = time.Duration(r.IntN(61)) * time.Second
		}
		exp := maxD
		if n-1 < 20 {
			exp = min(base<<(n-1), maxD)
		}
		got := backoff(n, base, maxD, ra, u)
		lo, hi := exp/2, exp
		if ra > 0 {
			lo, hi = ra, ra+exp/2
		}
		if got < lo-time.Nanosecond || got > hi+time.Nanosecond {
			t.Fatalf("backoff(%d, ra=%v, u=%v) = %v, want in [%v, %v]", n, ra, u, got, lo, hi)
		}
	}
	// Monotone in the retry number for a fixed draw, until the cap.
	for n := 1; n < 12; n++ {
		if backoff(n+1, base, maxD, 0, 0.5) < backoff(n, base, maxD, 0, 0.5) {
			t.Fatalf("backoff decreased from retry %d to %d", n, n+1)
		}
	}
	if got := backoff(1, base, maxD, 0, 0); got != 50*time.Millisecond {
		t.Fatalf("first backoff with u=0 = %v, want 50ms", got)
	}
}

func TestRetryBudget(t *testing.T) {
	b := newRetryBudget(2, 3, t0)
	for i := range 3 {
		if !b.take(t0) {
			t.Fatalf("take %d of a full burst of 3 failed", i)
		}
	}
	if b.take(t0) {
		t.Fatal("take from an empty budget succeeded")
	}
	if !b.take(at(0.5)) { // +1 token after 0.5s at 2/s
		t.Fatal("take after refilling one token failed")
	}
	if b.take(at(0.5)) {
		t.Fatal("a second take after refilling one token succeeded")
	}
	// reserve: the budget is empty at 0.5s; the next token is due at 1s.
	if w := b.reserve(at(0.5)); w != 500*time.Millisecond {
		t.Fatalf("reserve on an empty budget = %v, want 500ms", w)
	}
	if w := b.reserve(at(0.5)); w != time.Second {
		t.Fatalf("second reserve = %v, want 1s (queued behind the first)", w)
	}
	b.cancel(at(0.5))
	b.cancel(at(0.5))
	if b.tokens != 0 {
		t.Fatalf("after cancelling both reservations, %v tokens, want 0", b.tokens)
	}
	if !b.take(at(10)) || !b.take(at(10)) || !b.take(at(10)) || b.take(at(10)) {
		t.Fatal("refill beyond the burst")
	}
}

// TestRetryErrorHidesCause: client-go's rest.Request retries a GET whose
// error utilnet classifies as a reset or EOF; RetryError must not be one.
func TestRetryErrorHidesCause(t *testing.T) {
	causes := []error{
		&net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)},
		io.EOF,
		errors.New("http2: client connection lost"),
		errors.New("http2: server sent GOAWAY and closed the connection; LastStreamID=1"),
		&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)},
	}
	for _, c := range causes {
		err := error(&url.Error{Op: "Get", URL: "https://h/api", Err: &RetryError{Method: "GET", URL: "https://h/api", Attempts: 11, Reason: "attempts", Last: c}})
		if utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) || utilnet.IsHTTP2ConnectionLost(err) || utilnet.IsTimeout(err) {
			t.Errorf("RetryError over %v looks retryable to client-go: %v", c, err)
		}
		var re *RetryError
		if !errors.As(err, &re) || re.Last != c {
			t.Errorf("RetryError over %v: cause not reachable through errors.As", c)
		}
	}
}
