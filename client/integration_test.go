package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/client"
	"github.com/skiffkit/skiff/examples/foo"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{}, func(e *testenv.Env) error {
		env = e
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := testenv.ApplyCRDs(ctx, e.Config(), foo.CRD)
		return err
	}))
}

func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := foo.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func newClient(t *testing.T, cfg *rest.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: scheme(t)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runFactory runs c's informers until the test ends.
func runFactory(t *testing.T, c *client.Client) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Factory().Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// TestCRUDBuiltInAndCustom writes and reads a built-in type (protobuf) and a
// CRD struct (JSON) through the API server, with no informers.
func TestCRUDBuiltInAndCustom(t *testing.T) {
	ctx := ctxFor(t)
	ns := testenv.Namespace(t, env.Config())
	c := newClient(t, env.Config())

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "a", Labels: map[string]string{"app": "x"}}, Data: map[string]string{"k": "1"}}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if cm.ResourceVersion == "" || cm.UID == "" {
		t.Fatalf("Create did not update the object from the server's answer: %+v", cm.ObjectMeta)
	}
	dup := cm.DeepCopy()
	dup.ResourceVersion = ""
	if err := c.Create(ctx, dup); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second Create = %v, want AlreadyExists", err)
	}
	got, err := client.Get[*corev1.ConfigMap](ctx, c, client.KeyOf(cm))
	if err != nil || got.Data["k"] != "1" || got.ResourceVersion != cm.ResourceVersion {
		t.Fatalf("Get = %+v, %v", got, err)
	}

	stale := got.DeepCopy()
	got.Data["k"] = "2"
	if err := c.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	stale.Data["k"] = "stale"
	if err := c.Update(ctx, stale); !apierrors.IsConflict(err) {
		t.Fatalf("Update with a stale resourceVersion = %v, want Conflict", err)
	}

	orig := got.DeepCopy()
	got.Data["m"] = "merged"
	if err := c.Patch(ctx, got, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
	if got.Data["m"] != "merged" || got.Data["k"] != "2" {
		t.Fatalf("after merge patch: %v", got.Data)
	}
	err = c.Patch(ctx, got, client.JSONPatch(client.JSONPatchOp{Op: "test", Path: "/data/k", Value: "nope"}, client.JSONPatchOp{Op: "replace", Path: "/data/k", Value: "3"}))
	if !apierrors.IsInvalid(err) && !apierrors.IsConflict(err) {
		t.Fatalf("JSON patch with a failing test op = %v, want it refused", err)
	}
	if err := c.Patch(ctx, got, client.JSONPatch(client.JSONPatchOp{Op: "test", Path: "/data/k", Value: "2"}, client.JSONPatchOp{Op: "replace", Path: "/data/k", Value: "3"})); err != nil {
		t.Fatal(err)
	}
	if got.Data["k"] != "3" {
		t.Fatalf("after JSON patch: %v", got.Data)
	}

	// Server-side apply with a field manager.
	applied := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "applied"}, Data: map[string]string{"owner": "skiff"}}
	if err := c.Apply(ctx, applied); err == nil || !strings.Contains(err.Error(), "field manager") {
		t.Fatalf("Apply without FieldOwner = %v, want an error naming the field manager", err)
	}
	if err := c.Apply(ctx, applied, client.FieldOwner("skiff-test")); err != nil {
		t.Fatal(err)
	}
	if applied.UID == "" || !hasManager(applied, "skiff-test") {
		t.Fatalf("applied object %+v lacks its UID or the skiff-test field manager", applied.ObjectMeta)
	}
	conflicting := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "applied"}, Data: map[string]string{"owner": "other"}}
	if err := c.Apply(ctx, conflicting, client.FieldOwner("other")); !apierrors.IsConflict(err) {
		t.Fatalf("Apply of a field another manager owns = %v, want Conflict", err)
	}
	if err := c.Apply(ctx, conflicting, client.FieldOwner("other"), client.ForceOwnership); err != nil || conflicting.Data["owner"] != "other" {
		t.Fatalf("forced Apply = %v, data %v", err, conflicting.Data)
	}

	// A custom resource as a Go struct, with its status subresource.
	f := &foo.Foo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "f"}, Spec: foo.FooSpec{Message: "hi"}}
	if err := c.Create(ctx, f); err != nil {
		t.Fatal(err)
	}
	f.Status = foo.FooStatus{Phase: "Ready", ObservedGeneration: f.Generation}
	if err := c.UpdateStatus(ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyStatus(ctx, &foo.Foo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "f"}, Status: foo.FooStatus{Message: "applied"}}, client.FieldOwner("skiff-test")); err != nil {
		t.Fatal(err)
	}
	gotF, err := client.Get[*foo.Foo](ctx, c, client.KeyOf(f))
	if err != nil || gotF.Spec.Message != "hi" || gotF.Status.Phase != "Ready" || gotF.Status.Message != "applied" {
		t.Fatalf("Get Foo = %+v, %v", gotF, err)
	}
	foos, err := client.List[*foo.Foo](ctx, c, client.InNamespace(ns))
	if err != nil || len(foos) != 1 {
		t.Fatalf("List Foos = %d, %v", len(foos), err)
	}
	cms, err := client.List[*corev1.ConfigMap](ctx, c, client.InNamespace(ns), client.MatchingLabels{"app": "x"})
	if err != nil || len(cms) != 1 || cms[0].Name != "a" {
		t.Fatalf("List ConfigMaps app=x = %v, %v", cms, err)
	}

	if err := c.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get[*corev1.ConfigMap](ctx, c, client.KeyOf(got)); !apierrors.IsNotFound(err) {
		t.Fatalf("Get after Delete = %v, want NotFound", err)
	}
	if err := c.Delete(ctx, got); !apierrors.IsNotFound(err) {
		t.Fatalf("second Delete = %v, want NotFound", err)
	}
}

func hasManager(obj metav1.Object, name string) bool {
	for _, m := range obj.GetManagedFields() {
		if m.Manager == name {
			return true
		}
	}
	return false
}

type unregistered struct {
	metav1.TypeMeta
	metav1.ObjectMeta
}

func (u *unregistered) DeepCopyObject() runtime.Object { c := *u; return &c }

func TestBadInputGetsClearErrors(t *testing.T) {
	ctx := ctxFor(t)
	c := newClient(t, env.Config())
	err := c.Create(ctx, &unregistered{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "x"}})
	if err == nil || !strings.Contains(err.Error(), "unregistered") || !strings.Contains(err.Error(), "scheme") {
		t.Fatalf("Create of an unregistered type = %v, want an error naming the type and the scheme", err)
	}
	if _, err := client.Get[*unregistered](ctx, c, client.ObjectKey{Name: "x"}); err == nil {
		t.Fatal("Get of an unregistered type succeeded")
	}
	if _, err := client.New(nil, client.Options{}); err == nil {
		t.Fatal("New(nil) succeeded")
	}
	// A server that does not answer: the error names it and nothing hangs.
	dead := rest.CopyConfig(env.Config())
	dead.Host = "https://127.0.0.1:1"
	dc := newClient(t, dead)
	_, err = client.Get[*corev1.ConfigMap](ctx, dc, client.ObjectKey{Namespace: "default", Name: "x"})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Get from an unreachable server = %v, want an error naming it", err)
	}
	if _, err := client.InformerFor[*corev1.Namespace](newClient(t, env.Config()), cache.Scope{Namespace: "x"}); err == nil || !strings.Contains(err.Error(), "cluster-scoped") {
		t.Fatalf("namespaced informer of a cluster-scoped type = %v, want an error", err)
	}
}

func TestSetControllerReferenceAndCreateOrUpdate(t *testing.T) {
	ctx := ctxFor(t)
	ns := testenv.Namespace(t, env.Config())
	c := newClient(t, env.Config())
	owner := &foo.Foo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "owner"}, Spec: foo.FooSpec{Message: "m"}}
	if err := c.Create(ctx, owner); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "child"}}
	op, err := client.CreateOrUpdate(ctx, c, cm, func(cm *corev1.ConfigMap) error {
		cm.Data = map[string]string{"v": "1"}
		return c.SetControllerReference(owner, cm)
	})
	if err != nil || op != client.OperationCreated {
		t.Fatalf("CreateOrUpdate = %v, %v; want created", op, err)
	}
	ref := metav1.GetControllerOf(cm)
	if ref == nil || ref.Kind != "Foo" || ref.APIVersion != "demo.skiff.dev/v1" || ref.UID != owner.UID || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Fatalf("controller reference = %+v", ref)
	}
	op, err = client.CreateOrUpdate(ctx, c, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "child"}}, func(cm *corev1.ConfigMap) error {
		cm.Data = map[string]string{"v": "1"}
		return nil
	})
	if err != nil || op != client.OperationNone {
		t.Fatalf("CreateOrUpdate without change = %v, %v; want unchanged", op, err)
	}
	again := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "child"}}
	op, err = client.CreateOrUpdate(ctx, c, again, func(cm *corev1.ConfigMap) error {
		cm.Data["v"] = "2"
		return nil
	})
	if err != nil || op != client.OperationUpdated || again.Data["v"] != "2" {
		t.Fatalf("CreateOrUpdate with a change = %v, %v, %v; want updated", op, err, again.Data)
	}
	other := &foo.Foo{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "other", UID: types.UID("u2")}}
	if err := c.SetControllerReference(other, again); err == nil || !strings.Contains(err.Error(), "already has controller") {
		t.Fatalf("second controller = %v, want refused", err)
	}
	elsewhere := &foo.Foo{ObjectMeta: metav1.ObjectMeta{Namespace: "elsewhere", Name: "o", UID: types.UID("u3")}}
	if err := c.SetControllerReference(elsewhere, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "x"}}); err == nil {
		t.Fatal("an owner in another namespace was accepted")
	}
}

// slowWatches delays every read of a watch response body by d and hands out
// at most 256 bytes per read, so the informers fall behind the writes: the
// situation read-your-own-writes is for.
func slowWatches(cfg *rest.Config, d time.Duration) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err == nil && req.URL.Query().Get("watch") == "true" {
				resp.Body = &slowBody{ReadCloser: resp.Body, d: d, ctx: req.Context()}
			}
			return resp, err
		})
	})
	return cfg
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type slowBody struct {
	io.ReadCloser
	d   time.Duration
	ctx context.Context
}

func (b *slowBody) Read(p []byte) (int, error) {
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-b.ctx.Done():
		return 0, b.ctx.Err()
	}
	// A few hundred bytes per read: a reader with a large buffer (the
	// informer's own protobuf watch reader takes every buffered event in
	// one read) would otherwise get many events per delay and not lag.
	if len(p) > 256 {
		p = p[:256]
	}
	return b.ReadCloser.Read(p)
}

// TestReadYourOwnWritesWithSlowWatch: with the watch delayed, every cached
// read right after a write through the client returns the written version
// (never the older one the informer still holds); creates are visible at
// once to Get and List, deletes hide the object at once. The raw informer
// is checked to really lag, so the test cannot pass by accident.
func TestReadYourOwnWritesWithSlowWatch(t *testing.T) {
	ctx := ctxFor(t)
	ns := testenv.Namespace(t, env.Config())
	c := newClient(t, slowWatches(env.Config(), 300*time.Millisecond))
	inf, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	runFactory(t, c)
	if err := inf.WaitForSync(ctx); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "counter"}, Data: map[string]string{"n": "0"}}
	if err := c.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	lagged := 0
	for i := 1; i <= 20; i++ {
		got, err := client.Get[*corev1.ConfigMap](ctx, c, client.KeyOf(cm))
		if err != nil {
			t.Fatalf("write %d: Get: %v", i, err)
		}
		if got.ResourceVersion != cm.ResourceVersion {
			t.Fatalf("write %d: Get returned version %s, we wrote %s", i, got.ResourceVersion, cm.ResourceVersion)
		}
		if raw, ok := inf.Lister().Get(ns, "counter"); !ok || raw.ResourceVersion != cm.ResourceVersion {
			lagged++
		}
		got.Data["n"] = string(rune('0' + i%10))
		if err := c.Update(ctx, got); err != nil {
			t.Fatalf("write %d: Update: %v", i, err) // a stale read would make this a Conflict
		}
		cm = got
	}
	if lagged == 0 {
		t.Fatal("the informer never lagged behind the writes: the test did not exercise read-your-own-writes")
	}
	t.Logf("the raw cache lagged behind our write on %d of 20 reads", lagged)

	// Creates: visible to Get and List at once.
	for i := range 5 {
		child := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "child-", Labels: map[string]string{"role": "child"}}}
		if err := c.Create(ctx, child); err != nil {
			t.Fatal(err)
		}
		kids, err := client.List[*corev1.ConfigMap](ctx, c, client.InNamespace(ns), client.MatchingLabels{"role": "child"})
		if err != nil || len(kids) != i+1 {
			t.Fatalf("List after create %d: %d children, %v", i+1, len(kids), err)
		}
	}
	// Deletes: gone at once.
	if err := c.Delete(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get[*corev1.ConfigMap](ctx, c, client.KeyOf(cm)); !apierrors.IsNotFound(err) {
		t.Fatalf("Get after our delete = %v, want NotFound", err)
	}
	all, err := client.List[*corev1.ConfigMap](ctx, c, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range all {
		if o.Name == "counter" {
			t.Fatal("List after our delete still shows the deleted object")
		}
	}
	if !c.IsOwnWrite(cm) {
		t.Fatal("IsOwnWrite does not recognise the last version this client wrote")
	}
}

func TestCachedReadsWaitForSyncAndHonourContext(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	c := newClient(t, env.Config())
	if _, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{Namespace: ns}); err != nil {
		t.Fatal(err)
	}
	// The factory is not running: a cached read waits for a sync that
	// cannot come, until its context ends, and says why.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := client.Get[*corev1.ConfigMap](ctx, c, client.ObjectKey{Namespace: ns, Name: "x"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get before sync = %v, want the context's deadline", err)
	}
	runFactory(t, c)
	if _, err := client.Get[*corev1.ConfigMap](ctxFor(t), c, client.ObjectKey{Namespace: ns, Name: "x"}); !apierrors.IsNotFound(err) {
		t.Fatalf("Get after sync = %v, want NotFound", err)
	}
	if _, err := client.InformerFor[*corev1.ConfigMap](c, cache.Scope{}); err == nil {
		t.Fatal("a second informer of the same type with another scope was accepted")
	}
}
