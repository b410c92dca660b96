package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func TestUpServesAKubeconfigUntilInterrupted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	upCtx, interrupt := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	code := make(chan int, 1)
	go func() {
		code <- run(upCtx, []string{"up", "--controllers=none"}, pw, io.Discard)
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	var kubeconfig string
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if p, ok := strings.CutPrefix(sc.Text(), "export KUBECONFIG="); ok {
			kubeconfig = p
			break
		}
	}
	if kubeconfig == "" {
		t.Fatalf("no export KUBECONFIG line; output: %q", lines)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("the printed kubeconfig does not reach the cluster: %v", err)
	}
	go io.Copy(io.Discard, pr)
	interrupt()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("skiff up exited %d after interrupt, want 0", c)
		}
	case <-ctx.Done():
		t.Fatal("skiff up did not stop after interrupt")
	}
}

func TestBadCommandLines(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: skiff"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"up", "--no-such-flag"}, 2, "no-such-flag"},
		{[]string{"up", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"help"}, 0, "usage: skiff"},
	}
	for _, tc := range cases {
		var stderr strings.Builder
		if got := run(context.Background(), tc.args, io.Discard, &stderr); got != tc.code {
			t.Errorf("skiff %v exited %d, want %d", tc.args, got, tc.code)
		}
		if !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("skiff %v stderr %q does not mention %q", tc.args, stderr.String(), tc.want)
		}
	}
}

func TestDemoConvergesAndExitsZero(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out strings.Builder
	code := run(ctx, []string{"demo", "--objects=60"}, &out, io.Discard)
	if code != 0 {
		t.Fatalf("skiff demo exited %d; output:\n%s", code, out.String())
	}
	for _, want := range []string{
		"live state at http://127.0.0.1:", // the default --addr binds loopback only
		"converged 57/57", "skiff demo: converged in", "60 created, 12 changed, 3 deleted", "create   configmaps", "dead letters 0",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDemoDefaultAddrIsLoopback(t *testing.T) {
	d, err := parseDemo(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(d.addr)
	if err != nil {
		t.Fatalf("default --addr %q: %v", d.addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("default --addr %q does not bind a loopback IP (a bare host or \"\" listens on every interface)", d.addr)
	}
	if port != "0" {
		t.Errorf("default --addr %q: port %s, want 0 (a free port)", d.addr, port)
	}
}

func TestDemoBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--objects=0"},
		{"demo", "--churn=2"},
		{"demo", "--max-workers=0"},
		{"demo", "--load-concurrency=0"},
		{"demo", "--timeout=-1s"},
	} {
		var stderr strings.Builder
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 {
			t.Errorf("skiff %v exited %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
	var stderr strings.Builder
	if code := run(context.Background(), []string{"demo", "--kubeconfig=/nonexistent/kubeconfig"}, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), "/nonexistent/kubeconfig") {
		t.Errorf("demo with a missing kubeconfig: exit %d, stderr %q", code, stderr.String())
	}
	unreachable := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(unreachable, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600)
	stderr.Reset()
	if code := run(context.Background(), []string{"demo", "--kubeconfig=" + unreachable}, io.Discard, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "127.0.0.1:1") || !strings.Contains(stderr.String(), "connection refused") {
		t.Errorf("demo against an unreachable server: exit %d, stderr %q", code, stderr.String())
	}
}
