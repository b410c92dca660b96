package main

import (
	"bufio"
	"context"
	"io"
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
