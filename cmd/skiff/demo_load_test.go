package main

import (
	"io"
	"testing"

	"k8s.io/client-go/rest"
)

func TestDemoLoadConcurrencyCapsTheLoadGenerator(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
	}{
		{nil, 4},
		{[]string{"--load-concurrency=3"}, 3},
		{[]string{"--load-concurrency=32"}, 32},
	} {
		d, err := parseDemo(c.args, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		o := loadBulk(d.loadConcurrency)
		if o.InitialConcurrency != c.want || o.MaxConcurrency != c.want {
			t.Errorf("%q: Bulk starts at %d and may reach %d in flight, want %d for both", c.args, o.InitialConcurrency, o.MaxConcurrency, c.want)
		}
	}
}

func TestDemoMaxWorkersDefault(t *testing.T) {
	d, err := parseDemo(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if d.maxWorkers != 8 {
		t.Errorf("default --max-workers %d, want 8", d.maxWorkers)
	}
}

// A rest.Config's Timeout is its http.Client's, so it would also end the
// operator's watches: only the setup config may carry one.
func TestDemoWatchingConfigHasNoClientTimeout(t *testing.T) {
	in := &rest.Config{Host: "https://127.0.0.1:1", QPS: 5, Burst: 10, Timeout: 7}
	run, setup := demoClientConfigs(in)
	if run.Timeout != 0 {
		t.Errorf("operator/load config Timeout %v, want 0 (it would cut watches)", run.Timeout)
	}
	if setup.Timeout <= 0 {
		t.Errorf("setup config Timeout %v, want a positive bound", setup.Timeout)
	}
	for _, c := range []*rest.Config{run, setup} {
		if c.QPS != -1 || c.Burst != 0 {
			t.Errorf("QPS %v burst %d, want -1 and 0 (no client-side throttling)", c.QPS, c.Burst)
		}
	}
	if in.Timeout != 7 || in.QPS != 5 {
		t.Errorf("the caller's config was modified: %+v", in)
	}
}
