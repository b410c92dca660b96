package testenv

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// AuditOptions make the API server send audit events to a webhook — a
// receiver such as package webhook/audit's — through its audit webhook
// backend in batch mode. Start writes the policy and the webhook kubeconfig
// into the Env's temp dir and passes --audit-policy-file,
// --audit-webhook-config-file and --audit-webhook-batch-max-wait; flags in
// Options.APIServerArgs come later and win.
type AuditOptions struct {
	// URL is where the API server POSTs audit.k8s.io/v1 EventList
	// batches, e.g. "https://127.0.0.1:8443/audit". Required; https only.
	URL string
	// CABundle is the PEM CA certificate(s) the receiver's serving
	// certificate chains to. Default nil: the API server does not verify
	// the receiver's certificate (insecure-skip-tls-verify), which Start
	// allows only when URL's host is a loopback address ("localhost",
	// 127.0.0.0/8, ::1) — on loopback nobody else is on the path.
	CABundle []byte
	// Policy is an audit.k8s.io/v1 Policy, YAML or JSON. Default
	// DefaultAuditPolicy.
	Policy []byte
	// MaxBatchWait is --audit-webhook-batch-max-wait: the longest an event
	// waits in the API server's buffer before its batch is sent. Default
	// 250ms, so events arrive within about half a second (the API server's
	// own default is 30s).
	MaxBatchWait time.Duration
}

// DefaultAuditPolicy logs every write (create, update, patch, delete,
// deletecollection) at level Metadata at stage ResponseComplete, except
// writes to Leases and Events (the controller manager's heartbeats and
// event recording), and nothing else.
var DefaultAuditPolicy = []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  resources:
  - {group: "coordination.k8s.io", resources: [leases]}
  - {group: "", resources: [events]}
  - {group: "events.k8s.io", resources: [events]}
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
`)

// auditBackoff is --audit-webhook-initial-backoff, passed on every start
// (with or without Options.Audit, so audit flags given through
// APIServerArgs or `skiff up --apiserver-arg` get it too). The audit
// webhook backend retries a failed batch 5 times with exponential backoff
// (factor 1.5) from this delay, and kube-apiserver's shutdown waits for the
// retries of every pending batch. With the default of 10s a batch whose
// receiver is gone holds shutdown for about 80s (10+15+22.5+33.75s) — past
// skiff-controlplane's and Stop's 30s limits. 200ms gives up in about 1.6s.
const auditBackoff = 200 * time.Millisecond

// auditArgs writes the audit policy and webhook kubeconfig into dir and
// returns the kube-apiserver flags that use them.
func auditArgs(a *AuditOptions, dir string) ([]string, error) {
	u, err := url.Parse(a.URL)
	if err != nil {
		return nil, fmt.Errorf("audit webhook URL %q: %w", a.URL, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("audit webhook URL %q: want https://host[:port]/path", a.URL)
	}
	if len(a.CABundle) == 0 && !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("audit webhook URL %q: without a CABundle the receiver's certificate is not verified, which is allowed only for a loopback host", a.URL)
	}
	policy := a.Policy
	if len(policy) == 0 {
		policy = DefaultAuditPolicy
	}
	wait := a.MaxBatchWait
	if wait < 0 {
		return nil, fmt.Errorf("audit: negative MaxBatchWait %v", wait)
	}
	if wait == 0 {
		wait = 250 * time.Millisecond
	}
	policyPath := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policyPath, policy, 0o600); err != nil {
		return nil, fmt.Errorf("write audit policy: %w", err)
	}
	cluster := &clientcmdapi.Cluster{Server: a.URL, CertificateAuthorityData: a.CABundle}
	if len(a.CABundle) == 0 {
		cluster.InsecureSkipTLSVerify = true
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["audit"] = cluster
	cfg.AuthInfos["kube-apiserver"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["audit"] = &clientcmdapi.Context{Cluster: "audit", AuthInfo: "kube-apiserver"}
	cfg.CurrentContext = "audit"
	kubeconfigPath := filepath.Join(dir, "audit-webhook.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, kubeconfigPath); err != nil {
		return nil, fmt.Errorf("write audit webhook kubeconfig: %w", err)
	}
	return []string{
		"--audit-policy-file=" + policyPath,
		"--audit-webhook-config-file=" + kubeconfigPath,
		"--audit-webhook-mode=batch",
		"--audit-webhook-batch-max-wait=" + wait.String(),
	}, nil
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
