package event

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricEvents is the name of the recorder's counter, labelled by event type
// (Normal, Warning) and result:
//
//   - sent: an Event object was created;
//   - series_updated: an Event's series (count, lastObservedTime) was written;
//   - dropped: an occurrence was discarded because the buffer was full (or
//     still buffered when Run stopped);
//   - failed: a create or series update was refused by the API server or did
//     not complete (logged).
const MetricEvents = "skiff_events_total"

const (
	resultSent          = "sent"
	resultSeriesUpdated = "series_updated"
	resultDropped       = "dropped"
	resultFailed        = "failed"
)

// Stats are the recorder's counters since New, by result (see MetricEvents).
type Stats struct {
	Sent, SeriesUpdated, Dropped, Failed uint64
}

type counters struct {
	sent, seriesUpdated, dropped, failed atomic.Uint64
	vec                                  *prometheus.CounterVec // nil without a Registerer
}

func newCounters(reg prometheus.Registerer) (*counters, error) {
	c := &counters{}
	if reg == nil {
		return c, nil
	}
	c.vec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricEvents,
		Help: "Events recorded through the events.k8s.io/v1 recorder, by type and result (sent, series_updated, dropped, failed).",
	}, []string{"type", "result"})
	if err := reg.Register(c.vec); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *counters) inc(t Type, result string) {
	switch result {
	case resultSent:
		c.sent.Add(1)
	case resultSeriesUpdated:
		c.seriesUpdated.Add(1)
	case resultDropped:
		c.dropped.Add(1)
	case resultFailed:
		c.failed.Add(1)
	}
	if c.vec != nil {
		c.vec.WithLabelValues(string(t), result).Inc()
	}
}

func (c *counters) stats() Stats {
	return Stats{Sent: c.sent.Load(), SeriesUpdated: c.seriesUpdated.Load(), Dropped: c.dropped.Load(), Failed: c.failed.Load()}
}
