package testenv_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The pid is the control plane itself, not a wrapper, and its CPU time
// grows while it serves requests.
func TestCPUTimeIsTheControlPlanesAndGrows(t *testing.T) {
	ctx := ctxFor(t, time.Minute)
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", shared.Pid()))
	if err != nil {
		t.Fatalf("read the control plane's command line: %v", err)
	}
	argv0, _, _ := bytes.Cut(cmdline, []byte{0})
	if base := filepath.Base(string(argv0)); !strings.HasPrefix(base, "skiff-controlplane") {
		t.Fatalf("pid %d runs %q, want skiff-controlplane", shared.Pid(), argv0)
	}

	before, err := shared.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 {
		t.Fatalf("CPUTime = %v after start, want > 0 (starting etcd and kube-apiserver takes CPU)", before)
	}
	cs := clientset(t, shared)
	deadline := time.Now().Add(50 * time.Second)
	for {
		for range 20 {
			if _, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
				t.Fatalf("list namespaces: %v", err)
			}
		}
		now, err := shared.CPUTime()
		if err != nil {
			t.Fatal(err)
		}
		if now > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPUTime stayed %v while the control plane served lists for 50s", now)
		}
	}
}
