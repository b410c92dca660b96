package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, testenv.Options{Controllers: "none"}, func(e *testenv.Env) error { env = e; return nil }))
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestReconcilerSeesDeploymentAndItsReplicaSets wires the reconciler as
// main does, against the local control plane, and checks what it logs
// after a Deployment and a ReplicaSet it owns appear.
func TestReconcilerSeesDeploymentAndItsReplicaSets(t *testing.T) {
	var logs syncBuffer
	mgr, err := manager.New(manager.Options{Config: env.Config(), Addr: "-", KeepKlog: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := builder.Build(mgr, &reconciler{mgr.Client()}, builder.For[*appsv1.Deployment](), builder.Owns[*appsv1.ReplicaSet]()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	ns := testenv.Namespace(t, env.Config())
	c := mgr.Client()
	labels := map[string]string{"app": "web"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}}
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}
	if err := c.Create(ctx, dep); err != nil {
		t.Fatal(err)
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-1"},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl}}
	if err := c.SetControllerReference(dep, rs); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	want := "key=" + ns + "/web reconcileID="
	testenv.Eventually(t, 30*time.Second, "a reconcile of "+ns+"/web seeing its replica set", func() (bool, error) {
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, want) && strings.Contains(l, "replicaSets=1") {
				return true, nil
			}
		}
		return false, nil
	})
	var line string
	for _, l := range strings.Split(logs.String(), "\n") {
		if strings.Contains(l, want) && strings.Contains(l, "replicaSets=1") {
			line = l
		}
	}
	for _, attr := range []string{"controller=deployment", "deployment=web", "reconcileID="} {
		if !strings.Contains(line, attr) {
			t.Errorf("reconcile log line lacks %s: %s", attr, line)
		}
	}
}
