package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffkit/skiff/builder"
	"github.com/skiffkit/skiff/cache"
	"github.com/skiffkit/skiff/manager"
	"github.com/skiffkit/skiff/shard"
	"github.com/skiffkit/skiff/testenv"
)

// TestShardedClientSideFilter: against a control plane without the
// ShardedListAndWatch gate the replicas detect that the server does not
// shard, split the keys exactly as with it, and each caches only its own
// part — but each reads every object and every event (the documented
// cost): after a change of every object, every replica has read at least
// the bytes of all the changes.
func TestShardedClientSideFilter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	plain, err := testenv.Start(ctx, testenv.Options{Controllers: "none"})
	if err != nil {
		t.Fatalf("control plane without the gate: %v", err)
	}
	t.Cleanup(func() { // after the namespace's cleanup
		if err := plain.Stop(); err != nil {
			t.Errorf("stop the control plane: %v", err)
		}
	})
	ns := testenv.Namespace(t, plain.Config())
	const n = 300
	objs := createCMsIn(t, plain.Config(), ns, n)
	f := newFleet(t, ns)
	f.cfg = plain.Config()
	defer f.shutdown()
	for _, id := range []string{"r1", "r2", "r3"} {
		f.start(id)
	}
	testenv.Eventually(t, 30*time.Second, "3 replicas settled", f.settled)
	settledAt := time.Now()
	for _, m := range f.members() {
		if m.mgr.State().Shard.ServerSide {
			t.Fatalf("%s: the control plane runs without ShardedListAndWatch, but the manager detected server-side sharding", m.id)
		}
	}
	f.reconciledByOwners(objs, settledAt, 30*time.Second)
	total := 0
	for _, m := range f.members() {
		got := m.inf.Store().Len()
		total += got
		t.Logf("%s caches %d of %d ConfigMaps (filtered on the client)", m.id, got, n)
		if frac := m.mgr.State().Shard.OwnedFraction; !withinShare(got, n, frac) {
			t.Errorf("%s caches %d of %d objects owning %.3f of the space, want about that share (≤ 0.4)", m.id, got, n, frac)
		}
		for _, cm := range m.inf.Lister().List(nil) {
			if owner, _ := f.ownerOf(cm); owner != m.id {
				t.Errorf("%s caches %s, owned by %s", m.id, cm.Name, owner)
			}
		}
	}
	if total != n {
		t.Errorf("the replicas cache %d objects together, want %d (each exactly once)", total, n)
	}

	for _, m := range f.members() {
		m.bytes.Store(0)
	}
	const value = 512
	cs := clientset(t, plain.Config())
	for _, o := range objs {
		patch := []byte(`{"data":{"v":"` + strings.Repeat("x", value) + `"}}`)
		if _, err := cs.CoreV1().ConfigMaps(ns).Patch(context.Background(), o.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "every replica's cache has the change", func() (bool, error) {
		for _, m := range f.members() {
			for _, cm := range m.inf.Lister().List(nil) {
				if cm.Data["v"] == "" {
					return false, fmt.Errorf("%s: %s not updated", m.id, cm.Name)
				}
			}
		}
		return true, nil
	})
	// Every replica's watch carried every change (n × value bytes at
	// least), though it keeps a third of them.
	testenv.Eventually(t, 30*time.Second, "every replica read every change", func() (bool, error) {
		for _, m := range f.members() {
			if b := m.bytes.Load(); b < n*value {
				return false, fmt.Errorf("%s read %d bytes, want ≥ %d", m.id, b, n*value)
			}
		}
		return true, nil
	})
	for _, m := range f.members() {
		t.Logf("%s read %d watch bytes for %d changes (%.0f B/change; it keeps %d objects)", m.id, m.bytes.Load(), n, float64(m.bytes.Load())/n, m.inf.Store().Len())
	}
	if f.overlaps.Load() > 0 {
		t.Errorf("%d overlapping reconciles", f.overlaps.Load())
	}
}

// TestShardByNamespace: with builder.ShardBy(shard.Namespace) every
// namespace has one owner, which reconciles all its keys and is the only
// replica caching its objects; the manager's /metrics shows the
// skiff_shard_* series and /debug/skiff the shard section, both agreeing
// with the replica's assignment.
func TestShardByNamespace(t *testing.T) {
	leases := testenv.Namespace(t, env.Config())
	label := "byns=" + leases // unique to this test
	cs := clientset(t, env.Config())
	var objs []*corev1.ConfigMap
	for range 9 {
		ns := testenv.Namespace(t, env.Config())
		for i := range 5 {
			cm, err := cs.CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
				Name: fmt.Sprintf("cm-%d", i), Labels: map[string]string{"byns": leases}}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			objs = append(objs, cm)
		}
	}
	f := newFleet(t, leases)
	f.field = shard.Namespace
	f.scope = &cache.Scope{LabelSelector: label}
	f.extra = []builder.Option{builder.ShardBy(shard.Namespace)}
	defer f.shutdown()
	for _, id := range []string{"r1", "r2", "r3"} {
		f.start(id)
	}
	testenv.Eventually(t, 30*time.Second, "3 replicas settled", f.settled)
	f.reconciledByOwners(objs, time.Now(), 30*time.Second)
	owners := map[string]string{} // namespace → owner
	for _, o := range objs {
		owner, _ := f.ownerOf(o)
		if prev, ok := owners[o.Namespace]; ok && prev != owner {
			t.Fatalf("namespace %s has two owners, %s and %s", o.Namespace, prev, owner)
		}
		owners[o.Namespace] = owner
	}
	total := 0
	for _, m := range f.members() {
		for _, cm := range m.inf.Lister().List(nil) {
			total++
			if owners[cm.Namespace] != m.id {
				t.Errorf("%s caches %s/%s, whose namespace %s owns", m.id, cm.Namespace, cm.Name, owners[cm.Namespace])
			}
		}
	}
	if total != len(objs) {
		t.Errorf("the replicas cache %d objects together, want %d", total, len(objs))
	}
	t.Logf("namespace owners: %v", owners)

	for _, m := range f.members() {
		checkShardMetrics(t, m)
		checkShardDebug(t, m)
	}
	if f.overlaps.Load() > 0 {
		t.Errorf("%d overlapping reconciles", f.overlaps.Load())
	}
}

// checkShardMetrics scrapes m's /metrics: the skiff_shard_* gauges match
// its assignment.
func checkShardMetrics(t *testing.T, m *member) {
	t.Helper()
	rr := httptest.NewRecorder()
	m.mgr.Handler().ServeHTTP(rr, httptest.NewRequest("GET", "/metrics", nil))
	series := map[string]float64{}
	sc := bufio.NewScanner(rr.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "skiff_shard_") {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		v, err := strconv.ParseFloat(value, 64)
		if !ok || err != nil {
			t.Fatalf("%s: bad metrics line %q", m.id, line)
		}
		series[name] = v
	}
	st := m.mgr.State().Shard
	labels := fmt.Sprintf(`{group="cm",identity="%s"}`, m.id)
	for name, want := range map[string]float64{
		"skiff_shard_owned_fraction": st.OwnedFraction,
		"skiff_shard_members":        3,
		"skiff_shard_active":         1,
	} {
		got, ok := series[name+labels]
		if !ok || math.Abs(got-want) > 1e-9 {
			t.Errorf("%s: %s%s = %v (present %v), want %v; scraped %v", m.id, name, labels, got, ok, want, series)
		}
	}
	if got := series["skiff_shard_handoffs_total"+labels]; got < 1 {
		t.Errorf("%s: skiff_shard_handoffs_total = %v, want ≥ 1", m.id, got)
	}
	if _, ok := series[`skiff_shard_dropped_keys_total{controller="cm"}`]; !ok {
		t.Logf("%s: no skiff_shard_dropped_keys_total series (no key dropped yet)", m.id)
	}
}

// checkShardDebug reads m's /debug/skiff as JSON and HTML: the shard
// section shows the group, identity, server-side sharding, an active ring
// of three and this replica's ranges.
func checkShardDebug(t *testing.T, m *member) {
	t.Helper()
	h := m.mgr.Handler()
	req := httptest.NewRequest("GET", "/debug/skiff?format=json", nil)
	req.Host = "127.0.0.1"
	rr := httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	var page struct {
		Shard *manager.ShardState `json:"shard"`
	}
	if err := json.NewDecoder(rr.Body).Decode(&page); err != nil || page.Shard == nil {
		t.Fatalf("%s: /debug/skiff?format=json: status %d, err %v, shard %v", m.id, rr.Code, err, page.Shard)
	}
	s := page.Shard
	a := m.mgr.Shard().Replica().Assignment()
	if s.Group != "cm" || s.Identity != m.id || !s.ServerSide || !s.Active || len(s.Members) != 3 ||
		len(s.Ranges) != len(a.Ranges) || math.Abs(s.OwnedFraction-manager.Fraction(a.Ranges)) > 1e-9 || s.Handoffs < 1 {
		t.Errorf("%s: shard section %+v does not match the assignment (%d ranges)", m.id, *s, len(a.Ranges))
	}
	req = httptest.NewRequest("GET", "/debug/skiff", nil)
	req.Host = "127.0.0.1"
	rr = httptest.NewRecorder()
	h.ServeHTTP(rr, req)
	if body := rr.Body.String(); !strings.Contains(body, "shard group cm") || !strings.Contains(body, m.id) {
		t.Errorf("%s: the HTML page has no shard section for group cm", m.id)
	}
}

// TestFencedReplicaResumesItsKeys: a replica that cannot renew its Lease
// for longer than RenewDeadline fences itself and refuses its keys; once it
// renews again, before the others expire it, it activates the same ring
// again and must reconcile the keys it refused meanwhile.
func TestFencedReplicaResumesItsKeys(t *testing.T) {
	ns := testenv.Namespace(t, env.Config())
	objs := createCMs(t, ns, 60)
	f := newFleet(t, ns)
	f.leaseDuration = 15 * time.Second // the others wait that long: the fence ends first
	defer f.shutdown()
	var ms []*member
	for _, id := range []string{"r1", "r2", "r3"} {
		ms = append(ms, f.start(id))
	}
	testenv.Eventually(t, 30*time.Second, "3 replicas settled", f.settled)
	f.reconciledByOwners(objs, time.Now(), 30*time.Second)
	m := ms[0]
	version := m.mgr.Shard().Replica().Assignment().Version
	dropped := testutil.ToFloat64(m.mgr.Shard().Dropped("cm"))
	m.leasesCut.Store(true)
	testenv.Eventually(t, 10*time.Second, "r1 fenced", func() (bool, error) {
		return !m.mgr.Shard().Replica().Assignment().Active, nil
	})
	// Its keys come back every 300 ms (RequeueAfter) and are refused now.
	owned := 0
	for _, o := range objs {
		if owner, _ := f.ownerOf(o); owner == m.id {
			owned++
		}
	}
	testenv.Eventually(t, 10*time.Second, "r1 refused its keys while fenced", func() (bool, error) {
		if d := testutil.ToFloat64(m.mgr.Shard().Dropped("cm")) - dropped; d < float64(owned) {
			return false, fmt.Errorf("%v of %d keys dropped", d, owned)
		}
		return true, nil
	})
	m.leasesCut.Store(false)
	testenv.Eventually(t, 10*time.Second, "r1 active again", func() (bool, error) {
		return m.mgr.Shard().Replica().Assignment().Active, nil
	})
	if v := m.mgr.Shard().Replica().Assignment().Version; v != version {
		t.Logf("the ring changed during the fence (%s → %s): the test did not exercise re-activation of the same ring", version, v)
	}
	f.reconciledByOwners(objs, time.Now(), 20*time.Second)
	if f.overlaps.Load() > 0 {
		t.Errorf("%d overlapping reconciles", f.overlaps.Load())
	}
}
