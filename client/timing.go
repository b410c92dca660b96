package client

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// Request phases, the values of the label "phase" of
// skiff_rest_client_request_phase_seconds. Each is observed only when it
// happened: a request on a reused connection has no dns, connect or tls
// phase, and a request to an IP address has no dns phase.
const (
	// PhaseDNS is the name lookup of a new connection.
	PhaseDNS = "dns"
	// PhaseConnect is the TCP connect of a new connection.
	PhaseConnect = "connect"
	// PhaseTLS is the TLS handshake of a new connection.
	PhaseTLS = "tls"
	// PhaseServer is the wait for the first byte of the response, from the
	// moment the request (headers and body) was written: the server's time
	// plus one network round trip.
	PhaseServer = "server"
	// PhaseTransfer is the read of the response body, from its first byte
	// until the caller reads it to the end or closes it. Watches have no
	// transfer phase: their body is read for the watch's whole life, which
	// measures nothing about the server.
	PhaseTransfer = "transfer"
)

// The API Priority and Fairness response headers, in canonical form so
// they are looked up without canonicalising on every response.
const (
	headerFlowSchemaUID    = "X-Kubernetes-Pf-Flowschema-Uid"
	headerPriorityLevelUID = "X-Kubernetes-Pf-Prioritylevel-Uid"
)

// PriorityAndFairness is what the API server said about how it classified a
// request under API Priority and Fairness: the UIDs of the FlowSchema that
// matched it and of the PriorityLevelConfiguration it was queued in. The
// server sends them on responses to requests it classified (checked for a
// non-admin identity; Skiff does not depend on them for exempt ones); look
// the UIDs up among the server's flowschemas and prioritylevelconfigurations
// (flowcontrol.apiserver.k8s.io) to name them.
type PriorityAndFairness struct {
	FlowSchemaUID, PriorityLevelUID string
}

// priorityAndFairnessOf reads the headers of h; ok is false when the server
// sent neither.
func priorityAndFairnessOf(h http.Header) (pf PriorityAndFairness, ok bool) {
	if v := h[headerFlowSchemaUID]; len(v) > 0 {
		pf.FlowSchemaUID = v[0]
	}
	if v := h[headerPriorityLevelUID]; len(v) > 0 {
		pf.PriorityLevelUID = v[0]
	}
	return pf, pf != PriorityAndFairness{}
}

// kindOf classifies req for metrics and spans.
func kindOf(req *http.Request) (RequestKind, bool) {
	watch := isWatch(req)
	return Classify(req.Method, req.URL.Path, watch), watch
}

// phaseTimer follows one request through its phases and observes each one
// in m as it ends. The transport may run its hooks on goroutines other than
// the caller's (it dials in the background, and a connection dialled for
// one request may serve another), so the fields are guarded by mu. A
// connection's dns, connect and tls phases are counted under the verb of
// the request that caused the dial.
type phaseTimer struct {
	m     *RequestMetrics
	verb  string
	watch bool

	mu                                                            sync.Mutex
	dnsStart, connectStart, tlsStart, gotConnAt, wrote, firstByte time.Time
}

// traceRequest returns req with hooks that time its phases.
func (m *RequestMetrics) traceRequest(req *http.Request) (*http.Request, *phaseTimer) {
	kind, watch := kindOf(req)
	t := &phaseTimer{m: m, verb: kind.Verb, watch: watch}
	ct := &httptrace.ClientTrace{
		GotConn:              t.gotConn,
		DNSStart:             t.dnsStarted,
		DNSDone:              t.dnsDone,
		ConnectStart:         t.connectStarted,
		ConnectDone:          t.connectDone,
		TLSHandshakeStart:    t.tlsStarted,
		TLSHandshakeDone:     t.tlsDone,
		WroteRequest:         t.wroteRequest,
		GotFirstResponseByte: t.gotFirstByte,
	}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), ct)), t
}

func (t *phaseTimer) observe(phase string, d time.Duration) {
	t.m.phases.WithLabelValues(phase, t.verb).Observe(d.Seconds())
}

func (t *phaseTimer) gotConn(info httptrace.GotConnInfo) {
	t.mu.Lock()
	t.gotConnAt = time.Now()
	t.mu.Unlock()
	if info.Reused {
		t.m.reused.Inc()
	} else {
		t.m.fresh.Inc()
	}
}

func (t *phaseTimer) dnsStarted(httptrace.DNSStartInfo) {
	t.mu.Lock()
	t.dnsStart = time.Now()
	t.mu.Unlock()
}

func (t *phaseTimer) dnsDone(info httptrace.DNSDoneInfo) {
	t.endPhase(PhaseDNS, &t.dnsStart, info.Err)
}

func (t *phaseTimer) connectStarted(string, string) {
	t.mu.Lock()
	t.connectStart = time.Now()
	t.mu.Unlock()
}

func (t *phaseTimer) connectDone(_, _ string, err error) {
	t.endPhase(PhaseConnect, &t.connectStart, err)
}

func (t *phaseTimer) tlsStarted() {
	t.mu.Lock()
	t.tlsStart = time.Now()
	t.mu.Unlock()
}

func (t *phaseTimer) tlsDone(_ tls.ConnectionState, err error) {
	t.endPhase(PhaseTLS, &t.tlsStart, err)
}

// endPhase observes the phase that began at *start, unless it failed or
// never began, and clears *start so a repeated hook is not counted twice.
func (t *phaseTimer) endPhase(phase string, start *time.Time, err error) {
	now := time.Now()
	t.mu.Lock()
	began := *start
	*start = time.Time{}
	t.mu.Unlock()
	if err == nil && !began.IsZero() {
		t.observe(phase, now.Sub(began))
	}
}

func (t *phaseTimer) wroteRequest(info httptrace.WroteRequestInfo) {
	if info.Err != nil {
		return
	}
	t.mu.Lock()
	t.wrote = time.Now()
	t.mu.Unlock()
}

func (t *phaseTimer) gotFirstByte() {
	now := time.Now()
	t.mu.Lock()
	wrote := t.wrote
	if wrote.IsZero() {
		// HTTP/2 calls WroteRequest from the writing goroutine and
		// GotFirstResponseByte from the connection's read loop: a fast
		// answer (a watch's headers) can arrive first. Count from when the
		// request got its connection instead.
		wrote = t.gotConnAt
	}
	t.firstByte = now
	t.mu.Unlock()
	if !wrote.IsZero() {
		t.observe(PhaseServer, now.Sub(wrote))
	}
}

// bodyEnded observes the transfer phase; the body's endNotifier calls it
// once.
func (t *phaseTimer) bodyEnded() {
	now := time.Now()
	t.mu.Lock()
	first := t.firstByte
	t.mu.Unlock()
	if !first.IsZero() {
		t.observe(PhaseTransfer, now.Sub(first))
	}
}

// endNotifier calls end once, when the body it wraps reaches EOF or is
// closed (or fails to read). It keeps the wrapped body's Read and Close
// semantics.
type endNotifier struct {
	io.ReadCloser
	once sync.Once
	end  func()
}

func (b *endNotifier) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(b.end)
	}
	return n, err
}

func (b *endNotifier) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.end)
	return err
}
