package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"time"

	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/internal/doctor"
)

// maxBody bounds what doctor reads of one response (a large cluster's
// /metrics is a few MB).
const maxBody = 64 << 20

// doctorCmd runs `skiff doctor`: it measures the connection to a cluster and
// writes the report to stdout. It fails, with a one-line reason, when the
// server cannot be reached (no report), or when the identity is not
// authenticated or may not list and watch namespaces (after the report, which
// says what could not be read and why).
func doctorCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("skiff doctor", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	kubecontext := fs.String("context", "", "kubeconfig context (default: the current one)")
	timeout := fs.Duration("timeout", time.Minute, "give up on the whole examination after this long")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usageError{fmt.Errorf("--timeout=%v: must be positive", *timeout)}
	}
	cfg, err := client.LoadConfig(*kubeconfig, *kubecontext)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := examine(ctx, cfg)
	if rep != nil {
		if werr := rep.Write(stdout); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// prober makes timed requests over one fresh connection pool.
type prober struct {
	hc   *http.Client
	base *url.URL
	rep  *doctor.Report
}

// examine measures everything the report holds. A nil report means nothing
// could be measured; a non-nil error with a report means the report is
// partial and doctor must fail.
func examine(ctx context.Context, loaded *rest.Config) (*doctor.Report, error) {
	cfg := rest.CopyConfig(loaded)
	if cfg.Proxy == nil {
		// A Proxy func makes client-go build an uncached transport, so the
		// first request really opens (and times) a new connection.
		cfg.Proxy = http.ProxyFromEnvironment
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("build an HTTP client for %s: %w", cfg.Host, err)
	}
	defer hc.CloseIdleConnections()
	base, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("API server address %q: %w", cfg.Host, err)
	}
	rep := &doctor.Report{Server: base.String(), Client: clientSettings(loaded), Flow: doctor.Flow{Shares: -1}}
	p := &prober{hc: hc, base: base, rep: rep}

	resp, body, err := p.do(ctx, "GET /version", http.MethodGet, "/version", nil, nil)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the API server at %s: %w", base, unwrapURLError(err))
	}
	rep.Client.Proto = resp.Proto
	if resp.StatusCode == http.StatusUnauthorized {
		return rep, fmt.Errorf("the API server at %s rejected the credentials: %s", base, statusMessage(resp, body))
	}
	var version struct{ GitVersion, Platform string }
	if p.ok(resp, body, "server version (GET /version)") && json.Unmarshal(body, &version) == nil {
		rep.Version, rep.Platform = version.GitVersion, version.Platform
	}
	p.do(ctx, "GET /version", http.MethodGet, "/version", nil, nil) // again, on the open connection
	p.whoAmI(ctx)
	fatal := p.listAndWatch(ctx)
	p.flow(ctx)
	p.metrics(ctx)
	if fatal == nil && ctx.Err() != nil {
		fatal = fmt.Errorf("examine %s: %w", base, ctx.Err())
	}
	return rep, fatal
}

func clientSettings(cfg *rest.Config) doctor.ClientSettings {
	s := doctor.ClientSettings{QPS: cfg.QPS, Burst: cfg.Burst, Timeout: cfg.Timeout, ContentType: cfg.ContentType, UserAgent: cfg.UserAgent}
	if cfg.QPS == 0 && cfg.RateLimiter == nil {
		s.QPS, s.QPSFromDefault = rest.DefaultQPS, true
		if cfg.Burst == 0 {
			s.Burst = rest.DefaultBurst
		}
	}
	return s
}

// timing collects one request's httptrace callbacks; some run on the
// transport's dialing goroutines.
type timing struct {
	mu                                     sync.Mutex
	start                                  time.Time
	dnsStart, connStart, tlsStart, gotConn time.Time
	dns, connect, tls, firstByte           time.Duration
	reused                                 bool
}

func (t *timing) trace() *httptrace.ClientTrace {
	since := func(from time.Time) time.Duration {
		if from.IsZero() {
			return 0
		}
		return time.Since(from)
	}
	lock := func(f func()) { t.mu.Lock(); f(); t.mu.Unlock() }
	return &httptrace.ClientTrace{
		DNSStart:             func(httptrace.DNSStartInfo) { lock(func() { t.dnsStart = time.Now() }) },
		DNSDone:              func(httptrace.DNSDoneInfo) { lock(func() { t.dns = since(t.dnsStart) }) },
		ConnectStart:         func(_, _ string) { lock(func() { t.connStart = time.Now() }) },
		ConnectDone:          func(_, _ string, _ error) { lock(func() { t.connect = since(t.connStart) }) },
		TLSHandshakeStart:    func() { lock(func() { t.tlsStart = time.Now() }) },
		TLSHandshakeDone:     func(tls.ConnectionState, error) { lock(func() { t.tls = since(t.tlsStart) }) },
		GotConn:              func(i httptrace.GotConnInfo) { lock(func() { t.reused, t.gotConn = i.Reused, time.Now() }) },
		GotFirstResponseByte: func() { lock(func() { t.firstByte = since(t.gotConn) }) },
	}
}

// start sends a request and returns once the response headers are in; the
// caller reads and closes the body. The probe is recorded with the time to
// the headers; finish completes it.
func (p *prober) start(ctx context.Context, name, method, path string, query url.Values, hdr http.Header, body []byte) (*http.Response, func(), error) {
	u := p.base.JoinPath(path)
	u.RawQuery = query.Encode()
	t := &timing{}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, t.trace()), method, u.String(), rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	t.start = time.Now()
	resp, err := p.hc.Do(req)
	idx := len(p.rep.Probes)
	t.mu.Lock()
	probe := doctor.Probe{Name: name, Reused: t.reused, DNS: t.dns, Connect: t.connect, TLS: t.tls, FirstByte: t.firstByte, Total: time.Since(t.start)}
	t.mu.Unlock()
	if resp != nil {
		probe.Status, probe.Proto = resp.StatusCode, resp.Proto
		p.notePF(resp.Header)
	}
	p.rep.Probes = append(p.rep.Probes, probe)
	finish := func() { p.rep.Probes[idx].Total = time.Since(t.start) }
	return resp, finish, err
}

// do makes a request and reads its whole body; the probe's total includes
// the transfer.
func (p *prober) do(ctx context.Context, name, method, path string, query url.Values, hdr http.Header) (*http.Response, []byte, error) {
	resp, finish, err := p.start(ctx, name, method, path, query, hdr, nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	finish()
	return resp, body, err
}

func (p *prober) notePF(h http.Header) {
	if uid := h.Get("X-Kubernetes-PF-FlowSchema-UID"); uid != "" && p.rep.Flow.FlowSchemaUID == "" {
		p.rep.Flow.FlowSchemaUID = uid
	}
	if uid := h.Get("X-Kubernetes-PF-PriorityLevel-UID"); uid != "" && p.rep.Flow.PriorityLevelUID == "" {
		p.rep.Flow.PriorityLevelUID = uid
	}
}

// ok reports whether resp is a 200, and otherwise records what could not be
// read and why.
func (p *prober) ok(resp *http.Response, body []byte, what string) bool {
	if resp.StatusCode == http.StatusOK {
		return true
	}
	p.unreadable(what, statusMessage(resp, body))
	return false
}

func (p *prober) unreadable(what, why string) {
	p.rep.Unreadable = append(p.rep.Unreadable, doctor.Unreadable{What: what, Why: why})
}

// statusMessage is the reason of a failed response: "forbidden: <the
// server's message>".
func statusMessage(resp *http.Response, body []byte) string {
	reason := strings.ToLower(http.StatusText(resp.StatusCode))
	if reason == "" {
		reason = fmt.Sprintf("HTTP %d", resp.StatusCode)
	}
	var st struct{ Message string }
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		if strings.HasPrefix(strings.ToLower(st.Message), reason) {
			return st.Message
		}
		return reason + ": " + st.Message
	}
	if msg := strings.TrimSpace(string(body)); msg != "" && len(msg) < 300 {
		return reason + ": " + msg
	}
	return fmt.Sprintf("%s (HTTP %d)", reason, resp.StatusCode)
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func (p *prober) failed(what string, err error) {
	p.unreadable(what, unwrapURLError(err).Error())
}

func (p *prober) whoAmI(ctx context.Context) {
	const what = "identity (POST selfsubjectreviews)"
	body := []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`)
	resp, finish, err := p.start(ctx, "POST selfsubjectreviews", http.MethodPost, "/apis/authentication.k8s.io/v1/selfsubjectreviews", nil, nil, body)
	if err != nil {
		p.failed(what, err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	finish()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		p.unreadable(what, statusMessage(resp, b))
		return
	}
	var review struct {
		Status struct {
			UserInfo struct {
				Username string
				Groups   []string
			}
		}
	}
	if err := json.Unmarshal(b, &review); err != nil {
		p.unreadable(what, "bad answer: "+err.Error())
		return
	}
	p.rep.Identity = doctor.Identity{User: review.Status.UserInfo.Username, Groups: review.Status.UserInfo.Groups}
}

// listAndWatch times small lists, a watch's opening, and finds out whether
// protobuf, streaming watch-list and bookmarks are served. Being forbidden
// to list or watch namespaces is fatal: doctor cannot measure the basics a
// controller depends on.
func (p *prober) listAndWatch(ctx context.Context) error {
	const what = "list namespaces (GET /api/v1/namespaces?limit=1)"
	one := url.Values{"limit": {"1"}}
	var rv string
	for range 3 {
		resp, body, err := p.do(ctx, "GET namespaces?limit=1", http.MethodGet, "/api/v1/namespaces", one, nil)
		if err != nil {
			p.failed(what, err)
			return fmt.Errorf("list namespaces on %s: %w", p.base, unwrapURLError(err))
		}
		if !p.ok(resp, body, what) {
			p.rep.Features = doctor.Features{
				WatchList: doctor.Support{Detail: "not tried: cannot list namespaces"},
				Protobuf:  doctor.Support{Detail: "not tried: cannot list namespaces"},
				Bookmarks: doctor.Support{Detail: "not tried: cannot list namespaces"},
			}
			return p.identityError("list namespaces", resp, body)
		}
		p.rep.Lists = append(p.rep.Lists, p.rep.Probes[len(p.rep.Probes)-1].Total)
		var list struct {
			Metadata struct{ ResourceVersion string }
		}
		if json.Unmarshal(body, &list) == nil {
			rv = list.Metadata.ResourceVersion
		}
	}

	const protobuf = "application/vnd.kubernetes.protobuf"
	resp, body, err := p.do(ctx, "GET namespaces?limit=1 (protobuf)", http.MethodGet, "/api/v1/namespaces", one, http.Header{"Accept": {protobuf + ", application/json"}})
	switch {
	case err != nil:
		p.rep.Features.Protobuf = doctor.Support{Detail: unwrapURLError(err).Error()}
	case resp.StatusCode != http.StatusOK:
		p.rep.Features.Protobuf = doctor.Support{Detail: statusMessage(resp, body)}
	default:
		ct := resp.Header.Get("Content-Type")
		p.rep.Features.Protobuf = doctor.Support{Known: true, Served: strings.HasPrefix(ct, protobuf), Detail: "a list asking for protobuf got " + ct}
	}

	watch := url.Values{"watch": {"1"}, "resourceVersion": {rv}, "allowWatchBookmarks": {"true"}, "timeoutSeconds": {"5"}}
	resp, finish, err := p.start(ctx, "WATCH namespaces (open)", http.MethodGet, "/api/v1/namespaces", watch, nil, nil)
	if err != nil {
		p.failed("watch namespaces", err)
		return fmt.Errorf("watch namespaces on %s: %w", p.base, unwrapURLError(err))
	}
	finish()
	p.rep.WatchOpen = p.rep.Probes[len(p.rep.Probes)-1].Total
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		resp.Body.Close()
		p.unreadable("watch namespaces", statusMessage(resp, b))
		return p.identityError("watch namespaces", resp, b)
	}
	resp.Body.Close()
	p.watchList(ctx)
	return nil
}

// identityError is doctor's fatal error for a request the identity may not
// make.
func (p *prober) identityError(doing string, resp *http.Response, body []byte) error {
	who := p.rep.Identity.User
	if who == "" {
		who = "the identity"
	} else {
		who = fmt.Sprintf("identity %q", who)
	}
	switch resp.StatusCode {
	case http.StatusForbidden:
		return fmt.Errorf("%s is forbidden to %s on %s: %s", who, doing, p.base, statusMessage(resp, body))
	case http.StatusUnauthorized:
		return fmt.Errorf("the API server at %s rejected the credentials: %s", p.base, statusMessage(resp, body))
	}
	return fmt.Errorf("%s on %s: %s", doing, p.base, statusMessage(resp, body))
}

// watchListWait bounds the wait for the end of a watch-list's initial
// events (a handful of namespaces).
const watchListWait = 10 * time.Second

// watchList asks for a streaming list (a watch with sendInitialEvents) and
// waits for the bookmark that marks the end of the initial events.
func (p *prober) watchList(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, watchListWait)
	defer cancel()
	q := url.Values{"watch": {"1"}, "sendInitialEvents": {"true"}, "resourceVersionMatch": {"NotOlderThan"},
		"allowWatchBookmarks": {"true"}, "timeoutSeconds": {"10"}}
	f := &p.rep.Features
	resp, finish, err := p.start(ctx, "WATCH namespaces (watch-list)", http.MethodGet, "/api/v1/namespaces", q, nil, nil)
	if err != nil {
		f.WatchList = doctor.Support{Detail: unwrapURLError(err).Error()}
		f.Bookmarks = doctor.Support{Detail: "no watch-list to see one in"}
		return
	}
	defer resp.Body.Close()
	defer finish()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		f.WatchList = doctor.Support{Known: resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnprocessableEntity, Detail: statusMessage(resp, b)}
		f.Bookmarks = doctor.Support{Detail: "no watch-list to see one in; the periodic bookmark is not waited for"}
		return
	}
	dec := json.NewDecoder(resp.Body)
	events, bookmarks := 0, 0
	for {
		var ev struct {
			Type   string
			Object struct {
				Metadata struct{ Annotations map[string]string }
			}
		}
		if err := dec.Decode(&ev); err != nil {
			why := "the stream ended without the initial-events-end bookmark"
			if ctx.Err() != nil {
				why = fmt.Sprintf("no initial-events-end bookmark within %v", watchListWait)
			}
			f.WatchList = doctor.Support{Known: true, Detail: fmt.Sprintf("%s after %d events", why, events)}
			f.Bookmarks = doctor.Support{Known: bookmarks > 0, Served: bookmarks > 0, Detail: fmt.Sprintf("%d bookmarks seen", bookmarks)}
			return
		}
		if ev.Type != "BOOKMARK" {
			events++
			continue
		}
		bookmarks++
		if ev.Object.Metadata.Annotations["k8s.io/initial-events-end"] == "true" {
			finish()
			total := p.rep.Probes[len(p.rep.Probes)-1].Total
			f.WatchList = doctor.Support{Known: true, Served: true, Detail: fmt.Sprintf("%d initial events, then the initial-events-end bookmark, in %s", events, total.Round(100*time.Microsecond))}
			f.Bookmarks = doctor.Support{Known: true, Served: true, Detail: "the watch-list's end bookmark"}
			return
		}
	}
}

// flow resolves the API Priority and Fairness UIDs seen in response headers
// to names, if the flowcontrol API is readable.
func (p *prober) flow(ctx context.Context) {
	fl := &p.rep.Flow
	if fl.FlowSchemaUID == "" && fl.PriorityLevelUID == "" {
		p.unreadable("flow schema and priority level", "no response carried X-Kubernetes-PF-* headers (API Priority and Fairness off?)")
		return
	}
	const group = "/apis/flowcontrol.apiserver.k8s.io/v1/"
	var schemas flowcontrolv1.FlowSchemaList
	if p.getJSON(ctx, "GET flowschemas", group+"flowschemas", "flow schema names (GET flowschemas)", &schemas) {
		for _, fs := range schemas.Items {
			if string(fs.UID) == fl.FlowSchemaUID {
				fl.FlowSchema = fs.Name
			}
		}
	}
	var levels flowcontrolv1.PriorityLevelConfigurationList
	if p.getJSON(ctx, "GET prioritylevelconfigurations", group+"prioritylevelconfigurations", "priority level names (GET prioritylevelconfigurations)", &levels) {
		for _, pl := range levels.Items {
			if string(pl.UID) != fl.PriorityLevelUID {
				continue
			}
			fl.PriorityLevel = pl.Name
			fl.Exempt = pl.Spec.Type == flowcontrolv1.PriorityLevelEnablementExempt
			if l := pl.Spec.Limited; l != nil && l.NominalConcurrencyShares != nil {
				fl.Shares = int(*l.NominalConcurrencyShares)
			}
		}
	}
}

func (p *prober) getJSON(ctx context.Context, name, path, what string, into any) bool {
	resp, body, err := p.do(ctx, name, http.MethodGet, path, nil, nil)
	if err != nil {
		p.failed(what, err)
		return false
	}
	if !p.ok(resp, body, what) {
		return false
	}
	if err := json.Unmarshal(body, into); err != nil {
		p.unreadable(what, "bad answer: "+err.Error())
		return false
	}
	return true
}

// metrics reads the server side from /metrics, if the identity may.
func (p *prober) metrics(ctx context.Context) {
	const what = "server metrics (GET /metrics)"
	resp, body, err := p.do(ctx, "GET /metrics", http.MethodGet, "/metrics", nil, http.Header{"Accept": {"text/plain"}})
	if err != nil {
		p.failed(what, err)
		return
	}
	if !p.ok(resp, body, what) {
		return
	}
	m, err := doctor.ParseMetrics(bytes.NewReader(body))
	if err != nil {
		p.unreadable(what, err.Error())
		return
	}
	s := doctor.Summarize(m)
	p.rep.Metrics = &s
}
