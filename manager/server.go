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
	m.log.Info("serving metrics, health and debug endpoints", "addr", ln.Addr().String())
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

// Handler serves /metrics, /healthz, /readyz, /debug/pprof/ and
// /debug/skiff. Start serves it on Addr; it is exported for embedding in a
// server of one's own.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !m.ready.Load() {
			http.Error(w, "caches not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/skiff", m.debugPage)
	mux.HandleFunc("POST /debug/skiff/replay", m.replay)
	return mux
}

// DebugState is what /debug/skiff shows.
type DebugState struct {
	Ready       bool              `json:"ready"`
	Leader      bool              `json:"leader"`
	Controllers []ControllerState `json:"controllers"`
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
	for _, c := range ctrls {
		s.Controllers = append(s.Controllers, ControllerState{
			Name: c.Name(), Stats: c.Stats(), QueueDepth: c.QueueDepth(), ByPriority: c.QueueDepthByPriority(),
			DeadLetters: c.DeadLetterInfos(),
		})
	}
	return s
}

func (m *Manager) debugPage(w http.ResponseWriter, r *http.Request) {
	s := m.State()
	if r.URL.Query().Get("format") == "json" {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if err := debugTmpl.Execute(w, s); err != nil {
		m.log.Error("render /debug/skiff", "err", err)
	}
}

// replay handles POST /debug/skiff/replay?controller=NAME&key=KEY (or
// all=true): it puts dead letters back into the queue with a fresh budget.
func (m *Manager) replay(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+err.Error(), http.StatusBadRequest)
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
<p>ready: <b>{{.Ready}}</b> · leader: <b>{{.Leader}}</b> · <a href="?format=json">JSON</a> · <a href="/metrics">metrics</a> · <a href="/debug/pprof/">pprof</a></p>
{{range .Controllers}}{{$c := .Name}}
<h2>{{.Name}}</h2>
<table><tr><th>workers</th><th>active</th><th>queue depth</th><th>reconciles</th><th>errors</th><th>terminal</th><th>panics</th><th>requeues</th><th>dead letters</th></tr>
<tr><td>{{.Stats.Workers}}</td><td>{{.Stats.Active}}</td><td>{{.QueueDepth}}{{range $p, $n := .ByPriority}}<br><small>priority {{$p}}: {{$n}}</small>{{end}}</td><td>{{.Stats.Reconciles}}</td><td>{{.Stats.Errors}}</td><td>{{.Stats.Terminal}}</td><td>{{.Stats.Panics}}</td><td>{{.Stats.Requeues}}</td><td>{{len .DeadLetters}}</td></tr></table>
{{if .DeadLetters}}<form method="post" action="/debug/skiff/replay"><input type="hidden" name="controller" value="{{$c}}"><input type="hidden" name="all" value="true"><button>replay all</button></form>
<table><tr><th>key</th><th>attempts</th><th>last error</th><th>first failure</th><th>last failure</th><th></th></tr>
{{range .DeadLetters}}<tr><td>{{.Key}}</td><td>{{.Attempts}}</td><td>{{.LastError}}</td><td>{{.FirstFailure.Format "2006-01-02 15:04:05"}}</td><td>{{.LastFailure.Format "2006-01-02 15:04:05"}}</td>
<td><form method="post" action="/debug/skiff/replay"><input type="hidden" name="controller" value="{{$c}}"><input type="hidden" name="key" value="{{.Key}}"><button>replay</button></form></td></tr>
{{end}}</table>{{end}}
{{else}}<p>no controllers</p>{{end}}
</body></html>
`))
