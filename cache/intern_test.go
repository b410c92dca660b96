package cache

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// realisticPod is pod i of a Deployment-like set: strings repeat across
// pods the way they do in a cluster (labels, images, env, mounts), the
// name, UID and one checksum are unique. With managedFields and the
// last-applied annotation, as kubectl apply leaves them.
func realisticPod(i int) *corev1.Pod {
	app := fmt.Sprintf("svc-%03d", i%97)
	c := func(name string, port int32) corev1.Container {
		return corev1.Container{
			Name: name, Image: "registry.example.com/" + app + ":1." + fmt.Sprint(i%7),
			Args:  []string{"--port=" + fmt.Sprint(port), "--log-level=info"},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
			Env: []corev1.EnvVar{{Name: "SETTING", Value: fmt.Sprintf("value-%d", i%31)},
				{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}}},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")}},
			ReadinessProbe:           &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}}},
			VolumeMounts:             []corev1.VolumeMount{{Name: "config", MountPath: "/etc/" + name}},
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: corev1.TerminationMessageReadFile,
			ImagePullPolicy:          corev1.PullIfNotPresent,
		}
	}
	p := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-%05d", app, i), GenerateName: app + "-", Namespace: "shop",
			UID: types.UID("uid-" + fmt.Sprint(i)), ResourceVersion: fmt.Sprint(1000 + i),
			Labels: map[string]string{"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop",
				"team": []string{"payments", "search"}[i%2], "pod-template-hash": fmt.Sprintf("%08x", i/20)},
			Annotations: map[string]string{"prometheus.io/scrape": "true", "checksum/config": fmt.Sprintf("%032x", i),
				LastAppliedAnnotation: strings.Repeat(`{"spec":"x"}`, 200)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-rs", UID: "rs-uid"}},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate,
				APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(strings.Repeat(`{"f:x":{}}`, 300))},
				Time: &metav1.Time{Time: time.Unix(1700000000, 0)}}},
		},
		Spec: corev1.PodSpec{
			Containers:    []corev1.Container{c("app", 8080), c("proxy", 15001)},
			Volumes:       []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: app + "-config"}}}}},
			NodeSelector:  map[string]string{"kubernetes.io/os": "linux"},
			Tolerations:   []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "shop", Effect: corev1.TaintEffectNoSchedule}},
			RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst, SchedulerName: "default-scheduler",
			ServiceAccountName: "default", NodeName: fmt.Sprintf("node-%d", i%50),
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSBurstable, HostIP: fmt.Sprintf("10.0.0.%d", i%50),
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	return p
}

func TestInternKeepsObjectsEqual(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	in := newInterner()
	for i := range 200 {
		var p *corev1.Pod
		if i%2 == 0 {
			p = realisticPod(r.IntN(1000))
		} else {
			p = randomPod(r)
		}
		want := p.DeepCopy()
		in.object(p, false)
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("interning changed pod %s:\n%#v\nwant\n%#v", p.Name, p, want)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "shop", Labels: map[string]string{"a": "b"}}}
	want := cm.DeepCopy()
	in.object(cm, false)
	if !reflect.DeepEqual(cm, want) {
		t.Fatalf("interning changed a ConfigMap: %#v", cm)
	}
}

// same reports whether a and b share their bytes.
func same(a, b string) bool { return unsafe.StringData(a) == unsafe.StringData(b) }

// mapKey returns m's own copy of key k.
func mapKey[K comparable, V any](m map[K]V, k K) K {
	for mk := range m {
		if mk == k {
			return mk
		}
	}
	panic(fmt.Sprintf("no key %v", k))
}

func TestInternSharesStrings(t *testing.T) {
	in := newInterner()
	// Decoded objects own every string; DeepCopy gives the same picture.
	a, b := realisticPod(1).DeepCopy(), realisticPod(1+97*7).DeepCopy() // same app and image
	a.Namespace, b.Namespace = strings.Clone("shop"), strings.Clone("shop")
	b.Name, b.ResourceVersion = strings.Clone(a.Name), strings.Clone(a.ResourceVersion) // equal, yet not interned
	if same(a.Namespace, b.Namespace) {
		t.Fatal("test setup: namespaces already share bytes")
	}
	in.object(a, false)
	in.object(b, false)
	checks := []struct {
		what string
		x, y string
	}{
		{"namespace", a.Namespace, b.Namespace},
		{"label key", mapKey(a.Labels, "team"), mapKey(b.Labels, "team")},
		{"label value", a.Labels["app.kubernetes.io/name"], b.Labels["app.kubernetes.io/name"]},
		{"annotation key", mapKey(a.Annotations, "checksum/config"), mapKey(b.Annotations, "checksum/config")},
		{"owner kind", a.OwnerReferences[0].Kind, b.OwnerReferences[0].Kind},
		{"image", a.Spec.Containers[1].Image, b.Spec.Containers[1].Image},
		{"env name", a.Spec.Containers[0].Env[0].Name, b.Spec.Containers[0].Env[0].Name},
		{"resource name", string(mapKey(a.Spec.Containers[0].Resources.Requests, corev1.ResourceCPU)), string(mapKey(b.Spec.Containers[0].Resources.Requests, corev1.ResourceCPU))},
		{"pull policy", string(a.Spec.Containers[0].ImagePullPolicy), string(b.Spec.Containers[0].ImagePullPolicy)},
		{"node selector value", a.Spec.NodeSelector["kubernetes.io/os"], b.Spec.NodeSelector["kubernetes.io/os"]},
		{"phase", string(a.Status.Phase), string(b.Status.Phase)},
	}
	for _, c := range checks {
		if c.x != c.y {
			t.Fatalf("%s: test pods differ (%q, %q)", c.what, c.x, c.y)
		}
		if !same(c.x, c.y) {
			t.Errorf("%s %q not shared between pods", c.what, c.x)
		}
	}
	ptr := func(m any) uintptr { return reflect.ValueOf(m).Pointer() }
	if ptr(a.Spec.NodeSelector) != ptr(b.Spec.NodeSelector) || ptr(a.Spec.Containers[0].Resources.Requests) != ptr(b.Spec.Containers[1].Resources.Requests) {
		t.Error("equal node selectors or resource lists not shared")
	}
	if ptr(a.Labels) == ptr(b.Labels) || ptr(a.Spec.Containers[0].Resources.Requests) == ptr(a.Spec.Containers[0].Resources.Limits) {
		t.Error("different maps shared")
	}
	if same(a.Name, b.Name) || same(a.ResourceVersion, b.ResourceVersion) {
		t.Error("name or resourceVersion (unique per object) was interned")
	}
}

func TestInternerBounds(t *testing.T) {
	in := newInterner()
	long := strings.Repeat("x", internMaxLen+1)
	if got := in.s(long); !same(got, long) || len(in.m) != 0 {
		t.Errorf("a string over %d bytes was interned", internMaxLen)
	}
	first := in.s(strings.Clone("first"))
	for i := range internMaxEntries - 1 {
		in.s(fmt.Sprint(i))
	}
	if len(in.m) != internMaxEntries {
		t.Fatalf("table holds %d strings, want %d", len(in.m), internMaxEntries)
	}
	if !same(in.s(strings.Clone("first")), first) {
		t.Fatal("lookup of an interned string returned a new copy")
	}
	in.s("one more")
	if len(in.m) != 1 {
		t.Fatalf("full table was not started afresh: %d strings", len(in.m))
	}
}

func TestInternConcurrent(t *testing.T) {
	in := newInterner()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				p := realisticPod(g*1000 + i)
				in.object(p, false)
				if p.Namespace != "shop" {
					t.Errorf("namespace %q", p.Namespace)
				}
			}
		})
	}
	wg.Wait()
}
