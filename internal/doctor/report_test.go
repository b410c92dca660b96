package doctor

import (
	"strings"
	"testing"
)

func TestWriteAlwaysWritesEverySection(t *testing.T) {
	full := healthy()
	full.Probes = []Probe{{Name: "GET /version", Status: 200, Proto: "HTTP/2.0"}}
	empty := Report{Server: "https://x", Flow: Flow{Shares: -1}}
	for name, r := range map[string]Report{"full": full, "empty": empty} {
		var b strings.Builder
		if err := r.Write(&b); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		last := -1
		for _, s := range Sections {
			i := strings.Index(out, "\n== "+s+"\n")
			if i < 0 || i < last {
				t.Errorf("%s report: section %q missing or out of order:\n%s", name, s, out)
			}
			last = i
		}
	}
	var b strings.Builder
	empty.Write(&b)
	for _, want := range []string{"version   unknown", "not readable (see could not read)", "unknown (no X-Kubernetes-PF-* headers seen)", "list namespaces (limit=1)  not measured"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("empty report lacks %q:\n%s", want, b.String())
		}
	}
}
