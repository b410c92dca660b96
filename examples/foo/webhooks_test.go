package foo_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/queue"
	"github.com/skiffkit/skiff/testenv"
	"github.com/skiffkit/skiff/webhook"
	"github.com/skiffkit/skiff/webhook/audit"
	"github.com/skiffkit/skiff/webhook/managed"
)

// TestWebhooks runs the operator as a user would deploy it in local
// development: one manager with the Foo controller, the Foo webhooks
// (certificate in a Secret, configurations applied from code) and an audit
// receiver on the webhook server feeding a queue. The API server calls
// all of them.
func TestWebhooks(t *testing.T) {
	ctx := context.Background()
	ns := testenv.Namespace(t, env.Config())
	cs, foos := clients(t)
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := foo.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	mgr, err := manager.New(manager.Options{Config: env.Config(), Scheme: scheme, Addr: "127.0.0.1:0", Logger: quiet, KeepKlog: true, SyncTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := foo.Setup(mgr, controller.Options[controller.Request]{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	name := "foo-" + ns // the configurations are cluster-scoped: one name per test namespace
	srv, err := foo.SetupWebhooks(mgr, managed.Options{Name: name, Namespace: ns, Server: webhook.ServerOptions{Addr: webhookAddr}})
	if err != nil {
		t.Fatal(err)
	}
	receiver, err := audit.New(audit.Options{Mapper: mgr.Client()})
	if err != nil {
		t.Fatal(err)
	}
	keys := queue.New(queue.Options[controller.Request]{})
	defer keys.ShutDown()
	if err := audit.Watch[*foo.Foo](receiver, keys, audit.Filter{Namespaces: []string{ns}}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Handle("/audit", receiver); err != nil {
		t.Fatal(err)
	}

	// Before Start the webhook check fails /healthz, naming itself.
	rec := httptest.NewRecorder()
	mgr.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "webhook-"+name+": waiting for the serving certificate") {
		t.Fatalf("/healthz before Start: %d %q, want 500 naming the webhook check", rec.Code, rec.Body.String())
	}

	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	// Runs first: no configuration outlives its server to refuse other
	// tests' Foos.
	t.Cleanup(func() {
		adm := cs.AdmissionregistrationV1()
		if err := adm.ValidatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete the validating configuration: %v", err)
		}
		if err := adm.MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete the mutating configuration: %v", err)
		}
	})

	withSize := func(n string, size int64) *unstructured.Unstructured {
		u := newFoo(n, "hi", false)
		if err := unstructured.SetNestedField(u.Object, size, "spec", "size"); err != nil {
			t.Fatal(err)
		}
		return u
	}
	// Until the configurations are applied and carry the CA bundle, Foos
	// are admitted without the webhooks (or refused for want of a trusted
	// certificate); wait, with dry runs, for the validating webhook's
	// refusal.
	eventually(t, "the validating webhook in effect", func() (bool, error) {
		_, err := foos.Namespace(ns).Create(ctx, withSize("probe", 1000), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "spec.size 1000 is above the maximum 100"), nil
	})

	// A bad Foo is refused through the API server, with the reason.
	_, err = foos.Namespace(ns).Create(ctx, withSize("bad", -3), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "spec.size -3 is negative; a Foo's size is 0 to 100") {
		t.Fatalf("creating a Foo of size -3: %v, want Forbidden with the webhook's reason", err)
	}
	// A Foo without a size gets the default; one with a size keeps it.
	if _, err := foos.Namespace(ns).Create(ctx, newFoo("a", "hello", false), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := foos.Namespace(ns).Create(ctx, withSize("b", 7), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for n, want := range map[string]int64{"a": foo.DefaultSize, "b": 7} {
		u, err := foos.Namespace(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, ok, _ := unstructured.NestedInt64(u.Object, "spec", "size"); !ok || got != want {
			t.Errorf("foo %s read back: spec.size %d (set: %v), want %d", n, got, ok, want)
		}
	}
	// The operator reconciles the defaulted Foo as before.
	eventually(t, "foo a converged", func() (bool, error) {
		f, err := foos.Namespace(ns).Get(ctx, "a", metav1.GetOptions{})
		return err == nil && converged(f), err
	})
	// An update that removes the size is defaulted again; one that sets a
	// bad size is refused.
	eventually(t, "foo b updated without a size", func() (bool, error) {
		u, err := foos.Namespace(ns).Get(ctx, "b", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		unstructured.RemoveNestedField(u.Object, "spec", "size")
		u, err = foos.Namespace(ns).Update(ctx, u, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		got, _, _ := unstructured.NestedInt64(u.Object, "spec", "size")
		if got != foo.DefaultSize {
			t.Fatalf("foo b after an update without a size: spec.size %d, want %d", got, foo.DefaultSize)
		}
		return true, nil
	})
	eventually(t, "an update of foo a to size 101 refused", func() (bool, error) {
		u, err := foos.Namespace(ns).Get(ctx, "a", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if err := unstructured.SetNestedField(u.Object, int64(101), "spec", "size"); err != nil {
			return false, err
		}
		_, err = foos.Namespace(ns).Update(ctx, u, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "spec.size 101 is above the maximum 100") {
			t.Fatalf("update of foo a to size 101: %v, want Forbidden with the webhook's reason", err)
		}
		return true, nil
	})

	// The audit receiver on the same server turned the writes of Foos in
	// ns into keys (creates, the operator's status updates, the update).
	// A dry-run probe admitted before the webhooks were in effect is a
	// successful write to the API server's audit log too.
	seen := map[string]bool{}
	eventually(t, "audit keys for foos a and b", func() (bool, error) {
		for {
			k, ok := keys.TryGet()
			if !ok {
				break
			}
			keys.Done(k)
			if k.Namespace != ns || k.Name != "a" && k.Name != "b" && k.Name != "probe" {
				t.Fatalf("audit key %v: no Foo of that name was written in %s", k, ns)
			}
			seen[k.Name] = true
		}
		return seen["a"] && seen["b"], nil
	})

	// The manager's /healthz passes with the webhook check, and /metrics
	// counts the API server's calls of both webhooks.
	base := "http://" + mgr.Addr()
	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	_, metrics := get(t, base+"/metrics")
	validate, mutate := "/validate-demo-skiff-dev-v1-foo", "/mutate-demo-skiff-dev-v1-foo"
	for _, path := range []string{validate, mutate, "/audit"} {
		if n := requests(metrics, path, "200"); n < 1 {
			t.Errorf("/metrics: controller_runtime_webhook_requests_total{webhook=%q,code=\"200\"} = %v, want ≥ 1", path, n)
		}
	}
	// The validating webhook answered the probes, the bad create and the
	// refused update; the mutating one every create and update of a Foo.
	if n := requests(metrics, validate, "200"); n < 4 {
		t.Errorf("validating webhook served %v requests, want ≥ 4", n)
	}
	if n := requests(metrics, mutate, "200"); n < 5 {
		t.Errorf("mutating webhook served %v requests, want ≥ 5", n)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

var requestsLine = regexp.MustCompile(`(?m)^controller_runtime_webhook_requests_total\{([^}]*)\} (\S+)$`)

// requests is the value of controller_runtime_webhook_requests_total for
// path and code in a /metrics text exposition; 0 if absent.
func requests(exposition, path, code string) float64 {
	for _, m := range requestsLine.FindAllStringSubmatch(exposition, -1) {
		if strings.Contains(m[1], `webhook="`+path+`"`) && strings.Contains(m[1], `code="`+code+`"`) {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v
		}
	}
	return 0
}
