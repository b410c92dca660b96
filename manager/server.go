package manager

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/skiffkit/skiff/controller"
)

// startServer binds Addr and serves until the returned stop is called.
func (m *Manager) startServer() (stop func() error, err error) {
	if m.o.Addr == "-" {
		return func() error { return nil }, nil
	}
	ln, err := net.Listen("tcp", m.o.Addr)
	if err != nil {
		return nil, fmt.Errorf("manager: serve metrics and health on %s: %w", m.o.Addr, err)
	}
	m.mu.Lock()
	m.listener = ln
	m.mu.Unlock()
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	m.log.Info("serving metrics, health and debug endpoints", "addr", ln.Addr().String(),
		"auth", m.http.auth != nil, "pprof", m.o.EnablePprof, "replay", m.o.EnableReplay)
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		serr := srv.Shutdown(ctx)
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return serr
	}, nil
}

// Handler serves the manager's endpoints. Start serves it on Addr; it is
// exported for embedding in a server of one's own, and applies the same
// options there.
//
//   - /healthz and /readyz are always open (probes carry no token).
//   - /metrics and /debug/skiff (HTML, or JSON with ?format=json) need a
//     token allowed by the API server when Options.Auth is set (see Auth).
//   - /debug/pprof/ only with Options.EnablePprof; else 404.
//   - POST /debug/skiff/replay only with Options.EnableReplay; else 404.
//     It puts dead letters back into their queue (controller=NAME and
//     key=KEY or all=true), and refuses cross-site requests (403): see the
//     scheme below.
//
// Without Auth, /debug/... answers only requests whose Host is an IP
// address or localhost, which defeats DNS rebinding.
//
// The replay action's CSRF defence has two layers, either of which stops a
// cross-site form post: (1) a browser request whose Sec-Fetch-Site is not
// same-origin or none, or whose Origin's host is not the Host, is refused;
// (2) the request must carry a random token made by New, as the csrf_token
// field of the POST body (the /debug/skiff form embeds it) or the
// X-Skiff-Csrf-Token header (scripts find it as replayToken in
// /debug/skiff?format=json), which another site cannot read.
func (m *Manager) Handler() http.Handler {
	g := m.http
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := m.checkHealth(r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := m.checkHealth(r); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if !m.ready.Load() {
			http.Error(w, "caches not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", g.protect(promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}), false))
	mux.Handle("GET /debug/skiff", g.protect(http.HandlerFunc(m.debugPage), true))
	if m.o.EnablePprof {
		mux.Handle("/debug/pprof/", g.protect(http.HandlerFunc(pprof.Index), true))
		mux.Handle("/debug/pprof/cmdline", g.protect(http.HandlerFunc(pprof.Cmdline), true))
		mux.Handle("/debug/pprof/profile", g.protect(http.HandlerFunc(pprof.Profile), true))
		mux.Handle("/debug/pprof/symbol", g.protect(http.HandlerFunc(pprof.Symbol), true))
		mux.Handle("/debug/pprof/trace", g.protect(http.HandlerFunc(pprof.Trace), true))
	}
	if m.o.EnableReplay {
		mux.Handle("POST /debug/skiff/replay", g.protect(http.HandlerFunc(m.replay), true))
	}
	return mux
}

// DebugState is what /debug/skiff shows.
type DebugState struct {
	Ready       bool              `json:"ready"`
	Leader      bool              `json:"leader"`
	Controllers []ControllerState `json:"controllers"`
	// Shard is the shard membership; nil without Options.Shard.
	Shard *ShardState `json:"shard,omitempty"`
}

// ControllerState is one controller on /debug/skiff.
type ControllerState struct {
	Name        string                      `json:"name"`
	Stats       controller.Stats            `json:"stats"`
	QueueDepth  int                         `json:"queueDepth"`
	ByPriority  map[int]int                 `json:"queueDepthByPriority"`
	DeadLetters []controller.DeadLetterInfo `json:"deadLetters"`
}

// State returns a snapshot of what /debug/skiff shows.
func (m *Manager) State() DebugState {
	m.mu.Lock()
	ctrls := append([]Controller(nil), m.controllers...)
	m.mu.Unlock()
	s := DebugState{Ready: m.ready.Load(), Leader: m.leading.Load()}
	if m.shard != nil {
		st := m.shard.State()
		s.Shard = &st
	}
	for _, c := range ctrls {
		s.Controllers = append(s.Controllers, ControllerState{
			Name: c.Name(), Stats: c.Stats(), QueueDepth: c.QueueDepth(), ByPriority: c.QueueDepthByPriority(),
			DeadLetters: c.DeadLetterInfos(),
		})
	}
	return s
}

// debugView is what the /debug/skiff page renders: the state plus what the
// options let it offer.
type debugView struct {
	DebugState
	// ReplayToken is the replay action's CSRF token; "" when replay is off.
	ReplayToken string `json:"replayToken,omitempty"`
	Pprof       bool   `json:"-"`
}

func (m *Manager) debugPage(w http.ResponseWriter, r *http.Request) {
	v := debugView{DebugState: m.State(), ReplayToken: m.http.replayToken, Pprof: m.o.EnablePprof}
	// The page holds a secret (the replay token): no caching, no framing.
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := debugTmpl.Execute(w, v); err != nil {
		m.log.Error("render /debug/skiff", "err", err)
	}
}

// replay handles POST /debug/skiff/replay?controller=NAME&key=KEY (or
// all=true): it puts dead letters back into the queue with a fresh budget.
// Requests that fail checkReplay are refused with 403.
func (m *Manager) replay(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := m.http.checkReplay(r); err != nil {
		m.log.Warn("refused a dead-letter replay", "err", err, "origin", r.Header.Get("Origin"), "remote", r.RemoteAddr)
		http.Error(w, "Forbidden: "+err.Error(), http.StatusForbidden)
		return
	}
	name := r.Form.Get("controller")
	m.mu.Lock()
	var c Controller
	for _, have := range m.controllers {
		if have.Name() == name {
			c = have
		}
	}
	m.mu.Unlock()
	if c == nil {
		http.Error(w, fmt.Sprintf("no controller named %q", name), http.StatusNotFound)
		return
	}
	var replayed int
	switch key := r.Form.Get("key"); {
	case r.Form.Get("all") == "true":
		replayed = c.ReplayAll()
	case key == "":
		http.Error(w, "give key=<key> or all=true", http.StatusBadRequest)
		return
	case c.ReplayKey(key):
		replayed = 1
	default:
		http.Error(w, fmt.Sprintf("controller %s has no dead letter %q", name, key), http.StatusNotFound)
		return
	}
	m.log.Info("replayed dead letters", "controller", name, "count", replayed)
	if r.Form.Get("format") == "json" || r.Header.Get("Accept") == "application/json" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]int{"replayed": replayed})
		return
	}
	http.Redirect(w, r, "/debug/skiff", http.StatusSeeOther)
}

var debugTmpl = template.Must(template.New("debug").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>skiff</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f4f4f4}</style></head>
<body><h1>skiff</h1>
<p>ready: <b>{{.Ready}}</b> · leader: <b>{{.Leader}}</b> · <a href="?format=json">JSON</a> · <a href="/metrics">metrics</a>{{if .Pprof}} · <a href="/debug/pprof/">pprof</a>{{end}}</p>
{{with .Shard}}<h2>shard group {{.Group}}</h2>
<p>member <b>{{.Identity}}</b> · ring {{.Version}} · {{if .Active}}active{{else}}<b>hand-off in progress</b>{{end}} · owns {{printf "%.3f" .OwnedFraction}} of the hash space in {{len .Ranges}} ranges · {{if .ServerSide}}server-side shard selectors{{else}}client-side filtering{{end}} · hand-offs {{.Handoffs}}</p>
<table><tr><th>member</th><th>weight</th><th>selector</th></tr>{{range .Members}}<tr><td>{{.ID}}</td><td>{{if .Weight}}{{.Weight}}{{else}}equal{{end}}</td><td>{{.Selector}}</td></tr>{{end}}</table>{{end}}
{{range .Controllers}}{{$c := .Name}}
<h2>{{.Name}}</h2>
<table><tr><th>workers</th><th>active</th><th>queue depth</th><th>reconciles</th><th>errors</th><th>terminal</th><th>panics</th><th>requeues</th><th>dead letters</th></tr>
<tr><td>{{.Stats.Workers}}</td><td>{{.Stats.Active}}</td><td>{{.QueueDepth}}{{range $p, $n := .ByPriority}}<br><small>priority {{$p}}: {{$n}}</small>{{end}}</td><td>{{.Stats.Reconciles}}</td><td>{{.Stats.Errors}}</td><td>{{.Stats.Terminal}}</td><td>{{.Stats.Panics}}</td><td>{{.Stats.Requeues}}</td><td>{{len .DeadLetters}}</td></tr></table>
{{if .DeadLetters}}{{if $.ReplayToken}}<form method="post" action="/debug/skiff/replay"><input type="hidden" name="csrf_token" value="{{$.ReplayToken}}"><input type="hidden" name="controller" value="{{$c}}"><input type="hidden" name="all" value="true"><button>replay all</button></form>{{end}}
<table><tr><th>key</th><th>attempts</th><th>last error</th><th>first failure</th><th>last failure</th><th>held by</th><th></th></tr>
{{range .DeadLetters}}<tr><td>{{.Key}}</td><td>{{.Attempts}}</td><td>{{.LastError}}</td><td>{{.FirstFailure.Format "2006-01-02 15:04:05"}}</td><td>{{.LastFailure.Format "2006-01-02 15:04:05"}}</td><td>{{if .Here}}this replica{{else}}{{.Replica}}{{end}}{{if .Persisted}} (persisted){{end}}</td>
<td>{{if $.ReplayToken}}<form method="post" action="/debug/skiff/replay"><input type="hidden" name="csrf_token" value="{{$.ReplayToken}}"><input type="hidden" name="controller" value="{{$c}}"><input type="hidden" name="key" value="{{.Key}}"><button>replay</button></form>{{end}}</td></tr>
{{end}}</table>{{end}}
{{else}}<p>no controllers</p>{{end}}
</body></html>
`))
