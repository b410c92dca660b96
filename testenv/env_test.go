package testenv_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/skiffkit/skiff/testenv"
)

func clientset(t *testing.T, env *testenv.Env) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config())
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestConfigMapCreateGetListWatch(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	cs := clientset(t, shared)
	ns := testenv.Namespace(t, shared.Config())

	w, err := cs.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "one"}, Data: map[string]string{"k": "v"}}
	created, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	got, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "one", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Data["k"] != "v" || got.UID != created.UID {
		t.Fatalf("get returned %+v, want the created object", got)
	}
	list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "one" {
		t.Fatalf("list = %d items, want exactly configmap one", len(list.Items))
	}
	select {
	case ev := <-w.ResultChan():
		obj, ok := ev.Object.(*corev1.ConfigMap)
		if ev.Type != watch.Added || !ok || obj.Name != "one" {
			t.Fatalf("watch event %s %T, want ADDED configmap one", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("no watch event for the created configmap")
	}
}

func TestNamespaceDeletionCompletes(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	cs := clientset(t, shared)
	ns, err := testenv.CreateNamespace(ctx, cs, "deleteme")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Needs kube-controller-manager's namespace controller: without it the
	// namespace would stay Terminating forever.
	if err := testenv.DeleteNamespaceAndWait(ctx, cs, ns); err != nil {
		t.Fatal(err)
	}
}

func TestGarbageCollectorDeletesDependents(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	cs := clientset(t, shared)
	ns := testenv.Namespace(t, shared.Config())
	owner, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dependent", OwnerReferences: []metav1.OwnerReference{{
		APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID,
	}}}}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, "owner", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "dependent", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("dependent not garbage-collected: last get err=%v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestTwoInstancesAtOnce(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	envs := make([]*testenv.Env, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range envs {
		wg.Go(func() { envs[i], errs[i] = testenv.Start(ctx, testenv.Options{Controllers: "none"}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		t.Cleanup(func() { envs[i].Stop() })
	}
	if envs[0].Server() == envs[1].Server() {
		t.Fatalf("both instances serve %s", envs[0].Server())
	}
	// The same name in both: each instance must hold only its own object.
	for i, env := range envs {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "who", Namespace: "default"}, Data: map[string]string{"i": string(rune('0' + i))}}
		if _, err := clientset(t, env).CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatalf("instance %d create: %v", i, err)
		}
	}
	for i, env := range envs {
		got, err := clientset(t, env).CoreV1().ConfigMaps("default").Get(ctx, "who", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("instance %d get: %v", i, err)
		}
		if want := string(rune('0' + i)); got.Data["i"] != want {
			t.Fatalf("instance %d holds i=%q, want %q", i, got.Data["i"], want)
		}
	}
}

func TestRestartWithDataDirKeepsData(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	dir := filepath.Join(t.TempDir(), "data")
	env, err := testenv.Start(ctx, testenv.Options{DataDir: dir, Fsync: true, Controllers: "none"})
	if err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "survivor"}, Data: map[string]string{"k": "kept"}}
	created, err := clientset(t, env).CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := env.Stop(); err != nil {
		t.Fatalf("second stop must be a no-op returning the first result: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd")); err != nil {
		t.Fatalf("data dir lost after stop: %v", err)
	}

	env2, err := testenv.Start(ctx, testenv.Options{DataDir: dir, Fsync: true, Controllers: "none"})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer env2.Stop()
	got, err := clientset(t, env2).CoreV1().ConfigMaps("default").Get(ctx, "survivor", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	if got.UID != created.UID || got.Data["k"] != "kept" {
		t.Fatalf("after restart got uid=%s data=%v, want uid=%s data k=kept", got.UID, got.Data, created.UID)
	}
}

func TestCompactionMakesOldWatchGone(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	// configmaps bypass the apiserver's watch cache here, so a watch from an
	// old resourceVersion reaches etcd and sees the compaction.
	env, err := testenv.Start(ctx, testenv.Options{
		Controllers:   "none",
		APIServerArgs: []string{"--watch-cache-sizes=configmaps#0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Stop()
	cms := clientset(t, env).CoreV1().ConfigMaps("default")
	first, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldRV := first.ResourceVersion
	for i := range 5 {
		first.Data = map[string]string{"n": string(rune('a' + i))}
		if first, err = cms.Update(ctx, first, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Before compaction the old resourceVersion is still watchable.
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: oldRV})
	if err != nil {
		t.Fatalf("watch before compaction: %v", err)
	}
	select {
	case ev := <-w.ResultChan():
		if ev.Type != watch.Modified {
			t.Fatalf("before compaction: first event %s, want MODIFIED", ev.Type)
		}
	case <-ctx.Done():
		t.Fatal("before compaction: no event")
	}
	w.Stop()

	rev, err := env.CompactEtcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev <= 0 {
		t.Fatalf("compacted at revision %d", rev)
	}
	w, err = cms.Watch(ctx, metav1.ListOptions{ResourceVersion: oldRV})
	if err != nil {
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Fatalf("watch after compaction: %v, want 410", err)
		}
		return
	}
	defer w.Stop()
	select {
	case ev := <-w.ResultChan():
		st, ok := ev.Object.(*metav1.Status)
		if ev.Type != watch.Error || !ok || st.Code != 410 {
			t.Fatalf("after compaction: event %s %+v, want ERROR with code 410", ev.Type, ev.Object)
		}
	case <-ctx.Done():
		t.Fatal("after compaction: no 410 event")
	}
}

func TestStartErrorsAreClear(t *testing.T) {
	ctx := ctxFor(t, 3*time.Minute)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	corrupt := filepath.Join(t.TempDir(), "corrupt")
	if err := os.MkdirAll(filepath.Join(corrupt, "etcd", "member", "snap"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(corrupt, "skiff-controlplane.dir"), []byte("1\n"), 0o600)
	os.WriteFile(filepath.Join(corrupt, "etcd", "member", "snap", "db"), []byte(strings.Repeat("not a bolt db ", 1000)), 0o600)

	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "precious.txt"), []byte("keep me"), 0o600)

	notADir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notADir, []byte("x"), 0o600)

	cases := []struct {
		name string
		opts testenv.Options
		want []string
	}{
		{"port in use", testenv.Options{Port: busyPort}, []string{"apiserver port", "not available"}},
		{"data dir cannot be created", testenv.Options{DataDir: filepath.Join(notADir, "data")}, []string{"--data-dir", "cannot be created"}},
		{"corrupt data dir", testenv.Options{DataDir: corrupt}, []string{"etcd database", "corrupt"}},
		{"foreign data dir", testenv.Options{DataDir: foreign}, []string{"not a skiff-controlplane data dir"}},
		{"unknown flag", testenv.Options{ExtraArgs: []string{"--no-such-flag"}}, []string{"unknown flag --no-such-flag"}},
		{"unknown apiserver flag", testenv.Options{APIServerArgs: []string{"--no-such-apiserver-flag=1"}}, []string{"kube-apiserver flags", "no-such-apiserver-flag"}},
		{"unknown feature gate", testenv.Options{FeatureGates: "NoSuchGate=true"}, []string{"NoSuchGate"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, err := testenv.Start(ctx, tc.opts)
			if err == nil {
				env.Stop()
				t.Fatal("started; want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(foreign, "precious.txt")); err != nil || string(b) != "keep me" {
		t.Errorf("foreign dir was touched: %q %v", b, err)
	}
}

func TestBinaryFromEnvironmentVariable(t *testing.T) {
	t.Setenv(testenv.EnvBinary, filepath.Join(t.TempDir(), "missing"))
	_, err := testenv.Binary(context.Background(), testenv.BuildOptions{})
	if err == nil || !strings.Contains(err.Error(), testenv.EnvBinary) {
		t.Fatalf("missing binary: err=%v, want one naming %s", err, testenv.EnvBinary)
	}
	t.Setenv(testenv.EnvBinary, t.TempDir())
	if _, err := testenv.Binary(context.Background(), testenv.BuildOptions{}); err == nil || !strings.Contains(err.Error(), "not an executable") {
		t.Fatalf("directory as binary: err=%v", err)
	}
}

func TestBinaryWithoutSources(t *testing.T) {
	t.Setenv(testenv.EnvBinary, "")
	_, err := testenv.Binary(context.Background(), testenv.BuildOptions{SourceDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), testenv.EnvBinary) {
		t.Fatalf("err=%v, want a message telling to set %s", err, testenv.EnvBinary)
	}
}

func TestHelpExitsZero(t *testing.T) {
	bin, err := testenv.Binary(context.Background(), testenv.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "-apiserver-arg") {
		t.Fatalf("--help: err=%v output=%s", err, out)
	}
}

func TestServerReportsItsKubernetesVersion(t *testing.T) {
	v, err := clientset(t, shared).Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v.GitVersion, "v1.36.") || v.Major != "1" || v.Minor != "36" {
		t.Fatalf("server version %+v, want v1.36.x (stamped at build time)", v)
	}
}

func TestStopIsQuickWithAnOpenWatch(t *testing.T) {
	ctx := ctxFor(t, 2*time.Minute)
	env, err := testenv.Start(ctx, testenv.Options{Controllers: "none"})
	if err != nil {
		t.Fatal(err)
	}
	w, err := clientset(t, env).CoreV1().ConfigMaps("").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		env.Stop()
		t.Fatal(err)
	}
	defer w.Stop()
	begin := time.Now()
	if err := env.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Fatalf("stop with an open watch took %v, want < 10s", took)
	}
}
