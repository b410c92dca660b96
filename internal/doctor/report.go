// Package doctor is the pure part of `skiff doctor`: the report it prints,
// a parser for kube-apiserver's /metrics (Prometheus text format), the
// server-side summary read from it, and the rules that turn measured
// findings into recommendations for the client and the server. Nothing here
// does I/O or reads the clock; cmd/skiff measures and fills a Report.
package doctor

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything doctor measured about one connection to one API
// server. Fields it could not measure stay zero and are explained in
// Unreadable.
type Report struct {
	Server   string // the API server URL
	Version  string // e.g. "v1.36.3", "" when unknown
	Platform string // e.g. "linux/amd64"
	Identity Identity
	Probes   []Probe // timed requests, in the order made
	// Lists are the durations of a few identical small lists (limit=1).
	Lists []time.Duration
	// WatchOpen is the time from sending a watch to its response headers.
	WatchOpen time.Duration
	Features  Features
	Flow      Flow
	Client    ClientSettings
	// Metrics is the server side read from /metrics; nil when not readable.
	Metrics *ServerMetrics
	// Unreadable says what could not be read and why.
	Unreadable []Unreadable
}

// Identity is who the server says the client is.
type Identity struct {
	User   string
	Groups []string
}

// Probe is one timed HTTP request. A phase that did not happen (a reused
// connection has no DNS, connect or TLS) is zero.
type Probe struct {
	Name      string // e.g. "GET /version"
	Status    int    // HTTP status, 0 when no response
	Proto     string // e.g. "HTTP/2.0"
	Reused    bool   // the request went over an already open connection
	DNS       time.Duration
	Connect   time.Duration
	TLS       time.Duration
	FirstByte time.Duration // from having a connection to the first response byte (sending the request, the server's work)
	Total     time.Duration
}

// Support says whether the server served a feature.
type Support struct {
	Known  bool
	Served bool
	Detail string // how it was found out, or why not
}

// Features are the API features a fast client depends on.
type Features struct {
	WatchList Support // streaming list: watch with sendInitialEvents and the initial-events-end bookmark
	Protobuf  Support
	Bookmarks Support
}

// Flow is how API Priority and Fairness classifies the client's requests,
// from the X-Kubernetes-PF-FlowSchema-UID and -PriorityLevel-UID response
// headers, resolved to names when the flowcontrol API is readable.
type Flow struct {
	FlowSchema, FlowSchemaUID       string
	PriorityLevel, PriorityLevelUID string
	// Exempt is true when the priority level is of type Exempt (never
	// queued or rejected, nor limited by max-inflight).
	Exempt bool
	// Shares is the priority level's nominalConcurrencyShares (limited
	// levels), -1 when unknown.
	Shares int
}

// ClientSettings are the client-side settings of the loaded rest.Config.
type ClientSettings struct {
	QPS            float32 // effective: client-go uses 5 when the config says 0
	Burst          int     // effective: client-go uses 10 when the config says 0
	QPSFromDefault bool    // QPS and Burst were client-go's defaults (the config left them 0)
	Timeout        time.Duration
	ContentType    string
	UserAgent      string
	Proto          string // the HTTP protocol negotiated, e.g. "HTTP/2.0"
}

// Unreadable is something doctor could not read.
type Unreadable struct {
	What string // e.g. "server metrics (GET /metrics)"
	Why  string // e.g. `forbidden: User "bob" cannot get path "/metrics"`
}

// Sections are the headings of a written report, in order; every one is
// always written.
var Sections = []string{"server", "latency", "list and watch", "flow control", "client settings", "server metrics", "could not read", "findings"}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

func (s Support) String() string {
	switch {
	case !s.Known:
		return "unknown (" + s.Detail + ")"
	case s.Served:
		return "served (" + s.Detail + ")"
	default:
		return "not served (" + s.Detail + ")"
	}
}

// Write writes r as text, every section of Sections in order, ending with
// findings (see Recommend).
func (r Report) Write(w io.Writer) error {
	b := &strings.Builder{}
	tw := func() *tabwriter.Writer { return tabwriter.NewWriter(b, 0, 0, 2, ' ', 0) }
	section := func(name string) { fmt.Fprintf(b, "\n== %s\n", name) }

	fmt.Fprintf(b, "skiff doctor: %s\n", r.Server)
	section("server")
	t := tw()
	fmt.Fprintf(t, "version\t%s\n", orUnknown(r.Version))
	if r.Platform != "" {
		fmt.Fprintf(t, "platform\t%s\n", r.Platform)
	}
	id := orUnknown(r.Identity.User)
	if len(r.Identity.Groups) > 0 {
		id += " (groups " + strings.Join(r.Identity.Groups, ", ") + ")"
	}
	fmt.Fprintf(t, "identity\t%s\n", id)
	t.Flush()

	section("latency")
	t = tw()
	fmt.Fprintln(t, "request\tstatus\tproto\tconn\tdns\tconnect\ttls\tfirst byte\ttotal")
	for _, p := range r.Probes {
		conn := "new"
		if p.Reused {
			conn = "reused"
		}
		status := "-"
		if p.Status != 0 {
			status = fmt.Sprint(p.Status)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, status, orDash(p.Proto), conn, ms(p.DNS), ms(p.Connect), ms(p.TLS), ms(p.FirstByte), ms(p.Total))
	}
	t.Flush()

	section("list and watch")
	t = tw()
	if len(r.Lists) > 0 {
		s := append([]time.Duration(nil), r.Lists...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		fmt.Fprintf(t, "list namespaces (limit=1)\tmin %s, median %s, max %s over %d\n", ms(s[0]), ms(s[len(s)/2]), ms(s[len(s)-1]), len(s))
	} else {
		fmt.Fprintf(t, "list namespaces (limit=1)\tnot measured\n")
	}
	fmt.Fprintf(t, "watch open (to headers)\t%s\n", orNotMeasured(r.WatchOpen))
	fmt.Fprintf(t, "streaming watch-list\t%s\n", r.Features.WatchList)
	fmt.Fprintf(t, "protobuf\t%s\n", r.Features.Protobuf)
	fmt.Fprintf(t, "bookmarks\t%s\n", r.Features.Bookmarks)
	t.Flush()

	section("flow control")
	t = tw()
	fmt.Fprintf(t, "flow schema\t%s\n", nameOrUID(r.Flow.FlowSchema, r.Flow.FlowSchemaUID))
	pl := nameOrUID(r.Flow.PriorityLevel, r.Flow.PriorityLevelUID)
	switch {
	case r.Flow.Exempt:
		pl += " (exempt: never queued or rejected)"
	case r.Flow.Shares >= 0:
		pl += fmt.Sprintf(" (nominalConcurrencyShares %d)", r.Flow.Shares)
	}
	if r.Metrics != nil {
		if lv, ok := r.Metrics.Level(r.Flow.PriorityLevel); ok && !r.Flow.Exempt {
			pl += fmt.Sprintf(", %g seats nominal, %g..%g with borrowing", lv.NominalSeats, lv.LowerSeats, lv.UpperSeats)
		}
	}
	fmt.Fprintf(t, "priority level\t%s\n", pl)
	t.Flush()

	section("client settings")
	t = tw()
	qps := fmt.Sprintf("QPS %g, Burst %d", r.Client.QPS, r.Client.Burst)
	switch {
	case r.Client.QPS < 0:
		qps = "off (QPS < 0): no client-side throttle"
	case r.Client.QPSFromDefault:
		qps += " (client-go's defaults: the config leaves them 0)"
	}
	fmt.Fprintf(t, "rate limit\t%s\n", qps)
	fmt.Fprintf(t, "timeout\t%s\n", orText(r.Client.Timeout, "none (rest.Config.Timeout 0)"))
	fmt.Fprintf(t, "content type\t%s\n", orText(r.Client.ContentType, "default (JSON)"))
	fmt.Fprintf(t, "user agent\t%s\n", orText(r.Client.UserAgent, "default"))
	fmt.Fprintf(t, "protocol\t%s\n", orUnknown(r.Client.Proto))
	t.Flush()

	section("server metrics")
	if r.Metrics == nil {
		fmt.Fprintln(b, "not readable (see could not read)")
	} else {
		writeServerSide(b, *r.Metrics)
	}

	section("could not read")
	if len(r.Unreadable) == 0 {
		fmt.Fprintln(b, "nothing: every probe was answered")
	}
	for _, u := range r.Unreadable {
		fmt.Fprintf(b, "%s: %s\n", u.What, u.Why)
	}

	section("findings")
	findings := Recommend(r)
	if len(findings) == 0 {
		fmt.Fprintln(b, "none: nothing measured calls for a change")
	}
	for _, f := range findings {
		fmt.Fprintf(b, "[%s] %s: %s\n", f.Severity, f.Side, f.Measured)
		fmt.Fprintf(b, "    -> %s\n", f.Advice)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeServerSide(b *strings.Builder, s ServerMetrics) {
	t := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	if s.ConcurrencyLimit > 0 {
		fmt.Fprintf(t, "concurrency limit\t%d seats (--max-requests-inflight + --max-mutating-requests-inflight)\n", s.ConcurrencyLimit)
	} else {
		fmt.Fprintf(t, "concurrency limit\tunknown (no exempt priority level in the scrape)\n")
	}
	if s.Inflight != nil {
		fmt.Fprintf(t, "in flight (max last second)\treadOnly %g, mutating %g\n", s.Inflight["readOnly"], s.Inflight["mutating"])
	}
	t.Flush()
	fmt.Fprintln(b)
	t = tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(t, "priority level\tnominal\tlower\tupper\tcurrent\texecuting\tqueued\tdispatched\trejected")
	for _, pl := range s.Levels {
		rej := fmt.Sprintf("%g", pl.Rejected)
		if pl.Rejected > 0 {
			rej += " (" + reasons(pl.RejectedByReason) + ")"
		}
		fmt.Fprintf(t, "%s\t%g\t%g\t%g\t%g\t%g\t%g\t%g\t%s\n", pl.Name, pl.NominalSeats, pl.LowerSeats, pl.UpperSeats, pl.CurrentLimitSeats, pl.ExecutingSeats, pl.InQueue, pl.Dispatched, rej)
	}
	t.Flush()
	fmt.Fprintln(b)
	writeLatencies(b, "request latency by verb", s.Verbs)
	fmt.Fprintln(b)
	writeLatencies(b, "etcd latency by operation", s.Etcd)
	fmt.Fprintln(b)
	writeWatchCaches(b, s.WatchCaches)
}

func writeLatencies(b *strings.Builder, title string, l []Latency) {
	t := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(t, "%s\tcount\tmean\tp50 (est.)\tp99 (est.)\n", title)
	for _, x := range l {
		fmt.Fprintf(t, "%s\t%g\t%s\t%s\t%s\n", x.Key, x.Count, ms(x.Mean), ms(x.P50), ms(x.P99))
	}
	if len(l) == 0 {
		fmt.Fprintln(t, "(no observations)")
	}
	t.Flush()
}

func writeWatchCaches(b *strings.Builder, caches []WatchCache) {
	if len(caches) == 0 {
		fmt.Fprintln(b, "watch caches: none in the scrape")
		return
	}
	lo, hi, terminated := caches[0].Capacity, caches[0].Capacity, 0.0
	for _, c := range caches {
		lo, hi = min(lo, c.Capacity), max(hi, c.Capacity)
		terminated += c.Terminated
	}
	fmt.Fprintf(b, "watch caches: %d resources, capacity %g..%g, %g watchers terminated (too slow)\n", len(caches), lo, hi, terminated)
	for _, c := range caches {
		if c.Terminated > 0 {
			fmt.Fprintf(b, "  %s: capacity %g, %g watchers terminated\n", c.Resource, c.Capacity, c.Terminated)
		}
	}
}

func reasons(m map[string]float64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %g", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func orUnknown(s string) string { return orText(s, "unknown") }
func orDash(s string) string    { return orText(s, "-") }

func orText[T comparable](v T, text string) string {
	var zero T
	if v == zero {
		return text
	}
	return fmt.Sprint(v)
}

func orNotMeasured(d time.Duration) string {
	if d == 0 {
		return "not measured"
	}
	return ms(d)
}

func nameOrUID(name, uid string) string {
	switch {
	case name != "":
		return name
	case uid != "":
		return "uid " + uid + " (name not readable)"
	default:
		return "unknown (no X-Kubernetes-PF-* headers seen)"
	}
}
