package cache

import (
	"hash/maphash"
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Interning: a decoder allocates every string of every object anew, yet most
// of a cache's strings are the same across objects — label and annotation
// keys, namespaces, owner kinds, images, container and volume names, enum
// values like "IfNotPresent". An informer passes each decoded object through
// its interner, which replaces such strings by one shared copy; the decoded
// copies become garbage. Objects stay ordinary typed objects: Go strings are
// immutable, so sharing their bytes is invisible to readers.

// Interner bounds.
const (
	// internMaxLen: longer strings are kept as decoded (long values rarely
	// repeat, and a table of them would cost more than it saves).
	internMaxLen = 128
	// internMaxEntries: when the table holds this many strings it starts
	// afresh (objects keep the strings they have), so strings that stopped
	// repeating do not stay in memory for the informer's lifetime.
	internMaxEntries = 1 << 16
)

// interner maps a string to its shared copy, and a small map (labels,
// annotations, node selector, resource lists) to an equal map another
// object already holds. Safe for concurrent use; one lock per object, not
// per string.
//
// Shared maps are why interning runs after Transform: from then on the
// object is read-only, and a reader that writes into a cached object's map
// (never allowed) would now change other objects too. Spec reuse (see
// specReuse) shares a cached object's whole spec with its next version
// under the same rule.
type interner struct {
	mu        sync.Mutex
	m         map[string]string
	maps      map[uint64][]any // content hash → maps (and unstructured slices) with that hash
	nmaps     int
	boxes     map[string]any // unstructured string values, boxed once (see internu.go)
	seenStrs  *seenStrings   // unstructured objects only (see internu.go)
	seenTrees *seenTrees
	treeBytes int // size of the unstructured subtrees in maps (see shareTree)
	seed      maphash.Seed
}

func newInterner() *interner {
	return &interner{m: make(map[string]string, 256), maps: make(map[uint64][]any, 64), boxes: make(map[string]any, 64), seed: maphash.MakeSeed()}
}

// s returns the shared copy of v. Called with mu held.
func (in *interner) s(v string) string {
	if len(v) == 0 || len(v) > internMaxLen {
		return v
	}
	if c, ok := in.m[v]; ok {
		return c
	}
	in.makeRoom()
	in.m[v] = v
	return v
}

// makeRoom starts the tables afresh when they are full.
func (in *interner) makeRoom() {
	if len(in.m)+in.nmaps+len(in.boxes) >= internMaxEntries {
		in.clear()
	}
}

// clear starts the tables afresh (objects keep what they hold).
func (in *interner) clear() {
	in.m = make(map[string]string, 256)
	in.maps = make(map[uint64][]any, 64)
	in.nmaps = 0
	in.boxes = make(map[string]any, 64)
	in.treeBytes = 0
}

// shareMap returns a map equal to m that an earlier object holds, or m
// with its strings interned (then kept for later objects). Maps of more
// than internMaxMapLen entries are only interned.
func shareMap[K ~string, V comparable](in *interner, m map[K]V, internValue func(V) V) map[K]V {
	if len(m) == 0 {
		return m
	}
	if len(m) > internMaxMapLen {
		return internEntries(in, m, internValue)
	}
	var h uint64
	for k, v := range m {
		// Order-independent: a sum of per-entry hashes.
		h += maphash.String(in.seed, string(k))*0x9e3779b97f4a7c15 ^ maphash.Comparable(in.seed, v)
	}
	for _, c := range in.maps[h] {
		if cm, ok := c.(map[K]V); ok && maps.Equal(cm, m) {
			return cm
		}
	}
	m = internEntries(in, m, internValue)
	in.makeRoom()
	in.maps[h] = append(in.maps[h], m)
	in.nmaps++
	return m
}

// internEntries interns m's keys (and values, with internValue) and
// returns the map: m, changed in place (assigning to an existing key
// replaces the map's copy of a string key, so the decoded key becomes
// garbage too), or for a map that fills its group (see groupFull) a new
// one.
func internEntries[K ~string, V any](in *interner, m map[K]V, internValue func(V) V) map[K]V {
	out := writable(m)
	for k, v := range m {
		out[internAs(in, k)] = internValue(v)
	}
	return out
}

// writable is where rewriting m's entries goes: m itself, or a new empty
// map of the same size if writing to m would grow it (see groupFull).
func writable[K comparable, V any](m map[K]V) map[K]V {
	if groupFull(len(m)) {
		return make(map[K]V, len(m))
	}
	return m
}

// groupSlots is how many entries a Go map keeps in its one group before it
// becomes a table (abi.SwissMapGroupSlots).
const groupSlots = 8

// groupFull reports whether a map of n entries fills its single group. Any
// assignment to such a map, even to a key it already has, first grows it
// into a table of twice the size (the runtime checks for room before it
// looks for the key; TestGroupFullWriteGrows shows it): 336 bytes become
// 664. Interning therefore copies such a map into a new one instead of
// writing to it.
func groupFull(n int) bool { return n == groupSlots }

// internMaxMapLen: larger maps are rarely equal across objects.
const internMaxMapLen = 32

func (in *interner) strMap(m map[string]string) map[string]string {
	return shareMap(in, m, in.s)
}

func internAs[S ~string](in *interner, v S) S { return S(in.s(string(v))) }

func (in *interner) ptr(p *string) {
	if p != nil {
		*p = in.s(*p)
	}
}

func (in *interner) slice(vs []string) {
	for i := range vs {
		vs[i] = in.s(vs[i])
	}
}

// object interns the strings of obj that repeat across objects: all of a
// Pod's, the ObjectMeta of any other type that embeds one, and the whole
// of an unstructured object, equal subtrees included (see internu.go). With
// sharedSpec, obj's Spec is shared with a cached object (see specReuse):
// it was interned then, and is read-only now.
func (in *interner) object(obj any, sharedSpec bool) {
	switch o := obj.(type) {
	case *corev1.Pod:
		in.mu.Lock()
		in.meta(&o.ObjectMeta)
		if !sharedSpec {
			in.podSpec(&o.Spec)
		}
		in.podStatus(&o.Status)
		in.mu.Unlock()
	case *unstructured.Unstructured:
		in.mu.Lock()
		o.Object = in.unstructured(o.Object)
		in.mu.Unlock()
	case metav1.ObjectMetaAccessor:
		if m, ok := o.GetObjectMeta().(*metav1.ObjectMeta); ok && m != nil {
			in.mu.Lock()
			in.meta(m)
			in.mu.Unlock()
		}
	}
}

// meta interns what repeats in ObjectMeta: not the name, UID or
// resourceVersion, which are unique per object.
func (in *interner) meta(m *metav1.ObjectMeta) {
	m.Namespace = in.s(m.Namespace)
	m.GenerateName = in.s(m.GenerateName)
	m.Labels = in.strMap(m.Labels)
	m.Annotations = in.strMap(m.Annotations)
	for i := range m.OwnerReferences {
		r := &m.OwnerReferences[i]
		r.APIVersion = in.s(r.APIVersion)
		r.Kind = in.s(r.Kind)
		r.Name = in.s(r.Name)
		r.UID = internAs(in, r.UID)
	}
	in.slice(m.Finalizers)
	for i := range m.ManagedFields {
		f := &m.ManagedFields[i]
		f.Manager = in.s(f.Manager)
		f.Operation = internAs(in, f.Operation)
		f.APIVersion = in.s(f.APIVersion)
		f.FieldsType = in.s(f.FieldsType)
		f.Subresource = in.s(f.Subresource)
	}
}

func (in *interner) podSpec(s *corev1.PodSpec) {
	for i := range s.InitContainers {
		in.container(&s.InitContainers[i])
	}
	for i := range s.Containers {
		in.container(&s.Containers[i])
	}
	in.tolerations(s.Tolerations)
	in.podSpecOwn(s)
}

// podSpecOwn interns what podSpec does except containers and tolerations
// (the parts a podSpecSharer may share between objects).
func (in *interner) podSpecOwn(s *corev1.PodSpec) {
	for i := range s.Volumes {
		in.volume(&s.Volumes[i])
	}
	s.RestartPolicy = internAs(in, s.RestartPolicy)
	s.DNSPolicy = internAs(in, s.DNSPolicy)
	s.NodeSelector = in.strMap(s.NodeSelector)
	s.ServiceAccountName = in.s(s.ServiceAccountName)
	s.DeprecatedServiceAccount = in.s(s.DeprecatedServiceAccount)
	s.NodeName = in.s(s.NodeName)
	s.SchedulerName = in.s(s.SchedulerName)
	s.PriorityClassName = in.s(s.PriorityClassName)
	s.Subdomain = in.s(s.Subdomain)
	for i := range s.ImagePullSecrets {
		s.ImagePullSecrets[i].Name = in.s(s.ImagePullSecrets[i].Name)
	}
	in.ptr(s.RuntimeClassName)
	if s.PreemptionPolicy != nil {
		*s.PreemptionPolicy = internAs(in, *s.PreemptionPolicy)
	}
}

func (in *interner) tolerations(ts []corev1.Toleration) {
	for i := range ts {
		t := &ts[i]
		t.Key = in.s(t.Key)
		t.Operator = internAs(in, t.Operator)
		t.Value = in.s(t.Value)
		t.Effect = internAs(in, t.Effect)
	}
}

func (in *interner) volume(v *corev1.Volume) {
	v.Name = in.s(v.Name)
	if c := v.ConfigMap; c != nil {
		c.Name = in.s(c.Name)
		in.keyPaths(c.Items)
	}
	if s := v.Secret; s != nil {
		s.SecretName = in.s(s.SecretName)
		in.keyPaths(s.Items)
	}
	if c := v.PersistentVolumeClaim; c != nil {
		c.ClaimName = in.s(c.ClaimName)
	}
	if h := v.HostPath; h != nil {
		h.Path = in.s(h.Path)
	}
	if e := v.EmptyDir; e != nil {
		e.Medium = internAs(in, e.Medium)
	}
	if d := v.DownwardAPI; d != nil {
		in.downwardAPI(d.Items)
	}
	if p := v.Projected; p != nil {
		for i := range p.Sources {
			src := &p.Sources[i]
			if t := src.ServiceAccountToken; t != nil {
				t.Audience = in.s(t.Audience)
				t.Path = in.s(t.Path)
			}
			if c := src.ConfigMap; c != nil {
				c.Name = in.s(c.Name)
				in.keyPaths(c.Items)
			}
			if s := src.Secret; s != nil {
				s.Name = in.s(s.Name)
				in.keyPaths(s.Items)
			}
			if d := src.DownwardAPI; d != nil {
				in.downwardAPI(d.Items)
			}
		}
	}
}

func (in *interner) keyPaths(items []corev1.KeyToPath) {
	for i := range items {
		items[i].Key = in.s(items[i].Key)
		items[i].Path = in.s(items[i].Path)
	}
}

func (in *interner) downwardAPI(items []corev1.DownwardAPIVolumeFile) {
	for i := range items {
		f := &items[i]
		f.Path = in.s(f.Path)
		in.fieldRef(f.FieldRef)
		in.resourceFieldRef(f.ResourceFieldRef)
	}
}

func (in *interner) fieldRef(r *corev1.ObjectFieldSelector) {
	if r != nil {
		r.APIVersion = in.s(r.APIVersion)
		r.FieldPath = in.s(r.FieldPath)
	}
}

func (in *interner) resourceFieldRef(r *corev1.ResourceFieldSelector) {
	if r != nil {
		r.ContainerName = in.s(r.ContainerName)
		r.Resource = in.s(r.Resource)
	}
}

func (in *interner) container(c *corev1.Container) {
	in.containerOwn(c)
	in.ports(c.Ports)
	in.env(c.Env)
	in.resources(&c.Resources)
	in.mounts(c.VolumeMounts)
	in.probe(c.LivenessProbe)
	in.probe(c.ReadinessProbe)
	in.probe(c.StartupProbe)
}

// containerOwn interns what container does except ports, env, resources,
// volume mounts and probes (the parts a podSpecSharer may share between
// objects).
func (in *interner) containerOwn(c *corev1.Container) {
	c.Name = in.s(c.Name)
	c.Image = in.s(c.Image)
	in.slice(c.Command)
	in.slice(c.Args)
	c.WorkingDir = in.s(c.WorkingDir)
	for i := range c.EnvFrom {
		e := &c.EnvFrom[i]
		e.Prefix = in.s(e.Prefix)
		if r := e.ConfigMapRef; r != nil {
			r.Name = in.s(r.Name)
		}
		if r := e.SecretRef; r != nil {
			r.Name = in.s(r.Name)
		}
	}
	c.TerminationMessagePath = in.s(c.TerminationMessagePath)
	c.TerminationMessagePolicy = internAs(in, c.TerminationMessagePolicy)
	c.ImagePullPolicy = internAs(in, c.ImagePullPolicy)
}

func (in *interner) ports(ps []corev1.ContainerPort) {
	for i := range ps {
		p := &ps[i]
		p.Name = in.s(p.Name)
		p.Protocol = internAs(in, p.Protocol)
		p.HostIP = in.s(p.HostIP)
	}
}

func (in *interner) env(es []corev1.EnvVar) {
	for i := range es {
		e := &es[i]
		e.Name = in.s(e.Name)
		e.Value = in.s(e.Value)
		if f := e.ValueFrom; f != nil {
			in.fieldRef(f.FieldRef)
			in.resourceFieldRef(f.ResourceFieldRef)
			if r := f.ConfigMapKeyRef; r != nil {
				r.Name = in.s(r.Name)
				r.Key = in.s(r.Key)
			}
			if r := f.SecretKeyRef; r != nil {
				r.Name = in.s(r.Name)
				r.Key = in.s(r.Key)
			}
		}
	}
}

func (in *interner) mounts(ms []corev1.VolumeMount) {
	for i := range ms {
		m := &ms[i]
		m.Name = in.s(m.Name)
		m.MountPath = in.s(m.MountPath)
		m.SubPath = in.s(m.SubPath)
	}
}

// resources shares equal resource lists (a map of 2 quantities costs about
// 600 bytes) and interns resource names.
func (in *interner) resources(r *corev1.ResourceRequirements) {
	keep := func(q resource.Quantity) resource.Quantity { return q }
	r.Limits = shareMap(in, r.Limits, keep)
	r.Requests = shareMap(in, r.Requests, keep)
}

func (in *interner) probe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if e := p.Exec; e != nil {
		in.slice(e.Command)
	}
	if g := p.HTTPGet; g != nil {
		g.Path = in.s(g.Path)
		g.Host = in.s(g.Host)
		g.Scheme = internAs(in, g.Scheme)
		g.Port.StrVal = in.s(g.Port.StrVal)
		for i := range g.HTTPHeaders {
			g.HTTPHeaders[i].Name = in.s(g.HTTPHeaders[i].Name)
			g.HTTPHeaders[i].Value = in.s(g.HTTPHeaders[i].Value)
		}
	}
	if t := p.TCPSocket; t != nil {
		t.Host = in.s(t.Host)
		t.Port.StrVal = in.s(t.Port.StrVal)
	}
}

func (in *interner) podStatus(s *corev1.PodStatus) {
	s.Phase = internAs(in, s.Phase)
	for i := range s.Conditions {
		c := &s.Conditions[i]
		c.Type = internAs(in, c.Type)
		c.Status = internAs(in, c.Status)
		c.Reason = in.s(c.Reason)
		c.Message = in.s(c.Message)
	}
	s.Reason = in.s(s.Reason)
	s.NominatedNodeName = in.s(s.NominatedNodeName)
	s.HostIP = in.s(s.HostIP)
	for i := range s.HostIPs {
		s.HostIPs[i].IP = in.s(s.HostIPs[i].IP)
	}
	s.QOSClass = internAs(in, s.QOSClass)
	for _, cs := range [][]corev1.ContainerStatus{s.InitContainerStatuses, s.ContainerStatuses} {
		for i := range cs {
			c := &cs[i]
			c.Name = in.s(c.Name)
			c.Image = in.s(c.Image)
			c.ImageID = in.s(c.ImageID)
			in.containerState(&c.State)
			in.containerState(&c.LastTerminationState)
		}
	}
}

func (in *interner) containerState(s *corev1.ContainerState) {
	if w := s.Waiting; w != nil {
		w.Reason = in.s(w.Reason)
		w.Message = in.s(w.Message)
	}
	if t := s.Terminated; t != nil {
		t.Reason = in.s(t.Reason)
		t.Message = in.s(t.Message)
	}
}
