package manager_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/manager"
)

// stubController has a dead letter for every key it is asked to replay and
// records what was replayed; it stands in for a controller in handler tests.
type stubController struct {
	mu       sync.Mutex
	replayed []string
}

func (s *stubController) Name() string                      { return "stub" }
func (s *stubController) Run(ctx context.Context) error     { <-ctx.Done(); return nil }
func (s *stubController) Stats() controller.Stats           { return controller.Stats{DeadLetters: 1} }
func (s *stubController) QueueDepth() int                   { return 0 }
func (s *stubController) QueueDepthByPriority() map[int]int { return nil }
func (s *stubController) DeadLetterInfos() []controller.DeadLetterInfo {
	return []controller.DeadLetterInfo{{Key: "ns/a", Attempts: 3, LastError: "boom"}}
}
func (s *stubController) ReplayKey(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replayed = append(s.replayed, key)
	return true
}
func (s *stubController) ReplayAll() int { s.ReplayKey("*"); return 1 }
func (s *stubController) count() int     { s.mu.Lock(); defer s.mu.Unlock(); return len(s.replayed) }

const localHost = "127.0.0.1:8080"

// serve sends one request to h with Host set to host (httptest's default,
// example.com, is what the DNS-rebinding check refuses).
func serve(h http.Handler, method, target, host string, body url.Values, header http.Header) *httptest.ResponseRecorder {
	var req *http.Request
	if body != nil {
		req = httptest.NewRequest(method, target, strings.NewReader(body.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	req.Host = host
	for k, vs := range header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func newManager(t *testing.T, o manager.Options) *manager.Manager {
	t.Helper()
	o.Logger, o.KeepKlog = quiet, true
	m, err := manager.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNewServingRules(t *testing.T) {
	cfg := env.Config()
	cases := []struct {
		name string
		o    manager.Options
		want []string // substrings of the error; none: New succeeds
	}{
		{"default address is loopback", manager.Options{}, nil},
		{"loopback", manager.Options{Addr: "127.0.0.1:0"}, nil},
		{"no server", manager.Options{Addr: "-"}, nil},
		{"all interfaces without auth", manager.Options{Addr: ":8080"}, []string{`":8080"`, "Options.Auth", "Options.InsecureServing"}},
		{"pod IP without auth", manager.Options{Addr: "10.1.2.3:8080"}, []string{"not a loopback address"}},
		{"all interfaces, insecure on purpose", manager.Options{Addr: "0.0.0.0:8080", InsecureServing: true}, nil},
		{"all interfaces with auth", manager.Options{Addr: ":8080", Auth: &manager.Auth{}, Config: cfg}, nil},
		{"auth without any config", manager.Options{Addr: ":8080", Auth: &manager.Auth{}}, []string{"Auth.Config or Options.Config"}},
		{"auth with its own config", manager.Options{Auth: &manager.Auth{Config: cfg}}, nil},
		{"negative cache size", manager.Options{Auth: &manager.Auth{Config: cfg, CacheSize: -1}}, []string{"CacheSize -1"}},
		{"address without port", manager.Options{Addr: "8080"}, []string{`"8080"`}},
	}
	for _, tc := range cases {
		tc.o.Logger, tc.o.KeepKlog = quiet, true
		_, err := manager.New(tc.o)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("%s: New = %v, want success", tc.name, err)
		case tc.want != nil && err == nil:
			t.Errorf("%s: New succeeded, want an error with %q", tc.name, tc.want)
		case tc.want != nil:
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: New = %v, want it to contain %q", tc.name, err, w)
				}
			}
		}
	}
}

func TestNewLeavesCallersLeaderElectionAlone(t *testing.T) {
	le := &manager.LeaderElection{Namespace: "ns", Name: "lease"}
	before := *le
	newManager(t, manager.Options{Config: env.Config(), Addr: "-", LeaderElection: le})
	if *le != before {
		t.Fatalf("New changed the caller's LeaderElection: %+v, was %+v", *le, before)
	}
}

func TestPprofIsOptIn(t *testing.T) {
	off := newManager(t, manager.Options{Addr: "-"}).Handler()
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		if rec := serve(off, "GET", p, localHost, nil, nil); rec.Code != http.StatusNotFound {
			t.Errorf("without EnablePprof GET %s = %d, want 404", p, rec.Code)
		}
	}
	if rec := serve(off, "GET", "/debug/skiff", localHost, nil, nil); rec.Code != 200 || strings.Contains(rec.Body.String(), "pprof") {
		t.Errorf("without EnablePprof /debug/skiff = %d, links pprof: %v", rec.Code, strings.Contains(rec.Body.String(), "pprof"))
	}
	on := newManager(t, manager.Options{Addr: "-", EnablePprof: true}).Handler()
	if rec := serve(on, "GET", "/debug/pprof/", localHost, nil, nil); rec.Code != 200 || !strings.Contains(rec.Body.String(), "goroutine") {
		t.Errorf("with EnablePprof GET /debug/pprof/ = %d", rec.Code)
	}
	if rec := serve(on, "GET", "/debug/pprof/", "evil.example", nil, nil); rec.Code != http.StatusForbidden {
		t.Errorf("with EnablePprof GET /debug/pprof/ for Host evil.example = %d, want 403", rec.Code)
	}
}

func TestDebugPagesRefuseForeignHostsWithoutAuth(t *testing.T) {
	h := newManager(t, manager.Options{Addr: "-"}).Handler()
	for _, host := range []string{"evil.example", "evil.example:8080", "127.0.0.1.nip.io:8080"} {
		if rec := serve(h, "GET", "/debug/skiff?format=json", host, nil, nil); rec.Code != http.StatusForbidden {
			t.Errorf("GET /debug/skiff with Host %s = %d, want 403", host, rec.Code)
		}
	}
	for _, host := range []string{localHost, "localhost:8080", "[::1]:8080", "10.1.2.3:8080"} {
		if rec := serve(h, "GET", "/debug/skiff?format=json", host, nil, nil); rec.Code != 200 {
			t.Errorf("GET /debug/skiff with Host %s = %d, want 200", host, rec.Code)
		}
	}
	// Probes and metrics are not pages a browser renders; any Host is fine.
	for _, p := range []string{"/healthz", "/metrics"} {
		if rec := serve(h, "GET", p, "metrics.example", nil, nil); rec.Code != 200 {
			t.Errorf("GET %s with Host metrics.example = %d, want 200", p, rec.Code)
		}
	}
}

func TestReplayIsOptIn(t *testing.T) {
	m := newManager(t, manager.Options{Addr: "-"})
	stub := &stubController{}
	m.AddController(stub)
	h := m.Handler()
	rec := serve(h, "POST", "/debug/skiff/replay?format=json", localHost, url.Values{"controller": {"stub"}, "all": {"true"}}, nil)
	if rec.Code != http.StatusNotFound || stub.count() != 0 {
		t.Fatalf("replay without EnableReplay = %d (%d replayed), want 404", rec.Code, stub.count())
	}
	page := serve(h, "GET", "/debug/skiff", localHost, nil, nil).Body.String()
	if !strings.Contains(page, "ns/a") || strings.Contains(page, "<form") {
		t.Fatalf("without EnableReplay the page should list the dead letter and offer no form:\n%s", page)
	}
	js := serve(h, "GET", "/debug/skiff?format=json", localHost, nil, nil).Body.String()
	if strings.Contains(js, "replayToken") {
		t.Fatalf("without EnableReplay the JSON carries a replay token: %s", js)
	}
}

var csrfField = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

func TestReplayRefusesCrossSiteRequests(t *testing.T) {
	m := newManager(t, manager.Options{Addr: "-", EnableReplay: true})
	stub := &stubController{}
	m.AddController(stub)
	h := m.Handler()

	var st struct {
		ReplayToken string `json:"replayToken"`
	}
	if err := json.Unmarshal(serve(h, "GET", "/debug/skiff?format=json", localHost, nil, nil).Body.Bytes(), &st); err != nil || len(st.ReplayToken) < 16 {
		t.Fatalf("replayToken in /debug/skiff?format=json = %q, %v", st.ReplayToken, err)
	}
	token := st.ReplayToken
	page := serve(h, "GET", "/debug/skiff", localHost, nil, nil).Body.String()
	forms := csrfField.FindAllStringSubmatch(page, -1)
	if len(forms) != 2 { // "replay all" and one per dead letter
		t.Fatalf("page has %d forms with a csrf_token, want 2:\n%s", len(forms), page)
	}
	for _, f := range forms {
		if f[1] != token {
			t.Fatalf("form embeds token %q, JSON says %q", f[1], token)
		}
	}
	if other := newManager(t, manager.Options{Addr: "-", EnableReplay: true}); strings.Contains(
		serve(other.Handler(), "GET", "/debug/skiff?format=json", localHost, nil, nil).Body.String(), token) {
		t.Fatal("two managers share a replay token")
	}

	form := func(extra ...string) url.Values {
		v := url.Values{"controller": {"stub"}, "key": {"ns/a"}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	cases := []struct {
		name   string
		target string
		host   string
		body   url.Values
		header http.Header
		want   int
	}{
		// Accepted.
		{"form token, non-browser client", "/debug/skiff/replay?format=json", localHost, form("csrf_token", token), nil, 200},
		{"header token, script", "/debug/skiff/replay?format=json", localHost, form(), hdr("X-Skiff-Csrf-Token", token), 200},
		{"the page's own form post", "/debug/skiff/replay", localHost, form("csrf_token", token),
			hdr("Sec-Fetch-Site", "same-origin", "Origin", "http://"+localHost), http.StatusSeeOther},
		{"typed by the user (Sec-Fetch-Site none)", "/debug/skiff/replay?format=json", localHost, form("csrf_token", token), hdr("Sec-Fetch-Site", "none"), 200},
		{"same origin by Origin only (older browser)", "/debug/skiff/replay?format=json", "localhost:8080", form("csrf_token", token), hdr("Origin", "http://localhost:8080"), 200},
		// Refused.
		{"no token", "/debug/skiff/replay?format=json", localHost, form(), nil, 403},
		{"wrong token", "/debug/skiff/replay?format=json", localHost, form("csrf_token", token+"x"), nil, 403},
		{"token in the query only", "/debug/skiff/replay?format=json&csrf_token=" + url.QueryEscape(token), localHost, form(), nil, 403},
		{"cross-site form post, even with the token", "/debug/skiff/replay", localHost, form("csrf_token", token),
			hdr("Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"), 403},
		{"same-site but other origin", "/debug/skiff/replay", localHost, form("csrf_token", token),
			hdr("Sec-Fetch-Site", "same-site", "Origin", "http://127.0.0.1:9999"), 403},
		{"foreign Origin without fetch metadata", "/debug/skiff/replay", localHost, form("csrf_token", token), hdr("Origin", "https://evil.example"), 403},
		{"DNS rebinding: same-origin to the attacker's name", "/debug/skiff/replay", "evil.example:8080", form("csrf_token", token),
			hdr("Sec-Fetch-Site", "same-origin", "Origin", "http://evil.example:8080"), 403},
	}
	accepted := 0
	for _, tc := range cases {
		before := stub.count()
		rec := serve(h, "POST", tc.target, tc.host, tc.body, tc.header)
		if rec.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
		}
		replayed := stub.count() - before
		if tc.want == 403 && replayed != 0 {
			t.Errorf("%s: refused but replayed %d", tc.name, replayed)
		}
		if tc.want != 403 {
			accepted++
			if replayed != 1 {
				t.Errorf("%s: accepted but replayed %d", tc.name, replayed)
			}
		}
	}
	if stub.count() != accepted {
		t.Fatalf("%d replays for %d accepted requests", stub.count(), accepted)
	}
}
