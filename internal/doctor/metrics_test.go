package doctor

import (
	"math"
	"math/rand/v2"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestParseMetrics(t *testing.T) {
	in := `# HELP x_total A counter.
# TYPE x_total counter
x_total 3

x_total{a="1",b="two words"} 4.5 1700000000000
y{esc="q\"uote\\back\nline",} +Inf
y{ a = "sp" } -Inf
z NaN
up{job="a:b"} 1e-3
`
	m, err := ParseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := Metrics{
		"x_total": {{Name: "x_total", Value: 3}, {Name: "x_total", Labels: map[string]string{"a": "1", "b": "two words"}, Value: 4.5}},
		"y": {{Name: "y", Labels: map[string]string{"esc": "q\"uote\\back\nline"}, Value: math.Inf(1)},
			{Name: "y", Labels: map[string]string{"a": "sp"}, Value: math.Inf(-1)}},
		"up": {{Name: "up", Labels: map[string]string{"job": "a:b"}, Value: 0.001}},
	}
	if len(m["z"]) != 1 || !math.IsNaN(m["z"][0].Value) {
		t.Errorf("z = %+v, want one NaN sample", m["z"])
	}
	delete(m, "z")
	if !reflect.DeepEqual(m, want) {
		t.Errorf("ParseMetrics =\n%#v\nwant\n%#v", m, want)
	}
}

func TestParseMetricsRejectsMalformedLines(t *testing.T) {
	for _, line := range []string{
		`{a="1"} 1`, `x`, `x{a="1"}`, `x one`, `x 1 2 3`, `x{a=1} 1`, `x{a="1} 1`, `x{a="1" b="2"} 1`,
		`x{a="\q"} 1`, `x{a="1",a="2"} 1`, `x{1a="1"} 1`, `x{a:b="1"} 1`,
	} {
		_, err := ParseMetrics(strings.NewReader("ok 1\n" + line + "\n"))
		if err == nil {
			t.Errorf("ParseMetrics(%q) = nil error", line)
		} else if !strings.Contains(err.Error(), "line 2") {
			t.Errorf("ParseMetrics(%q) error %q does not name line 2", line, err)
		}
	}
}

// FuzzParseMetrics: /metrics comes from the network. The parser must not
// panic, and what it accepts must be well formed.
func FuzzParseMetrics(f *testing.F) {
	seed, err := os.ReadFile("testdata/apiserver-v1.36-tight-inflight.txt")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(seed[:4000]))
	f.Add(`y{esc="q\"uote\\back\nline",} +Inf`)
	f.Add("x{a=\"1\"} 1 2\n# c\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		m, err := ParseMetrics(strings.NewReader(in))
		if err != nil {
			return
		}
		for name, samples := range m {
			for _, s := range samples {
				if s.Name != name || name == "" || !isNameChar(name[0], true) {
					t.Fatalf("sample %+v filed under %q", s, name)
				}
			}
		}
	})
}

func TestHistogramQuantile(t *testing.T) {
	h := Histogram{Count: 100, Buckets: []Bucket{{0.1, 50}, {0.5, 90}, {1, 100}, {math.Inf(1), 100}}}
	for _, tc := range []struct{ q, want float64 }{
		{0.25, 0.05}, {0.5, 0.1}, {0.7, 0.3}, {0.9, 0.5}, {0.95, 0.75}, {0.99, 0.95},
	} {
		if got := h.Quantile(tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Quantile(%g) = %g, want %g", tc.q, got, tc.want)
		}
	}
	inInf := Histogram{Buckets: []Bucket{{1, 1}, {math.Inf(1), 10}}}
	if got := inInf.Quantile(0.99); got != 1 {
		t.Errorf("a quantile in the +Inf bucket = %g, want the highest finite bound 1", got)
	}
	if got := (Histogram{}).Quantile(0.5); !math.IsNaN(got) {
		t.Errorf("empty histogram quantile = %g, want NaN", got)
	}
	if got := (Histogram{Buckets: []Bucket{{1, 0}, {math.Inf(1), 0}}}).Quantile(0.5); !math.IsNaN(got) {
		t.Errorf("no-observation histogram quantile = %g, want NaN", got)
	}
}

// TestHistogramQuantileProperties checks, on random histograms, that the
// estimate rises with q and lies in the bucket that holds the rank, against
// a naive search for that bucket.
func TestHistogramQuantileProperties(t *testing.T) {
	seed := uint64(rand.Int64())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for range 500 {
		var h Histogram
		bound, cum := 0.0, 0.0
		for range 1 + r.IntN(8) {
			bound += 0.001 + r.Float64()
			cum += float64(r.IntN(20))
			h.Buckets = append(h.Buckets, Bucket{bound, cum})
		}
		cum += float64(r.IntN(3))
		h.Buckets = append(h.Buckets, Bucket{math.Inf(1), cum})
		if cum == 0 {
			continue
		}
		qs := []float64{0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99}
		var got []float64
		for _, q := range qs {
			v := h.Quantile(q)
			got = append(got, v)
			lo, hi := 0.0, h.Buckets[len(h.Buckets)-2].UpperBound // naive: first bucket reaching the rank
			for i, b := range h.Buckets {
				if b.Count >= q*cum {
					if !math.IsInf(b.UpperBound, 1) {
						hi = b.UpperBound
					}
					if i > 0 {
						lo = h.Buckets[i-1].UpperBound
					}
					break
				}
			}
			if v < lo-1e-9 || v > hi+1e-9 {
				t.Fatalf("%+v: Quantile(%g) = %g outside its bucket [%g, %g]", h.Buckets, q, v, lo, hi)
			}
		}
		if !sort.Float64sAreSorted(got) {
			t.Fatalf("%+v: quantiles %v do not rise with q", h.Buckets, got)
		}
	}
}

func TestHistogramsMergeLabelSets(t *testing.T) {
	m, err := ParseMetrics(strings.NewReader(`
d_bucket{verb="GET",r="a",le="0.1"} 1
d_bucket{verb="GET",r="a",le="+Inf"} 2
d_bucket{verb="GET",r="b",le="0.1"} 3
d_bucket{verb="GET",r="b",le="+Inf"} 3
d_bucket{verb="LIST",r="a",le="0.1"} 0
d_bucket{verb="LIST",r="a",le="+Inf"} 1
d_sum{verb="GET",r="a"} 0.5
d_sum{verb="GET",r="b"} 0.1
d_count{verb="GET",r="a"} 2
d_count{verb="GET",r="b"} 3
d_count{verb="LIST",r="a"} 1
`))
	if err != nil {
		t.Fatal(err)
	}
	hs := m.Histograms("d", "verb", nil)
	want := Histogram{Count: 5, Sum: 0.6, Buckets: []Bucket{{0.1, 4}, {math.Inf(1), 5}}}
	if !reflect.DeepEqual(hs["GET"], want) {
		t.Errorf("GET = %+v, want %+v", hs["GET"], want)
	}
	if only := m.Histograms("d", "verb", map[string]string{"r": "b"}); len(only) != 1 || only["GET"].Count != 3 {
		t.Errorf("filtered on r=b: %+v", only)
	}
}
