package shard

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestHashIsFNV1a64(t *testing.T) {
	// Published FNV-1a 64 test vectors.
	for in, want := range map[string]uint64{
		"":       0xcbf29ce484222325,
		"a":      0xaf63dc4c8601ec8c,
		"foobar": 0x85944171f73967e8,
	} {
		if got := Hash(in); got != want {
			t.Errorf("Hash(%q) = %016x, want %016x", in, got, want)
		}
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", UID: "u-1"}}
	if HashOf(cm, UID) != Hash("u-1") || HashOf(cm, Namespace) != Hash("ns") {
		t.Errorf("HashOf does not hash the named field")
	}
}

func TestSelectorFormat(t *testing.T) {
	for _, tc := range []struct {
		f    Field
		rs   []Range
		want string
	}{
		{UID, []Range{{0, 1 << 63}}, "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')"},
		{UID, []Range{{1 << 63, 0}}, "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')"},
		{Namespace, []Range{{0, 0}}, "shardRange(object.metadata.namespace, '0x0000000000000000', '0x10000000000000000')"},
		{UID, []Range{{0, 1 << 56}, {5, 5}, {3 << 56, 4 << 56}},
			"shardRange(object.metadata.uid, '0x0000000000000000', '0x0100000000000000') || shardRange(object.metadata.uid, '0x0300000000000000', '0x0400000000000000')"},
	} {
		got, ok := Selector(tc.f, tc.rs)
		if !ok || got != tc.want {
			t.Errorf("Selector(%v, %v) = %q, %v; want %q", tc.f, tc.rs, got, ok, tc.want)
		}
	}
	if got, ok := Selector(UID, []Range{{7, 7}}); ok || got != "" {
		t.Errorf("Selector of only empty ranges = %q, %v; want \"\", false", got, ok)
	}
}

func TestRangeContains(t *testing.T) {
	top := Range{1 << 63, 0}
	if !top.Contains(^uint64(0)) || !top.Contains(1<<63) || top.Contains(1<<63-1) {
		t.Error("upper half: wrong bounds")
	}
	all := Range{0, 0}
	if !all.Contains(0) || !all.Contains(^uint64(0)) || all.Empty() {
		t.Error("Range{0,0} is not the whole space")
	}
	if r := (Range{5, 5}); !r.Empty() || r.Contains(5) {
		t.Error("Range{5,5} is not empty")
	}
	if got := top.String(); got != "[0x8000000000000000, 0x10000000000000000)" {
		t.Errorf("String = %s", got)
	}
}
