package builder_test

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/deadletter"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/testenv"
)

// PersistDeadLetters wires a store into a built controller: a key that
// uses up its budget lands in the ConfigMap, and the manager's /metrics
// shows the skiff_deadletter_* series.
func TestPersistDeadLetters(t *testing.T) {
	cs := clientset(t)
	ns := testenv.Namespace(t, env.Config())
	mgr := newManager(t, manager.Options{})
	rec := controller.ReconcileFunc[request](func(context.Context, request) (controller.Result, error) {
		return controller.Result{}, errors.New("never works")
	})
	const name = "persist-dl"
	if _, err := builder.Build(mgr, rec,
		builder.For[*corev1.ConfigMap](),
		builder.Scope[*corev1.ConfigMap](cache.Scope{Namespace: ns, LabelSelector: "app=dl"}),
		builder.WithOptions(controller.Options[request]{Name: name, MaxFailures: 2}),
		builder.PersistDeadLetters(deadletter.StoreOptions{Namespace: ns, Replica: "r1"}),
	); err != nil {
		t.Fatal(err)
	}
	startManager(t, mgr)
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "failing", Labels: map[string]string{"app": "dl"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	key := ns + "/failing"
	testenv.Eventually(t, waitFor, "dead letter in the ConfigMap", func() (bool, error) {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), deadletter.ConfigMapName(name), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		_, ok := cm.Data[deadletter.DataKey(key)]
		return ok, nil
	})
	testenv.Eventually(t, waitFor, "skiff_deadletter_persisted on /metrics", func() (bool, error) {
		rr := httptest.NewRecorder()
		mgr.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rr.Body)
		return strings.Contains(string(body), `skiff_deadletter_persisted{controller="persist-dl"} 1`), nil
	})
}
