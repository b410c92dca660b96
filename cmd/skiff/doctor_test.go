package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/skiffkit/skiff/internal/doctor"
	"github.com/skiffkit/skiff/testenv"
)

func runDoctor(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	code = run(ctx, append([]string{"doctor"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

func startEnv(t *testing.T, o testenv.Options) *testenv.Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	o.Controllers = "none"
	env, err := testenv.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	return env
}

// writeKubeconfig writes cfg (certificate auth, as testenv's UserConfig
// makes) as a kubeconfig file.
func writeKubeconfig(t *testing.T, cfg *rest.Config) string {
	t.Helper()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantAll(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func wantSections(t *testing.T, out string) {
	t.Helper()
	for _, s := range doctor.Sections {
		wantAll(t, out, "\n== "+s+"\n")
	}
}

func TestDoctorOnALocalControlPlane(t *testing.T) {
	env := startEnv(t, testenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("admin", func(t *testing.T) {
		code, out, errOut := runDoctor(t, ctx, "--kubeconfig="+env.KubeconfigPath())
		if code != 0 {
			t.Fatalf("exit %d, stderr %q; output:\n%s", code, errOut, out)
		}
		wantSections(t, out)
		wantAll(t, out,
			"skiff doctor: "+env.Server(),
			"version   v1.36",
			"GET /version", "new", "reused",
			"streaming watch-list       served",
			"protobuf                   served",
			"bookmarks                  served",
			"flow schema     exempt",
			"priority level  exempt",
			"QPS 5, Burst 10 (client-go's defaults",
			"concurrency limit            600 seats",
			"workload-low",
			"request latency by verb",
			"etcd latency by operation",
			"watch caches:",
			"nothing: every probe was answered",
			`runs in the exempt priority level "exempt"`,
		)
		if strings.Contains(out, "server concurrency limit is") {
			t.Errorf("the default limit (600) is reported as tight:\n%s", out)
		}
	})

	t.Run("identity without rights", func(t *testing.T) {
		cfg, err := env.UserConfig("doctor-nobody")
		if err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runDoctor(t, ctx, "--kubeconfig="+writeKubeconfig(t, cfg))
		if code != 1 {
			t.Fatalf("exit %d, want 1; stderr %q; output:\n%s", code, errOut, out)
		}
		if lines := strings.Count(strings.TrimSpace(errOut), "\n"); lines != 0 || !strings.Contains(errOut, `identity "doctor-nobody" is forbidden to list namespaces`) {
			t.Errorf("stderr %q: want one line saying the identity is forbidden to list namespaces", errOut)
		}
		wantSections(t, out)
		wantAll(t, out,
			"version   v1.36", // /version is open to every authenticated identity
			"identity  doctor-nobody (groups system:authenticated)",
			`list namespaces (GET /api/v1/namespaces?limit=1): forbidden: namespaces is forbidden: User "doctor-nobody"`,
			`server metrics (GET /metrics): forbidden:`,
			"not readable (see could not read)",
			"streaming watch-list       unknown (not tried: cannot list namespaces)",
		)
	})

	t.Run("identity that may list and watch but not read metrics", func(t *testing.T) {
		const user = "doctor-reader"
		revoke, err := testenv.Grant(ctx, env.Config(), user, []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"list", "watch"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer revoke(ctx)
		cfg, err := env.UserConfig(user)
		if err != nil {
			t.Fatal(err)
		}
		code, out, errOut := runDoctor(t, ctx, "--kubeconfig="+writeKubeconfig(t, cfg))
		if code != 0 {
			t.Fatalf("exit %d, stderr %q; output:\n%s", code, errOut, out)
		}
		wantSections(t, out)
		wantAll(t, out,
			"streaming watch-list       served",
			"priority level  uid ", "(name not readable)",
			`server metrics (GET /metrics): forbidden: User "doctor-reader" cannot get path "/metrics"`,
			"flow schema names (GET flowschemas): forbidden",
			"[info] server: server metrics not readable",
			"system:monitoring",
		)
	})
}

func TestDoctorNamesATightInflightLimit(t *testing.T) {
	env := startEnv(t, testenv.Options{APIServerArgs: []string{"--max-requests-inflight=5", "--max-mutating-requests-inflight=2"}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code, out, errOut := runDoctor(t, ctx, "--kubeconfig="+env.KubeconfigPath())
	if code != 0 {
		t.Fatalf("exit %d, stderr %q; output:\n%s", code, errOut, out)
	}
	wantSections(t, out)
	wantAll(t, out,
		"concurrency limit            7 seats",
		"[warn] server: server concurrency limit is 7 seats (--max-requests-inflight + --max-mutating-requests-inflight",
		"-> raise --max-requests-inflight and --max-mutating-requests-inflight",
	)
}

func TestDoctorUnreachableServer(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runDoctor(t, context.Background(), "--kubeconfig="+kubeconfig)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if strings.Count(strings.TrimSpace(errOut), "\n") != 0 || !strings.Contains(errOut, "cannot reach the API server at https://127.0.0.1:1") || !strings.Contains(errOut, "connection refused") {
		t.Errorf("stderr %q: want one line naming the address and the cause", errOut)
	}
	if out != "" {
		t.Errorf("a report was written for an unreachable server:\n%s", out)
	}
}

func TestDoctorBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--timeout=0s"}, {"--no-such-flag"}, {"extra"}} {
		if code, _, errOut := runDoctor(t, context.Background(), args...); code != 2 {
			t.Errorf("skiff doctor %v exited %d, want 2 (stderr %q)", args, code, errOut)
		}
	}
	code, _, errOut := runDoctor(t, context.Background(), "--kubeconfig=/nonexistent/kubeconfig")
	if code != 1 || !strings.Contains(errOut, "/nonexistent/kubeconfig") {
		t.Errorf("missing kubeconfig: exit %d, stderr %q", code, errOut)
	}
}
