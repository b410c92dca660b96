package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// W1's load generator runs in a child process (this test binary, re-run
// with w1LoadgenEnv set), so that the benchmark process's CPU time is the
// server's alone. It mirrors how kube-apiserver calls a webhook behind a
// Service: HTTP/1.1 (the API server sets NextProtos to http/1.1 for
// service and non-loopback URL webhooks, k8s.io/apiserver
// pkg/util/webhook/client.go, issue 75791), keep-alive connections, JSON
// AdmissionReview bodies (pre-encoded here).

// w1LoadgenEnv makes TestMain run as W1's load generator (see runW1Loadgen).
const w1LoadgenEnv = "SKIFF_BENCH_W1_LOADGEN"

// w1Load is what the load generator is asked to do.
type w1Load struct {
	URL      string        // https://127.0.0.1:port/path
	CA       []byte        // PEM of the serving certificate
	Mutating bool          // which reviews to send (and how to check answers)
	Reviews  int           // distinct pre-encoded reviews, sent round-robin
	Conns    int           // keep-alive connections (and closed-loop workers)
	Warmup   time.Duration // closed loop, not measured
	Closed   time.Duration // closed loop, measured: reviews/s
	Rate     int           // open loop: reviews per second
	Open     time.Duration // open loop, measured: latency
}

// w1Result is what the load generator reports.
type w1Result struct {
	Total        int     // reviews answered, warm-up included
	ClosedN      int     // reviews answered in the closed loop
	ClosedSec    float64 // its duration
	OpenN        int     // reviews sent (and answered) in the open loop
	OpenSec      float64 // from the first scheduled send to the last answer
	P50ms, P99ms float64 // open-loop latency from the scheduled send time
	MaxMs        float64
	Checked      int     // answers fully verified (patch applied and compared)
	Proto        string  // the negotiated HTTP protocol
	CPUSec       float64 // the load generator's own CPU time
	Errors       int     // failed or wrong answers (any fails the run)
	FirstError   string  `json:",omitempty"`
}

// runW1LoadgenProcess runs the load generator as a child process.
func runW1LoadgenProcess(l w1Load) (w1Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return w1Result{}, err
	}
	spec, err := json.Marshal(l)
	if err != nil {
		return w1Result{}, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), w1LoadgenEnv+"="+string(spec))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return w1Result{}, fmt.Errorf("W1 load generator: %w: %s", err, errOut.String())
	}
	var r w1Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return w1Result{}, fmt.Errorf("W1 load generator output %q: %w", out.String(), err)
	}
	if r.Errors > 0 {
		return r, fmt.Errorf("W1 load generator: %d bad answers, first: %s", r.Errors, r.FirstError)
	}
	return r, nil
}

// runW1Loadgen is the load generator process: warm-up, then a closed loop
// (Conns workers, each sending its next review as soon as the previous
// one is answered), then an open loop (reviews sent at Rate on a fixed
// schedule, whatever the server's pace; latency counted from the
// scheduled time so a stalled server is not hidden). Every answer is
// checked (HTTP 200, the review's UID, allowed, a patch for mutating);
// one in 64 is fully verified (w1Check). Prints a w1Result as JSON.
func runW1Loadgen() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "W1 load generator:", err); return 1 }
	var l w1Load
	if err := json.Unmarshal([]byte(os.Getenv(w1LoadgenEnv)), &l); err != nil {
		return fail(err)
	}
	reviews, err := w1Reviews(l.Mutating, l.Reviews)
	if err != nil {
		return fail(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(l.CA) {
		return fail(errors.New("no certificate in the CA PEM"))
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}},
		ForceAttemptHTTP2:   false,
		MaxConnsPerHost:     l.Conns,
		MaxIdleConnsPerHost: l.Conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	g := &w1Gen{l: l, reviews: reviews, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
	cpu0 := cpuSeconds()

	g.closed(l.Warmup)
	start := time.Now()
	res := w1Result{ClosedN: g.closed(l.Closed)}
	res.ClosedSec = time.Since(start).Seconds()
	lats, openSec := g.open(l.Rate, l.Open)
	res.OpenN, res.OpenSec = len(lats), openSec
	slices.Sort(lats)
	if n := len(lats); n > 0 {
		ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
		res.P50ms, res.P99ms, res.MaxMs = ms(lats[n/2]), ms(lats[min(n-1, n*99/100)]), ms(lats[n-1])
	}
	res.Total = int(g.sent.Load())
	res.Checked = int(g.checked.Load())
	res.Proto, _ = g.proto.Load().(string)
	res.Errors = int(g.errors.Load())
	if e, ok := g.firstErr.Load().(string); ok {
		res.FirstError = e
	}
	res.CPUSec = cpuSeconds() - cpu0
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return fail(err)
	}
	return 0
}

type w1Gen struct {
	l       w1Load
	reviews []w1Review
	client  *http.Client
	next    atomic.Int64 // review counter
	sent    atomic.Int64 // answered reviews
	checked atomic.Int64
	errors  atomic.Int64
	// firstErr and proto hold strings.
	firstErr, proto atomic.Value
}

// closed runs Conns workers for d and returns the reviews answered.
func (g *w1Gen) closed(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	deadline := time.Now().Add(d)
	var n atomic.Int64
	var wg sync.WaitGroup
	for range g.l.Conns {
		wg.Go(func() {
			buf := new(bytes.Buffer)
			for time.Now().Before(deadline) {
				g.send(buf)
				n.Add(1)
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// open sends rate reviews a second for d and returns each one's latency
// from its scheduled send time, and the time from the first scheduled
// send to the last answer.
func (g *w1Gen) open(rate int, d time.Duration) ([]time.Duration, float64) {
	if rate <= 0 || d <= 0 {
		return nil, 0
	}
	n := int(d.Seconds() * float64(rate))
	period := time.Second / time.Duration(rate)
	lats := make([]time.Duration, n)
	bufs := sync.Pool{New: func() any { return new(bytes.Buffer) }}
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		at := start.Add(time.Duration(i) * period)
		if w := time.Until(at); w > 0 {
			time.Sleep(w)
		}
		wg.Go(func() {
			buf := bufs.Get().(*bytes.Buffer)
			g.send(buf)
			bufs.Put(buf)
			lats[i] = time.Since(at)
		})
	}
	wg.Wait()
	return lats, time.Since(start).Seconds()
}

// send posts the next review and checks the answer.
func (g *w1Gen) send(buf *bytes.Buffer) {
	k := g.next.Add(1)
	rv := g.reviews[int(k)%len(g.reviews)]
	status, err := g.post(rv.body, buf)
	g.sent.Add(1)
	if err == nil {
		err = g.quickCheck(rv, status, buf.Bytes())
	}
	if err == nil && k%64 == 0 {
		err = w1Check(g.l.Mutating, rv, status, buf.Bytes())
		g.checked.Add(1)
	}
	if err != nil {
		g.errors.Add(1)
		g.firstErr.CompareAndSwap(nil, err.Error())
	}
}

func (g *w1Gen) post(body []byte, buf *bytes.Buffer) (int, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, g.l.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	g.proto.CompareAndSwap(nil, resp.Proto)
	buf.Reset()
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, err
}

var (
	w1Allowed  = []byte(`"allowed":true`)
	w1HasPatch = []byte(`"patch":"`)
)

// quickCheck is the check every answer gets.
func (g *w1Gen) quickCheck(rv w1Review, status int, body []byte) error {
	if status != 200 || !bytes.Contains(body, w1Allowed) || !bytes.Contains(body, []byte(strconv.Quote(rv.uid))) ||
		g.l.Mutating != bytes.Contains(body, w1HasPatch) {
		return fmt.Errorf("review %s: HTTP %d, not an allowed answer for it (mutating %v): %.300s", rv.uid, status, g.l.Mutating, body)
	}
	return nil
}
