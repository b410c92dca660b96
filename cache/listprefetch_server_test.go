package cache

import (
	"context"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
)

// podListTokenAtEnd is a protobuf PodList of n pods whose ListMeta at the
// start has no continue token and a second ListMeta after the items holds
// tok (protobuf merges the two: the decoded list's token is tok), so the
// early read finds no token and only the decoded page has one.
func podListTokenAtEnd(t *testing.T, tok string, n int) []byte {
	t.Helper()
	l := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "42"}}
	for i := range n {
		l.Items = append(l.Items, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "end-" + string(rune('a'+i)), Namespace: "ns"}})
	}
	raw, err := l.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	lm, err := (&metav1.ListMeta{Continue: tok}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	raw = append(raw, 1<<3|wireBytes)
	raw = binary.AppendUvarint(raw, uint64(len(lm)))
	raw = append(raw, lm...)
	u := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: "v1", Kind: "PodList"}, Raw: raw}
	env, err := u.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(append([]byte{}, protobufMagic...), env...)
}

// A page whose continue token the early read misses still leads to the
// next page: the decoded page's token decides, so the list is not cut
// short (which would make the informer delete the objects of later pages).
func TestListPagesFollowsTheDecodedToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf")
		switch r.URL.Query().Get("continue") {
		case "":
			w.Write(podListTokenAtEnd(t, "second", 2))
		case "second":
			w.Write(encodedPodList(t, "", 3))
		default:
			http.Error(w, "unexpected continue token", http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	src, err := TypedSource[*corev1.Pod](&rest.Config{Host: srv.URL}, schema.GroupVersionResource{Version: "v1", Resource: "pods"}, Scope{Namespace: "ns"})
	if err != nil {
		t.Fatal(err)
	}
	ps := src.LW.(pageSource)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sizes []int
	err = ps.listPages(ctx, metav1.ListOptions{Limit: 3}, func(obj runtime.Object) error {
		items, err := meta.ExtractList(obj)
		sizes = append(sizes, len(items))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 2 || sizes[0] != 2 || sizes[1] != 3 {
		t.Fatalf("pages of %v items, want [2 3] (the token was only in the decoded first page)", sizes)
	}
}
