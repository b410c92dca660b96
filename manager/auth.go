package manager

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationclient "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationclient "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
)

// Auth makes the manager's HTTP server ask the API server who is calling and
// whether they may, as kube-apiserver itself does for its own /metrics.
//
// Every request to /metrics and /debug/... must carry "Authorization: Bearer
// <token>". The manager sends the token in a TokenReview
// (authentication.k8s.io/v1); if the API server authenticates it, the
// manager asks a SubjectAccessReview (authorization.k8s.io/v1) whether that
// user (with its groups, uid and extra) may use the request's path as a
// non-resource URL with the request's verb: "get" for GET and HEAD, else the
// lower-cased method ("post" for the replay action). So a Prometheus that
// scrapes /metrics needs a ClusterRole with
//
//	rules:
//	- nonResourceURLs: ["/metrics"]
//	  verbs: ["get"]
//
// and someone reading the debug pages and profiles a rule with
// nonResourceURLs ["/debug/*"] (verbs ["get"], plus ["post"] to replay).
//
// The answer is 401 when the token is missing or the API server does not
// authenticate it, 403 when the review denies access (also when the
// authorizer reports an evaluation error beside its denial), and 500 with the
// cause when a review cannot be made (API server unreachable, the manager's
// own identity may not create reviews, ...): a failed check never lets a
// request through. /healthz and /readyz stay open: the kubelet probes them
// without a token, and they say only "ok" or why not.
//
// Verdicts (allowed, 401, 403 — never errors) are cached per (token, verb,
// path) for CacheTTL, at most CacheSize of them, so a scrape every few
// seconds costs two API calls per CacheTTL, not per scrape. A revoked token
// or a removed binding therefore takes effect within CacheTTL. Tokens are
// kept only as SHA-256 hashes. Each review is bounded by 10 seconds and by
// the request's context.
type Auth struct {
	// Config reaches the API server that makes the reviews; its identity
	// needs "create" on tokenreviews and subjectaccessreviews (the built-in
	// ClusterRole system:auth-delegator has both). Default: Options.Config;
	// one of the two is required.
	Config *rest.Config
	// CacheTTL is how long a verdict is reused. Default 10 seconds. Negative:
	// nothing is cached, every request costs two API calls.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached verdicts; when full, expired
	// ones go first, then the oldest. Default 1024.
	CacheSize int
}

// reviewTimeout bounds each TokenReview and SubjectAccessReview.
const reviewTimeout = 10 * time.Second

// authenticator checks requests as Auth describes. Safe for concurrent use.
type authenticator struct {
	authn authenticationclient.TokenReviewInterface
	authz authorizationclient.SubjectAccessReviewInterface
	now   func() time.Time

	mu    sync.Mutex
	cache *decisionCache
}

// newAuthenticator applies a's defaults; fallback is Options.Config. It
// starts nothing.
func newAuthenticator(a Auth, fallback *rest.Config) (*authenticator, error) {
	cfg := a.Config
	if cfg == nil {
		cfg = fallback
	}
	if cfg == nil {
		return nil, errors.New("manager: Options.Auth needs Auth.Config or Options.Config to reach the API server")
	}
	if a.CacheTTL == 0 {
		a.CacheTTL = 10 * time.Second
	}
	if a.CacheSize < 0 {
		return nil, fmt.Errorf("manager: negative Auth.CacheSize %d", a.CacheSize)
	}
	if a.CacheSize == 0 {
		a.CacheSize = 1024
	}
	authn, err := authenticationclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("manager: client for TokenReviews: %w", err)
	}
	authz, err := authorizationclient.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("manager: client for SubjectAccessReviews: %w", err)
	}
	return &authenticator{
		authn: authn.TokenReviews(),
		authz: authz.SubjectAccessReviews(),
		now:   time.Now,
		cache: newDecisionCache(a.CacheTTL, a.CacheSize),
	}, nil
}

// wrap lets a request reach next only if its token is allowed r.URL.Path.
func (a *authenticator) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearerToken(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="skiff"`)
			http.Error(w, "Unauthorized: this endpoint needs an Authorization: Bearer token", http.StatusUnauthorized)
			return
		}
		d, err := a.check(r.Context(), token, verbOf(r.Method), r.URL.Path)
		if err != nil {
			http.Error(w, "Internal Server Error: could not check access: "+err.Error(), http.StatusInternalServerError)
			return
		}
		switch d.v {
		case allow:
			next.ServeHTTP(w, r)
		case unauthenticated:
			w.Header().Set("WWW-Authenticate", `Bearer realm="skiff", error="invalid_token"`)
			http.Error(w, "Unauthorized: "+d.reason, http.StatusUnauthorized)
		default:
			http.Error(w, "Forbidden: "+d.reason, http.StatusForbidden)
		}
	})
}

// check returns the verdict for token on (verb, path), from the cache or
// from the API server. An error means no verdict could be reached.
func (a *authenticator) check(ctx context.Context, token, verb, path string) (decision, error) {
	k := decisionKey{token: sha256.Sum256([]byte(token)), verb: verb, path: path}
	a.mu.Lock()
	d, ok := a.cache.get(k, a.now())
	a.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := a.review(ctx, token, verb, path)
	if err != nil {
		return decision{}, err
	}
	a.mu.Lock()
	a.cache.put(k, d.v, d.reason, a.now())
	a.mu.Unlock()
	return d, nil
}

func (a *authenticator) review(ctx context.Context, token, verb, path string) (decision, error) {
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	tr, err := a.authn.Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token},
	}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("create TokenReview: %w", err)
	}
	if !tr.Status.Authenticated {
		reason := "the API server did not authenticate the bearer token"
		if tr.Status.Error != "" {
			reason += ": " + tr.Status.Error
		}
		return decision{v: unauthenticated, reason: reason}, nil
	}
	u := tr.Status.User
	extra := make(map[string]authorizationv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := a.authz.Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: verb},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("create SubjectAccessReview for %q %s %s: %w", u.Username, verb, path, err)
	}
	if sar.Status.Allowed && !sar.Status.Denied {
		return decision{v: allow}, nil
	}
	reason := fmt.Sprintf("user %q may not %s %s", u.Username, verb, path)
	if sar.Status.Reason != "" {
		reason += ": " + sar.Status.Reason
	}
	if sar.Status.EvaluationError != "" {
		reason += " (evaluation error: " + sar.Status.EvaluationError + ")"
	}
	return decision{v: forbidden, reason: reason}, nil
}

// bearerToken extracts the token from an Authorization header value. The
// scheme is case-insensitive (RFC 9110 §11.1); an empty token is no token.
func bearerToken(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// verbOf maps an HTTP method to a non-resource verb as kube-apiserver does:
// HEAD reads like GET; other methods are lower-cased.
func verbOf(method string) string {
	if method == http.MethodHead {
		return "get"
	}
	return strings.ToLower(method)
}
