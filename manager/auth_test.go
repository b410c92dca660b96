package manager_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

// serviceAccountToken creates a ServiceAccount in ns and returns a token
// for it from the TokenRequest API.
func serviceAccountToken(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ServiceAccount %s/%s: %v", ns, name, err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(3600))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, name, err)
	}
	if tr.Status.Token == "" {
		t.Fatalf("TokenRequest for %s/%s returned no token", ns, name)
	}
	return tr.Status.Token
}

// grantMetrics binds a ClusterRole allowing "get" on the non-resource URL
// /metrics to ns/sa, and waits until the authorizer sees it.
func grantMetrics(t *testing.T, cs kubernetes.Interface, ns, sa string) {
	t.Helper()
	ctx := context.Background()
	name := ns + "-metrics-reader"
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ClusterRole %s: %v", name, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: sa}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ClusterRoleBinding %s: %v", name, err)
	}
	t.Cleanup(func() {
		cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), name, metav1.DeleteOptions{})
		cs.RbacV1().ClusterRoles().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	user := "system:serviceaccount:" + ns + ":" + sa
	waitFor(t, "RBAC to allow "+user+" get /metrics", 10*time.Second, func() bool {
		r, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: "/metrics", Verb: "get"},
			},
		}, metav1.CreateOptions{})
		return err == nil && r.Status.Allowed
	})
}

// reviewCounter counts the TokenReviews a rest.Config's client sends.
type reviewCounter struct{ n atomic.Int64 }

type countingTransport struct {
	rt http.RoundTripper
	c  *reviewCounter
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/tokenreviews") {
		t.c.n.Add(1)
	}
	return t.rt.RoundTrip(r)
}

func (c *reviewCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt, c} }
	return cfg
}

func startServing(t *testing.T, o manager.Options) string {
	t.Helper()
	m := newManager(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start = %v", err)
		}
	})
	waitFor(t, "server address", 5*time.Second, func() bool { return m.Addr() != "" })
	return "http://" + m.Addr()
}

func getWithToken(t *testing.T, u, token string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestAuthWithServiceAccountTokens(t *testing.T) {
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.Namespace(t, env.Config())
	allowed := serviceAccountToken(t, cs, ns, "allowed")
	denied := serviceAccountToken(t, cs, ns, "denied")
	grantMetrics(t, cs, ns, "allowed")

	var reviews reviewCounter
	base := startServing(t, manager.Options{
		Addr: "127.0.0.1:0", EnablePprof: true,
		Auth: &manager.Auth{Config: reviews.wrap(env.Config()), CacheTTL: 10 * time.Minute},
	})

	resp, body := getWithToken(t, base+"/metrics", allowed)
	if resp.StatusCode != 200 || !strings.Contains(body, "go_goroutines") {
		t.Fatalf("allowed identity: GET /metrics = %d %.200s", resp.StatusCode, body)
	}
	if resp, body := getWithToken(t, base+"/metrics", denied); resp.StatusCode != http.StatusForbidden ||
		!strings.Contains(body, "system:serviceaccount:"+ns+":denied") {
		t.Errorf("denied identity: GET /metrics = %d %s, want 403 naming the user", resp.StatusCode, body)
	}
	if resp, body := getWithToken(t, base+"/metrics", ""); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("no token: GET /metrics = %d %s (WWW-Authenticate %q), want 401 with a challenge", resp.StatusCode, body, resp.Header.Get("WWW-Authenticate"))
	}
	if resp, body := getWithToken(t, base+"/metrics", "garbage.not-a.jwt"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("garbage token: GET /metrics = %d %s, want 401", resp.StatusCode, body)
	}
	// Authorization is per path: the grant covers /metrics only.
	for _, p := range []string{"/debug/skiff", "/debug/pprof/"} {
		if resp, body := getWithToken(t, base+p, allowed); resp.StatusCode != http.StatusForbidden {
			t.Errorf("allowed identity: GET %s = %d %s, want 403 (granted /metrics only)", p, resp.StatusCode, body)
		}
		if resp, _ := getWithToken(t, base+p, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("no token: GET %s = %d, want 401", p, resp.StatusCode)
		}
	}
	// Probes carry no token and stay open.
	if resp, _ := getWithToken(t, base+"/healthz", ""); resp.StatusCode != 200 {
		t.Errorf("GET /healthz without a token = %d, want 200", resp.StatusCode)
	}
	// Verdicts are cached: the same requests again review nothing.
	n := reviews.n.Load()
	getWithToken(t, base+"/metrics", allowed)
	getWithToken(t, base+"/metrics", denied)
	getWithToken(t, base+"/metrics", "garbage.not-a.jwt")
	if again := reviews.n.Load(); again != n {
		t.Errorf("%d TokenReviews for requests whose verdicts were cached, want 0", again-n)
	}
}

func TestAuthFailsClosedWhenTheAPIServerCannotReview(t *testing.T) {
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.Namespace(t, env.Config())
	reader := serviceAccountToken(t, cs, ns, "reader")
	grantMetrics(t, cs, ns, "reader")
	// The manager reviews with an identity that may not create TokenReviews:
	// every review fails with 403 from the API server.
	weak := rest.AnonymousClientConfig(env.Config())
	weak.BearerToken = serviceAccountToken(t, cs, ns, "no-review-rights")
	var reviews reviewCounter
	base := startServing(t, manager.Options{Addr: "127.0.0.1:0", Auth: &manager.Auth{Config: reviews.wrap(weak)}})

	for range 2 {
		resp, body := getWithToken(t, base+"/metrics", reader)
		if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "TokenReview") || strings.Contains(body, "go_goroutines") {
			t.Fatalf("GET /metrics while reviews fail = %d %.300s, want 500 naming the TokenReview", resp.StatusCode, body)
		}
	}
	if n := reviews.n.Load(); n != 2 {
		t.Fatalf("%d TokenReviews for two requests, want 2: a failed review must not be cached", n)
	}
}
