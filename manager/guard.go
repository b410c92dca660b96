package manager

import (
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
)

// httpGuards is what New decides about serving: who may call and how the
// replay action is protected.
type httpGuards struct {
	// auth checks bearer tokens; nil without Options.Auth.
	auth *authenticator
	// replayToken is a random secret, new for each Manager, that a replay
	// request must carry; "" when replay is off.
	replayToken string
}

// newHTTPGuards validates the serving options in o (Addr already defaulted).
func newHTTPGuards(o Options) (httpGuards, error) {
	var g httpGuards
	if o.Addr != "-" {
		loopback, err := isLoopbackAddr(o.Addr)
		if err != nil {
			return g, err
		}
		if !loopback && o.Auth == nil && !o.InsecureServing {
			return g, fmt.Errorf("manager: Addr %q is not a loopback address: set Options.Auth to check callers with the API server, or Options.InsecureServing to serve metrics and debug pages to anyone who reaches the port", o.Addr)
		}
	}
	if o.Auth != nil {
		a, err := newAuthenticator(*o.Auth, o.Config)
		if err != nil {
			return g, err
		}
		g.auth = a
	}
	if o.EnableReplay {
		g.replayToken = rand.Text()
	}
	return g, nil
}

// isLoopbackAddr reports whether a listen address is sure to bind loopback
// only: "localhost" or a loopback IP. An empty host binds every interface; a
// host name may resolve anywhere.
func isLoopbackAddr(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("manager: Addr %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

// protect is the gate for /metrics and /debug/...: with Auth, the token
// check; without it, for /debug/... only, the DNS-rebinding check.
func (g httpGuards) protect(next http.Handler, debug bool) http.Handler {
	if g.auth != nil {
		return g.auth.wrap(next)
	}
	if !debug {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !ipOrLocalhost(r.Host) {
			http.Error(w, fmt.Sprintf("Forbidden: Host %q: without Options.Auth the debug endpoints answer only requests to an IP address or localhost", r.Host), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ipOrLocalhost reports whether a Host header names an IP address or
// localhost. A page on an attacker's domain that rebinds its name to
// 127.0.0.1 is same-origin with itself, so Origin checks pass and it can
// read responses (a replay token, say); but its requests still carry the
// attacker's host name, which this refuses.
func ipOrLocalhost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if net.ParseIP(host) != nil {
		return true
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// replayTokenField and replayTokenHeader carry the replay token: the form
// field from the /debug/skiff page, the header from scripts.
const (
	replayTokenField  = "csrf_token"
	replayTokenHeader = "X-Skiff-Csrf-Token"
)

var errCrossSite = errors.New("cross-site request")

// checkReplay is the CSRF defence of the replay action, in two independent
// layers; either one alone stops a cross-site form post:
//
//  1. Fetch metadata: a browser request whose Sec-Fetch-Site is not
//     same-origin or none, or whose Origin's host differs from Host, is
//     refused (net/http.CrossOriginProtection). Every browser since 2023
//     sends Sec-Fetch-Site; all send Origin on a POST.
//  2. A secret: the request must carry the manager's replay token, in the
//     POST body's csrf_token field (the /debug/skiff form embeds it) or in
//     the X-Skiff-Csrf-Token header (scripts read it from
//     /debug/skiff?format=json as replayToken). Another site cannot read
//     the page (same-origin policy), so it cannot learn the token; the token
//     in the URL's query is ignored, as URLs leak into logs and referrers.
//
// DNS rebinding, which makes a hostile page same-origin, is stopped by the
// Host check in protect (without Auth) or by the bearer token (with Auth,
// which a browser never attaches on its own).
func (g httpGuards) checkReplay(r *http.Request) error {
	if err := http.NewCrossOriginProtection().Check(r); err != nil {
		return fmt.Errorf("%w: %v", errCrossSite, err)
	}
	got := r.Header.Get(replayTokenHeader)
	if got == "" {
		got = r.PostFormValue(replayTokenField)
	}
	if got == "" {
		return fmt.Errorf("no replay token: send the %s form field or the %s header (see replayToken in /debug/skiff?format=json)", replayTokenField, replayTokenHeader)
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(g.replayToken)) != 1 {
		return errors.New("wrong replay token (it changes when the process restarts)")
	}
	return nil
}
