package bench

import (
	"encoding/json"
	"testing"
)

// The fixture's pods are deterministic, uniquely named, and of the size
// BENCHMARKS.md asks for once the server adds managedFields (about 3.5 KB
// of JSON for these pods, measured and logged by logFixture).
func TestBenchPodGenerator(t *testing.T) {
	a, _ := json.Marshal(benchPod(1234))
	b, _ := json.Marshal(benchPod(1234))
	if string(a) != string(b) {
		t.Fatal("benchPod(1234) differs between calls")
	}
	names := map[string]bool{}
	for i := range 10000 {
		p := benchPod(i)
		if p.Name != podName(i) || names[p.Name] {
			t.Fatalf("pod %d: name %q not podName(i) or not unique", i, p.Name)
		}
		names[p.Name] = true
		if i%1000 == 0 {
			raw, _ := json.Marshal(p)
			if n := len(raw); n < 6000 || n > 9000 {
				t.Errorf("pod %d: %d B of JSON before managedFields, want 6000–9000", i, n)
			}
		}
	}
}
