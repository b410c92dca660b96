package foo_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiffkit/skiff/controller"
	"github.com/skiffkit/skiff/testenv"
)

// metricName matches the metric names Skiff's parts export, in PromQL.
var metricName = regexp.MustCompile(`\b(?:workqueue|controller_runtime|skiff|rest_client|go|process)_[a-z0-9_]+`)

// TestDashboardMetricsExist runs the Foo operator under a manager, lets it
// reconcile, scrapes /metrics and checks that every metric the Grafana
// dashboard (deploy/grafana/skiff.json) queries is there.
func TestDashboardMetricsExist(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/skiff.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	queried := map[string][]string{} // metric -> panels
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range metricName.FindAllString(tg.Expr, -1) {
				queried[m] = append(queried[m], p.Title)
			}
		}
	}
	if len(queried) < 20 {
		t.Fatalf("the dashboard queries only %d metrics: %v", len(queried), queried)
	}

	ctx := context.Background()
	_, mgr := run(t, controller.Options[controller.Request]{})
	srv := httptest.NewServer(mgr.Handler())
	defer srv.Close()
	ns := testenv.Namespace(t, env.Config())
	_, foos := clients(t)
	if _, err := foos.Namespace(ns).Create(ctx, newFoo("dash", "hi", false), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "foo converged", func() (bool, error) {
		f, err := foos.Namespace(ns).Get(ctx, "dash", metav1.GetOptions{})
		return err == nil && converged(f), err
	})
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	series := map[string]bool{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		series[name] = true
	}
	var missing []string
	for m, panels := range queried {
		if !series[m] {
			missing = append(missing, m+" (panel "+panels[0]+")")
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("the dashboard queries metrics a live manager does not export:\n%s", strings.Join(missing, "\n"))
	}
	t.Logf("all %d metrics the dashboard queries are exported", len(queried))
}
