package testenv_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/skiffkit/skiff/testenv"
)

// TestBinarySIGINTStopsCleanly runs skiff-controlplane the way a person
// would: no data dir (a temp dir), --kubeconfig-out elsewhere, then Ctrl-C.
func TestBinarySIGINTStopsCleanly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := testenv.Binary(ctx, testenv.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "nested", "admin.kubeconfig")
	cmd := exec.Command(bin, "--kubeconfig-out="+kubeconfig, "--controllers=none", "--unsafe-no-fsync")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	var ready string
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "skiff-controlplane ready") {
			ready = sc.Text()
			break
		}
	}
	if !strings.Contains(ready, "kubeconfig="+kubeconfig+" ") {
		t.Fatalf("ready line %q does not name the kubeconfig %s", ready, kubeconfig)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("list namespaces with the written kubeconfig: %v", err)
	}
	_, dataDir, ok := strings.Cut(ready, " data=")
	if !ok {
		t.Fatalf("ready line %q does not name the data dir", ready)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "etcd")); err != nil {
		t.Fatalf("data dir %s from the ready line holds no etcd data: %v", dataDir, err)
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v, want status 0", err)
		}
	case <-ctx.Done():
		t.Fatal("still running 2 minutes after SIGINT")
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("temp data dir %s left behind after SIGINT (stat err=%v)", dataDir, err)
	}
	if _, err := os.Stat(kubeconfig); err != nil {
		t.Fatalf("--kubeconfig-out %s must outlive the temp data dir: %v", kubeconfig, err)
	}
}
