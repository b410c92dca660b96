package doctor

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Sample is one sample line of the Prometheus text exposition format.
type Sample struct {
	Name   string
	Labels map[string]string // nil when the line has no labels
	Value  float64
}

// Metrics holds the samples of one scrape by metric name, in the order they
// were read. A name with no sample (a vector nothing has been observed in
// yet, such as apiserver_flowcontrol_rejected_requests_total before the
// first rejection) is absent.
type Metrics map[string][]Sample

// maxLine bounds one line of a scrape; kube-apiserver's longest lines are a
// few hundred bytes.
const maxLine = 1 << 20

// ParseMetrics reads the Prometheus text exposition format (version 0.0.4,
// what kube-apiserver serves at /metrics). Comment (# HELP, # TYPE) and blank
// lines are skipped; a sample's optional timestamp is ignored. A malformed
// line is an error naming its line number, and nothing is returned.
func ParseMetrics(r io.Reader) (Metrics, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	m := Metrics{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			return nil, fmt.Errorf("parse metrics line %d %.80q: %w", n, line, err)
		}
		m[s.Name] = append(m[s.Name], s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	return m, nil
}

func isNameChar(c byte, first bool) bool {
	return c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || !first && '0' <= c && c <= '9'
}

func parseSample(line string) (Sample, error) {
	i := 0
	for i < len(line) && isNameChar(line[i], i == 0) {
		i++
	}
	if i == 0 {
		return Sample{}, fmt.Errorf("no metric name")
	}
	s := Sample{Name: line[:i]}
	rest := line[i:]
	if strings.HasPrefix(rest, "{") {
		labels, after, err := parseLabels(rest[1:])
		if err != nil {
			return Sample{}, err
		}
		s.Labels, rest = labels, after
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 || len(fields) > 2 {
		return Sample{}, fmt.Errorf("want a value and an optional timestamp after the name and labels, got %q", rest)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return Sample{}, fmt.Errorf("bad value %q", fields[0])
	}
	s.Value = v
	return s, nil
}

// parseLabels reads `name="value",...}` and returns the labels and what
// follows the closing brace.
func parseLabels(s string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " \t")
		if strings.HasPrefix(s, "}") {
			return labels, s[1:], nil
		}
		i := 0
		for i < len(s) && isNameChar(s[i], i == 0) && s[i] != ':' {
			i++
		}
		if i == 0 {
			return nil, "", fmt.Errorf("bad label name at %.20q", s)
		}
		name := s[:i]
		s = strings.TrimLeft(s[i:], " \t")
		if !strings.HasPrefix(s, "=") {
			return nil, "", fmt.Errorf("label %s: want =", name)
		}
		s = strings.TrimLeft(s[1:], " \t")
		if !strings.HasPrefix(s, `"`) {
			return nil, "", fmt.Errorf("label %s: want a quoted value", name)
		}
		s = s[1:]
		var b strings.Builder
		closed := false
		for j := 0; j < len(s); j++ {
			c := s[j]
			if c == '"' {
				s, closed = s[j+1:], true
				break
			}
			if c == '\\' {
				if j+1 == len(s) {
					break
				}
				j++
				switch s[j] {
				case 'n':
					b.WriteByte('\n')
				case '\\', '"':
					b.WriteByte(s[j])
				default:
					return nil, "", fmt.Errorf("label %s: bad escape \\%c", name, s[j])
				}
				continue
			}
			b.WriteByte(c)
		}
		if !closed {
			return nil, "", fmt.Errorf("label %s: unterminated value", name)
		}
		if _, dup := labels[name]; dup {
			return nil, "", fmt.Errorf("label %s given twice", name)
		}
		labels[name] = b.String()
		s = strings.TrimLeft(s, " \t")
		switch {
		case strings.HasPrefix(s, ","):
			s = s[1:]
		case strings.HasPrefix(s, "}"):
		default:
			return nil, "", fmt.Errorf("after label %s: want , or }", name)
		}
	}
}

// Sum adds the values of name's samples whose labels match want (every
// label in want has that value), grouped by the value of label by ("" groups
// everything under ""). ok is false when name has no sample at all.
func (m Metrics) Sum(name, by string, want map[string]string) (sums map[string]float64, ok bool) {
	samples, ok := m[name]
	sums = map[string]float64{}
	for _, s := range samples {
		if matches(s.Labels, want) {
			sums[s.Labels[by]] += s.Value
		}
	}
	return sums, ok
}

func matches(labels, want map[string]string) bool {
	for k, v := range want {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// Bucket is one cumulative bucket of a histogram: Count observations were
// at most UpperBound.
type Bucket struct {
	UpperBound float64
	Count      float64
}

// Histogram is a Prometheus histogram, possibly merged over label sets.
type Histogram struct {
	Count   float64
	Sum     float64
	Buckets []Bucket // cumulative, by increasing UpperBound, the last +Inf
}

// Histograms merges the histogram family name (its _bucket, _sum and _count
// samples) over every label set whose labels match want, grouped by the
// value of label by.
func (m Metrics) Histograms(name, by string, want map[string]string) map[string]Histogram {
	type acc struct {
		h      Histogram
		bounds map[float64]float64
	}
	groups := map[string]*acc{}
	get := func(k string) *acc {
		a := groups[k]
		if a == nil {
			a = &acc{bounds: map[float64]float64{}}
			groups[k] = a
		}
		return a
	}
	for _, s := range m[name+"_bucket"] {
		if !matches(s.Labels, want) {
			continue
		}
		le, err := strconv.ParseFloat(s.Labels["le"], 64)
		if err != nil || math.IsNaN(le) {
			continue
		}
		get(s.Labels[by]).bounds[le] += s.Value
	}
	for _, s := range m[name+"_count"] {
		if matches(s.Labels, want) {
			get(s.Labels[by]).h.Count += s.Value
		}
	}
	for _, s := range m[name+"_sum"] {
		if matches(s.Labels, want) {
			get(s.Labels[by]).h.Sum += s.Value
		}
	}
	out := make(map[string]Histogram, len(groups))
	for k, a := range groups {
		for ub, c := range a.bounds {
			a.h.Buckets = append(a.h.Buckets, Bucket{ub, c})
		}
		sort.Slice(a.h.Buckets, func(i, j int) bool { return a.h.Buckets[i].UpperBound < a.h.Buckets[j].UpperBound })
		out[k] = a.h
	}
	return out
}

// Mean is Sum/Count, or 0 when nothing was observed.
func (h Histogram) Mean() float64 {
	if h.Count <= 0 {
		return 0
	}
	return h.Sum / h.Count
}

// Quantile estimates the q-quantile (0 < q < 1) by linear interpolation
// inside the bucket that holds it, as Prometheus's histogram_quantile does
// for classic buckets. It returns NaN when there are no observations, and
// the highest finite bound when the quantile falls in the +Inf bucket.
func (h Histogram) Quantile(q float64) float64 {
	if len(h.Buckets) == 0 {
		return math.NaN()
	}
	total := h.Buckets[len(h.Buckets)-1].Count
	if total <= 0 || math.IsNaN(q) {
		return math.NaN()
	}
	rank := q * total
	lowerBound, lowerCount := 0.0, 0.0
	for _, b := range h.Buckets {
		if b.Count >= rank {
			if math.IsInf(b.UpperBound, 1) {
				return lowerBound
			}
			if b.Count == lowerCount {
				return b.UpperBound
			}
			return min(b.UpperBound, lowerBound+(b.UpperBound-lowerBound)*(rank-lowerCount)/(b.Count-lowerCount))
		}
		lowerBound, lowerCount = b.UpperBound, b.Count
	}
	return lowerBound
}
