package cache

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// templatePodSpec is a spec of template t (pods of one template share
// every shareable part) with the per-pod fields of pod i.
func templatePodSpec(t, i int) corev1.PodSpec {
	s := realisticPod(t).Spec
	s.NodeName = fmt.Sprintf("node-%d", i)
	s.Hostname = fmt.Sprintf("h-%d", i)
	s.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
		Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname",
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprint(t)}}}}}}}
	s.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: new(bool), FSGroup: new(int64(1000 + t))}
	s.DNSConfig = &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: new("2")}}}
	s.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: "zone", WhenUnsatisfiable: corev1.ScheduleAnyway}}
	s.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", Command: []string{"sh", "-c", "true"},
		SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: new(true)},
		Resources:       corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m")}}}}
	c := &s.Containers[0]
	c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"ok", fmt.Sprint(t)}}}, FailureThreshold: 30}
	c.LivenessProbe = c.ReadinessProbe
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}}
	c.Env = append(c.Env, corev1.EnvVar{Name: "POD_INDEX", Value: fmt.Sprint(i)}) // per pod: env is not shared
	return s
}

func marshalSpec(t testing.TB, s *corev1.PodSpec) []byte {
	t.Helper()
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkShareDecode decodes raw with s and with PodSpec.Unmarshal: both
// fail, or both give equal specs.
func checkShareDecode(t *testing.T, s *podSpecSharer, raw []byte) *corev1.PodSpec {
	t.Helper()
	want := &corev1.PodSpec{}
	wantErr := want.Unmarshal(raw)
	got := &corev1.PodSpec{}
	err := s.decode(got, raw)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("error %v, PodSpec.Unmarshal: %v", err, wantErr)
	}
	if err != nil {
		return nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded\n%#v\nwant\n%#v", got, want)
	}
	return got
}

// Pods of one template share their template's parts (same pointers, same
// maps, same slice arrays); pods of another template do not; what is
// per pod is decoded per pod; everything equals a plain Unmarshal.
func TestPodSpecSharerShares(t *testing.T) {
	s := newPodSpecSharer(newInterner())
	a1 := checkShareDecode(t, s, marshalSpec(t, new(templatePodSpec(1, 1))))
	a2 := checkShareDecode(t, s, marshalSpec(t, new(templatePodSpec(1, 2))))
	b1 := checkShareDecode(t, s, marshalSpec(t, new(templatePodSpec(2, 3))))
	samePtr := func(what string, x, y any, want bool) {
		t.Helper()
		if got := reflect.ValueOf(x).Pointer() == reflect.ValueOf(y).Pointer(); got != want {
			t.Errorf("%s shared = %v, want %v", what, got, want)
		}
	}
	for _, c := range []struct {
		what string
		x    func(*corev1.PodSpec) any
	}{
		{"affinity", func(s *corev1.PodSpec) any { return s.Affinity }},
		{"pod securityContext", func(s *corev1.PodSpec) any { return s.SecurityContext }},
		{"startup probe", func(s *corev1.PodSpec) any { return s.Containers[0].StartupProbe }},
	} {
		samePtr(c.what+" (same template)", c.x(a1), c.x(a2), true)
		samePtr(c.what+" (other template)", c.x(a1), c.x(b1), false)
	}
	// Parts equal across templates are shared across templates too.
	samePtr("tolerations", a1.Tolerations, b1.Tolerations, true)
	samePtr("dnsConfig", a1.DNSConfig, b1.DNSConfig, true)
	samePtr("spread constraints", a1.TopologySpreadConstraints, b1.TopologySpreadConstraints, true)
	samePtr("init container securityContext", a1.InitContainers[0].SecurityContext, b1.InitContainers[0].SecurityContext, true)
	samePtr("requests", a1.Containers[0].Resources.Requests, a2.Containers[0].Resources.Requests, true)
	samePtr("readiness probe", a1.Containers[1].ReadinessProbe, a2.Containers[1].ReadinessProbe, true)
	samePtr("lifecycle", a1.Containers[0].Lifecycle, a2.Containers[0].Lifecycle, true)
	samePtr("ports", a1.Containers[1].Ports, a2.Containers[1].Ports, true)
	samePtr("mounts", a1.Containers[1].VolumeMounts, a2.Containers[1].VolumeMounts, true)
	samePtr("container env", a1.Containers[1].Env, a2.Containers[1].Env, true)
	samePtr("per-pod env", a1.Containers[0].Env, a2.Containers[0].Env, false)
	samePtr("containers", a1.Containers, a2.Containers, false)
	if e := a1.Containers[1].Env; cap(e) != len(e) {
		t.Errorf("shared env: cap %d, len %d", cap(e), len(e))
	}
	if a1.NodeName == a2.NodeName {
		t.Error("per-pod node names equal")
	}
	// Decoded strings are interned: the image of two pods is one string.
	if !same(a1.Containers[0].Image, a2.Containers[0].Image) {
		t.Error("container image not interned")
	}
}

// The tables stay within shareMaxEntries however many distinct parts
// arrive, and a part longer than shareMaxLen is decoded, not kept.
func TestPodSpecSharerBounded(t *testing.T) {
	s := newPodSpecSharer(newInterner())
	for i := range shareMaxEntries + 500 {
		spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "c",
			ReadinessProbe: &corev1.Probe{PeriodSeconds: int32(i + 1)}}}}
		checkShareDecode(t, s, marshalSpec(t, &spec))
		if s.n > shareMaxEntries {
			t.Fatalf("after %d specs the tables hold %d parts, bound %d", i+1, s.n, shareMaxEntries)
		}
	}
	long := corev1.PodSpec{Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "k", Operator: "In", Values: make([]string, shareMaxLen/2)}}}}}}}}
	s = newPodSpecSharer(newInterner())
	checkShareDecode(t, s, marshalSpec(t, &long))
	if s.n != 0 || len(s.affinity) != 0 {
		t.Fatalf("a %d-byte affinity was kept (%d parts)", len(marshalSpec(t, &long)), s.n)
	}
}

// Wire shapes the sharer leaves to Unmarshal still decode as Unmarshal
// does: an optional part twice (merged), a repeated part split by other
// fields, a part that is not length-delimited, containers as a varint.
func TestPodSpecSharerOddWire(t *testing.T) {
	sc := func(v int64) []byte {
		return marshalSpec(t, &corev1.PodSpec{SecurityContext: &corev1.PodSecurityContext{RunAsUser: new(v)}})
	}
	tol := func(k string) []byte {
		return marshalSpec(t, &corev1.PodSpec{Tolerations: []corev1.Toleration{{Key: k}}})
	}
	node := marshalSpec(t, &corev1.PodSpec{NodeName: "n"})
	ctrWithTwoProbes := func() []byte {
		p1, _ := (&corev1.Probe{PeriodSeconds: 3}).Marshal()
		p2, _ := (&corev1.Probe{TimeoutSeconds: 4}).Marshal()
		c := appendField(appendField(appendField(nil, 1, []byte("c")), ctrReadiness, p1), ctrReadiness, p2)
		return appendField(nil, specContainers, c)
	}()
	cases := map[string][]byte{
		"optional twice":       append(sc(1), sc(2)...),
		"repeated split":       append(append(tol("a"), node...), tol("b")...),
		"tolerations varint":   {specTolerations<<3 | wireVarint, 1},
		"containers varint":    {specContainers<<3 | wireVarint, 1},
		"containers fixed64":   {specContainers<<3 | wireFixed64, 1<<3 | wireBytes, 6, 'a', 'b', 'c', 'd', 'e', 'f'},
		"probe twice":          ctrWithTwoProbes,
		"truncated":            marshalSpec(t, new(templatePodSpec(1, 1)))[:50],
		"group (Unmarshal ok)": {9<<3 | 3, 9<<3 | 4},
		// A malformed nodeSelector entry: Unmarshal reads on into the
		// container after it (found by review).
		"map entry reads on": {0x3a, 0x02, 0x0a, 0x05, 0x12, 0x03, 0x0a, 0x01, 0x63},
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			checkShareDecode(t, newPodSpecSharer(newInterner()), raw)
		})
	}
}

// Decoding any bytes with a sharer ends as PodSpec.Unmarshal does, the
// first time and again with the parts in the tables.
func FuzzPodSpecShare(f *testing.F) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 4 {
		s := templatePodSpec(i%2, i)
		b, err := s.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		p := randomPod(r)
		if b, err = p.Spec.Marshal(); err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{specContainers<<3 | wireFixed64, 1<<3 | wireBytes, 6, 'a', 'b', 'c', 'd', 'e', 'f'})
	f.Add([]byte{0x3a, 0x02, 0x0a, 0x05, 0x12, 0x03, 0x0a, 0x01, 0x63})
	f.Fuzz(func(t *testing.T, raw []byte) {
		s := newPodSpecSharer(newInterner())
		checkShareDecode(t, s, raw)
		checkShareDecode(t, s, raw)
	})
}

// A randomised run over many templates and pods: every spec equals its
// plain decode, including after the tables started afresh.
func TestPodSpecSharerRandomTemplates(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	s := newPodSpecSharer(newInterner())
	for i := range 3000 {
		spec := templatePodSpec(r.IntN(40), i)
		if r.IntN(3) == 0 {
			spec.Containers[1].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(int64(r.IntN(4000)), resource.DecimalSI)}
		}
		if r.IntN(5) == 0 {
			spec.Tolerations = nil
		}
		checkShareDecode(t, s, marshalSpec(t, &spec))
		if i == 1500 {
			s.reset()
		}
	}
}

// The sharer checks the map fields of PodSpec before splitting it (see
// wellFormedMapEntry); a map field added to PodSpec or Container by a
// k8s.io/api upgrade must be added there too.
func TestPodSpecSharerKnowsTheMapFields(t *testing.T) {
	maps := func(typ reflect.Type) []string {
		var out []string
		for i := range typ.NumField() {
			if typ.Field(i).Type.Kind() == reflect.Map {
				out = append(out, typ.Field(i).Name)
			}
		}
		return out
	}
	if got := maps(reflect.TypeFor[corev1.PodSpec]()); !reflect.DeepEqual(got, []string{"NodeSelector", "Overhead"}) {
		t.Errorf("PodSpec map fields %v, the sharer checks NodeSelector (7) and Overhead (32)", got)
	}
	if got := maps(reflect.TypeFor[corev1.Container]()); len(got) != 0 {
		t.Errorf("Container map fields %v, the sharer checks none", got)
	}
}

// checkClipped fails if a slice reachable from v has spare capacity.
func checkClipped(t *testing.T, what string, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			checkClipped(t, what, v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				checkClipped(t, what+"."+v.Type().Field(i).Name, v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Cap() != v.Len() {
			t.Errorf("%s: cap %d, len %d", what, v.Cap(), v.Len())
		}
		for i := range v.Len() {
			checkClipped(t, what, v.Index(i))
		}
	}
}

// Every slice inside a shared part, however deep, has cap == len, so two
// readers appending to "their" copy cannot write into each other's.
func TestPodSpecSharerClipsSharedSlices(t *testing.T) {
	s := newPodSpecSharer(newInterner())
	spec := templatePodSpec(1, 1)
	spec.Containers[0].StartupProbe.Exec.Command = append(make([]string, 0, 1), "sh", "-c", "true") // gogo's append leaves spare capacity
	spec.DNSConfig.Nameservers = []string{"a", "b", "c"}
	spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.Namespaces = []string{"x", "y", "z"}
	raw := marshalSpec(t, &spec)
	checkShareDecode(t, s, raw)        // decodes and shares
	got := checkShareDecode(t, s, raw) // from the tables
	c := got.Containers[0]
	for what, v := range map[string]any{
		"affinity": got.Affinity, "pod securityContext": got.SecurityContext, "dnsConfig": got.DNSConfig,
		"tolerations": got.Tolerations, "spread": got.TopologySpreadConstraints,
		"resources": c.Resources, "startup probe": c.StartupProbe, "readiness probe": c.ReadinessProbe,
		"lifecycle": c.Lifecycle, "ports": c.Ports, "mounts": c.VolumeMounts,
		"init securityContext": got.InitContainers[0].SecurityContext,
	} {
		checkClipped(t, what, reflect.ValueOf(v))
	}
	a := append(c.StartupProbe.Exec.Command, "--a")
	b := append(got.Containers[0].StartupProbe.Exec.Command, "--b")
	if a[3] != "--a" || b[3] != "--b" {
		t.Fatalf("appends to a shared command interfere: %q, %q", a, b)
	}
}

// Shared parts are never written after they are handed out: pods of one
// template are decoded and interned (as the informer's transform does)
// while another goroutine reads the first pod. Under -race a write into a
// shared part (interning it again) is reported.
func TestSharedSpecPartsNotWrittenAfterPublication(t *testing.T) {
	in := newInterner()
	reuse := newSpecReuse[*corev1.Pod]()
	reuse.share = newPodSpecSharer(in)
	decode := func(i int) *corev1.Pod {
		p := realisticPod(i % 7)
		p.Name = fmt.Sprint("p-", i)
		p.Spec = templatePodSpec(1, i)
		raw, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got := &corev1.Pod{}
		if _, done, err := reuse.decode(got, raw, nil); err != nil || !done {
			t.Fatalf("decode: done %v, %v", done, err)
		}
		in.object(got, reuse.specInterned(got))
		reuse.batchDone()
		return got
	}
	first := decode(0)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = first.DeepCopy()
			}
		}
	})
	for i := 1; i < 200; i++ {
		p := decode(i)
		if p.Spec.Containers[0].StartupProbe != first.Spec.Containers[0].StartupProbe {
			t.Fatal("pods of one template do not share their startup probe")
		}
	}
	close(stop)
	wg.Wait()
}
