package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/internal/doctor"
)

// scrapeTerminated reads the count from the server's /metrics through rc
// (any REST client of cfg; the identity must be allowed GET /metrics).
func scrapeTerminated(ctx context.Context, rc rest.Interface, gr schema.GroupResource) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	body, err := rc.Get().AbsPath("/metrics").SetHeader("Accept", "text/plain").DoRaw(ctx)
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	m, err := doctor.ParseMetrics(bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("GET /metrics: %w", err)
	}
	// A counter nothing has touched has no sample: absent reads as zero.
	sums, _ := m.Sum("apiserver_terminated_watchers_total", "resource", map[string]string{"group": gr.Group})
	return sums[gr.Resource], nil
}

// watchHealth tracks the server-side watch terminations of a run: the
// count before the load and after convergence (the counter is the server's
// whole life, and with --kubeconfig others may share it).
type watchHealth struct {
	rc     rest.Interface
	gr     schema.GroupResource
	before float64
	err    error
}

func startWatchHealth(ctx context.Context, rc rest.Interface, gr schema.GroupResource) *watchHealth {
	h := &watchHealth{rc: rc, gr: gr}
	h.before, h.err = scrapeTerminated(ctx, rc, gr)
	return h
}

// during returns the terminations since start, or why it cannot tell.
func (h *watchHealth) during(ctx context.Context) (float64, error) {
	if h.err != nil {
		return 0, h.err
	}
	after, err := scrapeTerminated(ctx, h.rc, h.gr)
	if err != nil {
		return 0, err
	}
	return after - h.before, nil
}

// watchLine is one informer's line of the summary.
type watchLine struct {
	name  string
	stats cache.Stats
}

// printWatches writes the summary's watch section: per informer the
// watches reopened and what its event handlers were behind on at the end,
// then the server's terminations of the Foo watch during the run.
func printWatches(w io.Writer, lines []watchLine, gr schema.GroupResource, terminated float64, terr error) {
	fmt.Fprintf(w, "  watches:\n")
	for _, l := range lines {
		fmt.Fprintf(w, "    %-36s watch restarts %d, relists %d, events %d, changes merged for slow handlers %d\n",
			l.name, l.stats.WatchRestarts, l.stats.Relists, l.stats.Events, l.stats.Coalesced)
	}
	res := gr.Resource
	if gr.Group != "" {
		res += "." + gr.Group
	}
	if terr != nil {
		fmt.Fprintf(w, "    server-terminated %s watchers: unavailable (%v)\n", res, terr)
		return
	}
	fmt.Fprintf(w, "    server-terminated %s watchers: %.0f during this run\n", res, terminated)
}
