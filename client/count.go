package client

import (
	"net/http"
	"sort"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// RequestCounter counts the requests that pass through the configs it is
// installed on, by verb and resource. Safe for concurrent use.
type RequestCounter struct {
	mu     sync.Mutex
	counts map[RequestKind]int64
}

// RequestKind is a verb (get, list, watch, create, update, patch, delete,
// deletecollection) and a resource ("configmaps", "foos.demo.skiff.dev",
// "foos.demo.skiff.dev/status").
type RequestKind struct {
	Verb, Resource string
}

// Install wraps cfg's transport so that every request through it is counted.
// It returns cfg for chaining.
func (c *RequestCounter) Install(cfg *rest.Config) *rest.Config {
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return roundTripper{c: c, next: rt} })
	return cfg
}

type roundTripper struct {
	c    *RequestCounter
	next http.RoundTripper
}

func (r roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	r.c.add(Classify(req.Method, req.URL.Path, req.URL.Query().Get("watch") == "true"))
	return r.next.RoundTrip(req)
}

func (c *RequestCounter) add(k RequestKind) {
	c.mu.Lock()
	if c.counts == nil {
		c.counts = map[RequestKind]int64{}
	}
	c.counts[k]++
	c.mu.Unlock()
}

// Counts returns a copy of the counts.
func (c *RequestCounter) Counts() map[RequestKind]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[RequestKind]int64, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Total is the number of requests counted.
func (c *RequestCounter) Total() int64 {
	var n int64
	for _, v := range c.Counts() {
		n += v
	}
	return n
}

// Sorted returns the counts ordered by resource, then verb.
func (c *RequestCounter) Sorted() []RequestCount {
	var out []RequestCount
	for k, v := range c.Counts() {
		out = append(out, RequestCount{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Resource != out[j].Resource {
			return out[i].Resource < out[j].Resource
		}
		return out[i].Verb < out[j].Verb
	})
	return out
}

// RequestCount is one line of Sorted.
type RequestCount struct {
	RequestKind
	N int64
}

// Classify maps an API request to its verb and resource, following the
// apiserver's URL layout:
//
//	/api/v1/[namespaces/{ns}/]{resource}[/{name}[/{subresource}]]
//	/apis/{group}/{version}/[namespaces/{ns}/]{resource}[/{name}[/{subresource}]]
//
// Anything else (discovery, /version, /healthz) is resource "discovery" or
// the path itself.
func Classify(method, path string, watch bool) RequestKind {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	var group string
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		group, parts = parts[1], parts[3:]
	case len(parts) >= 1 && (parts[0] == "api" || parts[0] == "apis"):
		return RequestKind{Verb: strings.ToLower(method), Resource: "discovery"}
	default:
		return RequestKind{Verb: strings.ToLower(method), Resource: "/" + strings.Join(parts, "/")}
	}
	if len(parts) >= 2 && parts[0] == "namespaces" && len(parts) != 2 {
		parts = parts[2:] // namespaced resource (a bare /namespaces/{name} is the namespace itself)
	}
	if len(parts) == 0 {
		return RequestKind{Verb: strings.ToLower(method), Resource: "discovery"}
	}
	resource := parts[0]
	if group != "" {
		resource += "." + group
	}
	named := len(parts) >= 2
	if len(parts) >= 3 {
		resource += "/" + parts[2]
	}
	verb := strings.ToLower(method)
	switch method {
	case http.MethodGet:
		switch {
		case watch:
			verb = "watch"
		case named:
			verb = "get"
		default:
			verb = "list"
		}
	case http.MethodPost:
		verb = "create"
	case http.MethodPut:
		verb = "update"
	case http.MethodPatch:
		verb = "patch"
	case http.MethodDelete:
		if named {
			verb = "delete"
		} else {
			verb = "deletecollection"
		}
	}
	return RequestKind{Verb: verb, Resource: resource}
}
