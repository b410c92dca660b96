package cache

import (
	"reflect"

	corev1 "k8s.io/api/core/v1"
)

// Sharing pod spec parts by their wire bytes. Pods made from one template
// (a Deployment's, a StatefulSet's, a Job's) carry the same resource
// requests, probes, ports, environment, volume mounts, tolerations and
// affinity, byte for byte. Decoding each copy costs CPU (a resource list
// is two maps of quantities, each parsed from text) and heap, and the
// interner then throws most of it away. A podSpecSharer remembers the
// decoded value of each such part by its wire bytes: the first pod with a
// given part decodes and interns it, later pods get the same value without
// decoding anything. Everything else in the spec (names, images, command
// lines, volumes, the node name) is decoded as usual and interned.
//
// Sharing is interning of whole values and is safe for the same reason
// (see interner): cached objects are read-only, and the sharer runs only
// where interning does, after nothing but the default transform, which
// does not touch the spec. Every slice in a shared value has its capacity
// cut to its length, so an append by a careless reader copies instead of
// writing into another object's value.
//
// The result equals what corev1.PodSpec.Unmarshal makes of the same bytes
// (fuzzed in specshare_test.go). Where the sharer cannot follow the wire
// (a malformed message, an optional part that occurs twice, a repeated
// part split by other fields) it leaves those bytes to Unmarshal.

// Sharer bounds.
const (
	// shareMaxLen: parts longer than this are decoded for each pod.
	shareMaxLen = 4096
	// shareMaxEntries, shareMaxBytes: when the tables hold this many
	// parts, or keys of this many bytes in all, they start afresh
	// (objects keep what they have), so parts no pod uses any more do not
	// stay in memory for the informer's lifetime.
	shareMaxEntries = 1 << 13
	shareMaxBytes   = 4 << 20
)

// PodSpec and Container field numbers (k8s.io/api/core/v1 generated.proto).
const (
	specNodeSelector   = 7  // map<string, string>
	specOverhead       = 32 // map<string, Quantity>
	specContainers     = 2
	specInitContainers = 20
	specSecurity       = 14
	specAffinity       = 18
	specTolerations    = 22
	specDNSConfig      = 26
	specSpread         = 33

	ctrPorts     = 6
	ctrEnv       = 7
	ctrResources = 8
	ctrMounts    = 9
	ctrLiveness  = 10
	ctrReadiness = 11
	ctrLifecycle = 12
	ctrSecurity  = 15
	ctrStartup   = 22
)

// podSpecSharer is one informer's table of shared pod spec parts. It is
// used on the reflector's goroutine only (inside specReuse.decode), so its
// tables have no lock; in is locked around each interning.
type podSpecSharer struct {
	in    *interner
	n     int // entries in all tables
	bytes int // bytes of their keys

	resources   map[string]corev1.ResourceRequirements
	probes      map[string]*corev1.Probe
	ctrSecurity map[string]*corev1.SecurityContext
	lifecycles  map[string]*corev1.Lifecycle
	ports       map[string][]corev1.ContainerPort
	env         map[string][]corev1.EnvVar
	mounts      map[string][]corev1.VolumeMount
	tolerations map[string][]corev1.Toleration
	affinity    map[string]*corev1.Affinity
	podSecurity map[string]*corev1.PodSecurityContext
	dnsConfig   map[string]*corev1.PodDNSConfig
	spread      map[string][]corev1.TopologySpreadConstraint

	specFields []wireField // scratch: the fields of the spec being decoded
	ctrFields  []wireField // scratch: the fields of one of its containers
	rest       []byte      // scratch: the bytes left to Unmarshal
}

func newPodSpecSharer(in *interner) *podSpecSharer { return &podSpecSharer{in: in} }

// reset empties the tables.
func (s *podSpecSharer) reset() {
	*s = podSpecSharer{in: s.in, specFields: s.specFields, ctrFields: s.ctrFields, rest: s.rest} // n, bytes: 0
}

// wireField is one field of a message: its number and its bytes
// msg[start:end], tag included; the value starts at valStart.
type wireField struct {
	num                  uint64
	start, valStart, end int
}

// decode unmarshals b, the wire bytes of a PodSpec, into spec (zero),
// sharing what it can and interning the rest.
func (s *podSpecSharer) decode(spec *corev1.PodSpec, b []byte) error {
	fields, ok := splitFields(s.specFields[:0], b)
	s.specFields = fields[:0]
	if !ok {
		return s.decodeWhole(spec, b)
	}
	var nCtr, nInit int
	for _, f := range fields {
		if f.num == specNodeSelector || f.num == specOverhead {
			if !wellFormedMapEntry(b[f.start:f.end], b[f.valStart:f.end]) {
				return s.decodeWhole(spec, b)
			}
			continue
		}
		if f.num != specContainers && f.num != specInitContainers {
			continue
		}
		if !isBytesField(b[f.start:f.valStart]) {
			return s.decodeWhole(spec, b) // Unmarshal's error
		}
		if f.num == specContainers {
			nCtr++
		} else {
			nInit++
		}
	}
	var shared parts
	sharedParts(&shared, fields, b, &specShared)
	s.rest = appendRest(s.rest[:0], b, fields, &shared, func(num uint64) bool {
		return num == specContainers || num == specInitContainers
	})
	if err := spec.Unmarshal(s.rest); err != nil {
		return err
	}
	if cap(s.rest) > 1<<20 { // do not keep a huge spec's buffer around
		s.rest = nil
	}
	s.in.mu.Lock()
	s.in.podSpecOwn(spec)
	if !shared[specTolerations].shared() {
		s.in.tolerations(spec.Tolerations)
	}
	s.in.mu.Unlock()
	if nCtr > 0 {
		spec.Containers = make([]corev1.Container, nCtr)
	}
	if nInit > 0 {
		spec.InitContainers = make([]corev1.Container, nInit)
	}
	nCtr, nInit = 0, 0
	for _, f := range fields {
		var c *corev1.Container
		switch f.num {
		case specContainers:
			c = &spec.Containers[nCtr]
			nCtr++
		case specInitContainers:
			c = &spec.InitContainers[nInit]
			nInit++
		default:
			continue
		}
		if err := s.container(c, b[f.valStart:f.end]); err != nil {
			return err
		}
	}
	for num := range shared {
		if p := &shared[num]; p.shared() {
			if err := s.setSpecPart(spec, uint64(num), b[p.start:p.end], b[p.valStart:p.end]); err != nil {
				return err
			}
		}
	}
	return nil
}

// wellFormedMapEntry reports whether a PodSpec map field (tag and value
// in field, its value entry) is length-delimited and holds only
// length-delimited keys and values. The generated Unmarshal reads a
// malformed entry on into the fields after it, which the split bytes
// would not reproduce.
func wellFormedMapEntry(field, entry []byte) bool {
	if !isBytesField(field) {
		return false
	}
	err := eachField(entry, func(num uint64, wt uint8, _ []byte) error {
		if (num != 1 && num != 2) || wt != wireBytes {
			return errWire
		}
		return nil
	})
	return err == nil
}

// decodeWhole is decode for bytes the sharer cannot follow: Unmarshal,
// then interning as for any other object.
func (s *podSpecSharer) decodeWhole(spec *corev1.PodSpec, b []byte) error {
	if err := spec.Unmarshal(b); err != nil {
		return err
	}
	s.in.mu.Lock()
	s.in.podSpec(spec)
	s.in.mu.Unlock()
	return nil
}

// maxSharedField bounds the field numbers of shareable parts.
const maxSharedField = 48

// shareKind says whether a field is a shareable part, and how it occurs.
type shareKind uint8

const (
	notShared shareKind = iota
	sharedOnce
	sharedRepeated
)

// specShared and ctrShared: the shareable parts of a PodSpec and of a
// Container, by field number.
var specShared, ctrShared [maxSharedField]shareKind

func init() {
	for _, n := range []int{specSecurity, specAffinity, specDNSConfig} {
		specShared[n] = sharedOnce
	}
	for _, n := range []int{specTolerations, specSpread} {
		specShared[n] = sharedRepeated
	}
	for _, n := range []int{ctrResources, ctrLiveness, ctrReadiness, ctrLifecycle, ctrSecurity, ctrStartup} {
		ctrShared[n] = sharedOnce
	}
	for _, n := range []int{ctrPorts, ctrEnv, ctrMounts} {
		ctrShared[n] = sharedRepeated
	}
}

// parts holds where each shareable part of a message lies, by field number.
type parts [maxSharedField]part

// part is where one shareable part lies in its message: msg[start:end]
// holds all its occurrences (tags included), msg[valStart:end] the value
// of a single one. n counts the occurrences; ok is false when the part
// cannot be shared (it is then decoded with the rest).
type part struct {
	start, valStart, end int
	n                    int
	ok                   bool
}

// shared reports whether p is present and shared.
func (p *part) shared() bool { return p.n > 0 && p.ok }

// sharedParts finds the shareable parts (kinds: by field number) among
// fields. A part can be shared when every occurrence is length-delimited,
// an optional part occurs once, a repeated part's occurrences are
// adjacent, and it is no longer than shareMaxLen.
func sharedParts(out *parts, fields []wireField, msg []byte, kinds *[maxSharedField]shareKind) {
	for _, f := range fields {
		if f.num >= maxSharedField || kinds[f.num] == notShared {
			continue
		}
		p := &out[f.num]
		switch {
		case p.n == 0:
			*p = part{start: f.start, valStart: f.valStart, end: f.end, n: 1, ok: true}
		case kinds[f.num] == sharedRepeated && p.end == f.start:
			p.end, p.n = f.end, p.n+1
		default:
			p.n++
			p.ok = false
		}
		if !isBytesField(msg[f.start:f.valStart]) || p.end-p.start > shareMaxLen {
			p.ok = false
		}
	}
}

// isBytesField reports whether the tag (and length prefix) in hdr is of
// a length-delimited field.
func isBytesField(hdr []byte) bool {
	_, wt, n := readTag(hdr)
	return n > 0 && wt == wireBytes
}

// appendRest appends to dst every field of msg that is neither a shared
// part nor skipped.
func appendRest(dst, msg []byte, fields []wireField, shared *parts, skip func(uint64) bool) []byte {
	for _, f := range fields {
		if (f.num < maxSharedField && shared[f.num].shared()) || skip(f.num) {
			continue
		}
		dst = append(dst, msg[f.start:f.end]...)
	}
	return dst
}

// splitFields appends msg's fields to dst; ok is false if msg is
// malformed (or uses groups, which Unmarshal skips and this does not).
func splitFields(dst []wireField, msg []byte) ([]wireField, bool) {
	for i := 0; i < len(msg); {
		num, wt, n := readTag(msg[i:])
		if n <= 0 {
			return dst, false
		}
		vs, end, err := fieldExtent(msg, i+n, wt)
		if err != nil {
			return dst, false
		}
		dst = append(dst, wireField{num: num, start: i, valStart: vs, end: end})
		i = end
	}
	return dst, true
}

// container unmarshals b, a Container's wire bytes, into c (zero).
func (s *podSpecSharer) container(c *corev1.Container, b []byte) error {
	fields, ok := splitFields(s.ctrFields[:0], b)
	s.ctrFields = fields[:0]
	if !ok {
		if err := c.Unmarshal(b); err != nil {
			return err
		}
		s.in.mu.Lock()
		s.in.container(c)
		s.in.mu.Unlock()
		return nil
	}
	var shared parts
	sharedParts(&shared, fields, b, &ctrShared)
	s.rest = appendRest(s.rest[:0], b, fields, &shared, func(uint64) bool { return false })
	if err := c.Unmarshal(s.rest); err != nil {
		return err
	}
	// Intern what was decoded here, before the shared parts are set (they
	// were interned when first decoded, and other objects read them now).
	s.in.mu.Lock()
	s.in.containerOwn(c)
	s.in.ports(c.Ports)
	s.in.env(c.Env)
	s.in.resources(&c.Resources)
	s.in.mounts(c.VolumeMounts)
	s.in.probe(c.LivenessProbe)
	s.in.probe(c.ReadinessProbe)
	s.in.probe(c.StartupProbe)
	s.in.mu.Unlock()
	for num := range shared {
		if p := &shared[num]; p.shared() {
			if err := s.setContainerPart(c, uint64(num), b[p.start:p.end], b[p.valStart:p.end]); err != nil {
				return err
			}
		}
	}
	return nil
}

// setSpecPart sets spec's shared part num from all (its occurrences, tags
// included; the table key) and one (the value of a single occurrence).
func (s *podSpecSharer) setSpecPart(spec *corev1.PodSpec, num uint64, all, one []byte) error {
	var err error
	switch num {
	case specSecurity:
		spec.SecurityContext, err = share(s, &s.podSecurity, one, decodeMsg[corev1.PodSecurityContext, *corev1.PodSecurityContext])
	case specAffinity:
		spec.Affinity, err = share(s, &s.affinity, one, decodeMsg[corev1.Affinity, *corev1.Affinity])
	case specDNSConfig:
		spec.DNSConfig, err = share(s, &s.dnsConfig, one, decodeMsg[corev1.PodDNSConfig, *corev1.PodDNSConfig])
	case specTolerations:
		spec.Tolerations, err = share(s, &s.tolerations, all, internedList(s, decodeList[corev1.Toleration, *corev1.Toleration], func(ts []corev1.Toleration) {
			s.in.tolerations(ts)
		}))
	case specSpread:
		spec.TopologySpreadConstraints, err = share(s, &s.spread, all, decodeList[corev1.TopologySpreadConstraint, *corev1.TopologySpreadConstraint])
	}
	return err
}

// setContainerPart is setSpecPart for a container's parts.
func (s *podSpecSharer) setContainerPart(c *corev1.Container, num uint64, all, one []byte) error {
	var err error
	switch num {
	case ctrResources:
		c.Resources, err = share(s, &s.resources, one, func(b []byte) (corev1.ResourceRequirements, error) {
			var r corev1.ResourceRequirements
			if err := r.Unmarshal(b); err != nil {
				return r, err
			}
			s.in.mu.Lock()
			s.in.resources(&r)
			s.in.mu.Unlock()
			return r, nil
		})
	case ctrLiveness, ctrReadiness, ctrStartup:
		var p *corev1.Probe
		p, err = share(s, &s.probes, one, func(b []byte) (*corev1.Probe, error) {
			p, err := decodeMsg[corev1.Probe, *corev1.Probe](b)
			if err == nil {
				s.in.mu.Lock()
				s.in.probe(p)
				s.in.mu.Unlock()
			}
			return p, err
		})
		switch num {
		case ctrLiveness:
			c.LivenessProbe = p
		case ctrReadiness:
			c.ReadinessProbe = p
		default:
			c.StartupProbe = p
		}
	case ctrLifecycle:
		c.Lifecycle, err = share(s, &s.lifecycles, one, decodeMsg[corev1.Lifecycle, *corev1.Lifecycle])
	case ctrSecurity:
		c.SecurityContext, err = share(s, &s.ctrSecurity, one, decodeMsg[corev1.SecurityContext, *corev1.SecurityContext])
	case ctrPorts:
		c.Ports, err = share(s, &s.ports, all, internedList(s, decodeList[corev1.ContainerPort, *corev1.ContainerPort], func(ps []corev1.ContainerPort) {
			s.in.ports(ps)
		}))
	case ctrEnv:
		c.Env, err = share(s, &s.env, all, internedList(s, decodeList[corev1.EnvVar, *corev1.EnvVar], func(es []corev1.EnvVar) {
			s.in.env(es)
		}))
	case ctrMounts:
		c.VolumeMounts, err = share(s, &s.mounts, all, internedList(s, decodeList[corev1.VolumeMount, *corev1.VolumeMount], func(ms []corev1.VolumeMount) {
			s.in.mounts(ms)
		}))
	}
	return err
}

// share returns the value tab holds for key, or decodes key, keeps the
// result in tab (unless key is too long) and returns it.
func share[V any](s *podSpecSharer, tab *map[string]V, key []byte, decode func([]byte) (V, error)) (V, error) {
	if v, ok := (*tab)[string(key)]; ok {
		return v, nil
	}
	v, err := decode(key)
	if err != nil || len(key) > shareMaxLen {
		return v, err
	}
	if s.n >= shareMaxEntries || s.bytes+len(key) > shareMaxBytes {
		s.reset()
	}
	if *tab == nil {
		*tab = make(map[string]V)
	}
	clipSlices(reflect.ValueOf(&v).Elem())
	(*tab)[string(key)] = v
	s.n++
	s.bytes += len(key)
	return v, nil
}

// clipSlices cuts the capacity of every slice reachable from v (exported
// fields, pointers, slice elements) to its length, so that an append to
// a shared value copies instead of writing into other objects' arrays.
// Map values are not reached (not addressable); no shared part has a
// slice inside a map value.
func clipSlices(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			clipSlices(v.Elem())
		}
	case reflect.Struct:
		t := v.Type()
		for i := range v.NumField() {
			if t.Field(i).IsExported() {
				clipSlices(v.Field(i))
			}
		}
	case reflect.Slice:
		n := v.Len()
		if v.Cap() != n && v.CanSet() {
			v.Set(v.Slice3(0, n, n))
		}
		for i := range n {
			clipSlices(v.Index(i))
		}
	}
}

// unmarshaler is a pointer to a generated k8s.io/api message.
type unmarshaler[M any] interface {
	*M
	Unmarshal([]byte) error
}

// decodeMsg unmarshals b into a new M.
func decodeMsg[M any, P unmarshaler[M]](b []byte) (*M, error) {
	m := new(M)
	if err := P(m).Unmarshal(b); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeList unmarshals all, the adjacent occurrences of a repeated field,
// into a slice whose capacity is its length.
func decodeList[M any, P unmarshaler[M]](all []byte) ([]M, error) {
	n := 0
	if err := eachField(all, func(uint64, uint8, []byte) error { n++; return nil }); err != nil {
		return nil, err
	}
	out := make([]M, n)
	i := 0
	err := eachField(all, func(_ uint64, _ uint8, v []byte) error {
		err := P(&out[i]).Unmarshal(v)
		i++
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// internedList wraps a list decoder so that a decoded list is interned
// with intern (under the interner's lock) before it is shared.
func internedList[M any](s *podSpecSharer, decode func([]byte) ([]M, error), intern func([]M)) func([]byte) ([]M, error) {
	return func(b []byte) ([]M, error) {
		l, err := decode(b)
		if err == nil {
			s.in.mu.Lock()
			intern(l)
			s.in.mu.Unlock()
		}
		return l, err
	}
}
