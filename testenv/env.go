// Package testenv starts and stops a real local Kubernetes control plane —
// etcd and kube-apiserver, plus kube-controller-manager's namespace and
// garbage-collector controllers — for tests and tools. No container runtime
// and no prebuilt binaries are needed: the skiff-controlplane binary is built
// from Go sources on first use and cached — from the controlplane module of
// a Skiff checkout, or, in a user's own module that requires Skiff, from the
// matching controlplane module fetched through the Go module proxy.
// $SKIFF_CONTROLPLANE names a prebuilt one instead. See Binary for the order
// and the cache.
//
// Several Envs may run at once, in one process or many; each has its own
// ports and data dir.
//
// Env.Config is the admin (group system:masters, exempt from RBAC, API
// Priority and Fairness and the max-inflight limits). To test as an ordinary
// client, Env.UserConfig issues a client certificate for any user and groups,
// and Grant gives a user RBAC permissions.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options configures Start. The zero value starts a throwaway control plane
// on free loopback ports with a temp data dir.
type Options struct {
	// Binary is the skiff-controlplane to run. Default: Binary(ctx, Build).
	Binary string
	// Build says how to find or build the binary when Binary is empty.
	Build BuildOptions
	// DataDir keeps etcd data, certificates and the kubeconfig across
	// restarts. Default: a temp dir that Stop removes.
	DataDir string
	// Port is the apiserver's port on 127.0.0.1. Default 0: a free port.
	Port int
	// APIServerArgs are passed to kube-apiserver, e.g. "--max-requests-inflight=800".
	// They come after every flag testenv sets, so they win. testenv always
	// sets --audit-webhook-initial-backoff=200ms (see Audit).
	APIServerArgs []string
	// Audit, if non-nil, makes the API server send audit events to a
	// webhook receiver (see AuditOptions). Default nil: no auditing. Stop
	// takes seconds even when the receiver is already gone: audit retries
	// back off from 200ms, not kube-apiserver's 10s.
	Audit *AuditOptions
	// FeatureGates are kube-apiserver feature gates, e.g. "WatchList=true".
	FeatureGates string
	// Controllers lists kube-controller-manager controllers to run.
	// Default "": the binary's default (namespace and garbage collector).
	// "none" runs no controller manager.
	Controllers string
	// Fsync keeps etcd's fsync on. Default false: faster, and a throwaway
	// test cluster does not need to survive a machine crash.
	Fsync bool
	// StartTimeout bounds the wait for readiness. Default 2 minutes.
	StartTimeout time.Duration
	// ExtraArgs are passed to skiff-controlplane itself (mostly for testing
	// its own flag handling).
	ExtraArgs []string
}

// Env is a running control plane. Its methods are safe for concurrent use.
type Env struct {
	cmd        *exec.Cmd
	dataDir    string
	ownsDir    bool
	scratchDir string // testenv's own files (audit policy, ...) when DataDir was given; removed with the Env
	kubeconfig string
	server     string
	admin      string
	token      string
	logPath    string
	readyIn    time.Duration
	cfg        *rest.Config

	stopOnce sync.Once
	stopErr  error
	drained  chan struct{} // closed when stdout is drained
	exited   chan error    // receives the process's exit once
}

// Start runs a control plane and returns once kube-apiserver's /readyz
// answers ok. On error nothing is left running. Cancelling ctx after Start
// returns does not stop the Env; call Stop.
func Start(ctx context.Context, o Options) (*Env, error) {
	bin := o.Binary
	if bin == "" {
		var err error
		if bin, err = Binary(ctx, o.Build); err != nil {
			return nil, err
		}
	}
	timeout := o.StartTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	e := &Env{dataDir: o.DataDir, drained: make(chan struct{}), exited: make(chan error, 1)}
	if e.dataDir == "" {
		tmp, err := os.MkdirTemp("", "skiff-testenv-")
		if err != nil {
			return nil, fmt.Errorf("create data dir: %w", err)
		}
		e.dataDir, e.ownsDir = filepath.Join(tmp, "data"), true
	}
	args := []string{"--data-dir=" + e.dataDir, fmt.Sprintf("--port=%d", o.Port),
		fmt.Sprintf("--ready-timeout=%s", timeout)}
	if !o.Fsync {
		args = append(args, "--unsafe-no-fsync")
	}
	if o.FeatureGates != "" {
		args = append(args, "--feature-gates="+o.FeatureGates)
	}
	if o.Controllers != "" {
		args = append(args, "--controllers="+o.Controllers)
	}
	apiArgs := []string{"--audit-webhook-initial-backoff=" + auditBackoff.String()}
	if o.Audit != nil {
		dir, err := e.filesDir()
		if err != nil {
			e.removeDir()
			return nil, err
		}
		a, err := auditArgs(o.Audit, dir)
		if err != nil {
			e.removeDir()
			return nil, err
		}
		apiArgs = append(apiArgs, a...)
	}
	for _, a := range append(apiArgs, o.APIServerArgs...) {
		args = append(args, "--apiserver-arg="+a)
	}
	args = append(args, o.ExtraArgs...)

	e.cmd = exec.Command(bin, args...)
	var stderr bytes.Buffer
	e.cmd.Stderr = &limitedBuffer{b: &stderr, max: 64 << 10}
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := e.cmd.StdoutPipe()
	if err != nil {
		e.removeDir()
		return nil, err
	}
	if err := e.cmd.Start(); err != nil {
		e.removeDir()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	ready := make(chan string, 1)
	go func() {
		defer close(e.drained)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "skiff-controlplane ready") {
				select {
				case ready <- line:
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	go func() {
		<-e.drained // Wait must not run before the pipe is fully read
		e.exited <- e.cmd.Wait()
	}()

	fail := func(err error) (*Env, error) {
		e.kill()
		e.removeDir()
		return nil, err
	}
	select {
	case line := <-ready:
		if err := e.parseReady(line); err != nil {
			return fail(err)
		}
	case err := <-e.exited:
		e.exited <- err
		e.removeDir()
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = fmt.Sprint(err)
		}
		return nil, fmt.Errorf("skiff-controlplane exited before it was ready: %s", msg)
	case <-time.After(timeout + 10*time.Second):
		return fail(fmt.Errorf("skiff-controlplane not ready after %v (logs: %s)", timeout, filepath.Join(e.dataDir, "controlplane.log")))
	case <-ctx.Done():
		return fail(fmt.Errorf("start control plane: %w", ctx.Err()))
	}
	tok, err := os.ReadFile(filepath.Join(e.dataDir, "admin-token"))
	if err != nil {
		return fail(fmt.Errorf("read admin token: %w", err))
	}
	e.token = strings.TrimSpace(string(tok))
	cfg, err := clientcmd.BuildConfigFromFlags("", e.kubeconfig)
	if err != nil {
		return fail(fmt.Errorf("load kubeconfig %s: %w", e.kubeconfig, err))
	}
	// Tests are not throttled client-side; the apiserver's priority and
	// fairness still applies.
	cfg.QPS, cfg.Burst = -1, 0
	e.cfg = cfg
	e.logPath = filepath.Join(e.dataDir, "controlplane.log")
	return e, nil
}

// parseReady reads "skiff-controlplane ready in 1.9s: kubeconfig=... server=... admin=...".
func (e *Env) parseReady(line string) error {
	_, kv, ok := strings.Cut(line, ": ")
	if !ok {
		return fmt.Errorf("unexpected ready line %q", line)
	}
	var secs float64
	fmt.Sscanf(strings.TrimPrefix(line, "skiff-controlplane ready in "), "%fs", &secs)
	e.readyIn = time.Duration(secs * float64(time.Second))
	for _, f := range strings.Fields(kv) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "kubeconfig":
			e.kubeconfig = v
		case "server":
			e.server = v
		case "admin":
			e.admin = v
		}
	}
	if e.kubeconfig == "" || e.server == "" || e.admin == "" {
		return fmt.Errorf("ready line %q lacks kubeconfig, server or admin", line)
	}
	return nil
}

// Config returns a fresh copy of the admin rest.Config (group
// system:masters). Client-side rate limiting is off (QPS < 0).
func (e *Env) Config() *rest.Config { return rest.CopyConfig(e.cfg) }

// KubeconfigPath is the admin kubeconfig the control plane wrote.
func (e *Env) KubeconfigPath() string { return e.kubeconfig }

// Server is the apiserver URL, https://127.0.0.1:<port>.
func (e *Env) Server() string { return e.server }

// DataDir is where etcd data, certificates, the kubeconfig and logs live.
func (e *Env) DataDir() string { return e.dataDir }

// LogPath is the etcd/apiserver/controller-manager log file.
func (e *Env) LogPath() string { return e.logPath }

// ReadyIn is how long the control plane took from process start to ready,
// as it reported.
func (e *Env) ReadyIn() time.Duration { return e.readyIn }

// CompactEtcd compacts etcd's history up to its current revision and returns
// that revision. Watches and lists from an older resourceVersion that are
// not served from the apiserver's watch cache then fail with 410 Gone.
func (e *Env) CompactEtcd(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.admin+"/compact", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("compact etcd: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("compact etcd: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var out struct{ Revision int64 }
	if err := json.Unmarshal(body, &out); err != nil {
		return 0, fmt.Errorf("compact etcd: bad answer %q: %w", body, err)
	}
	return out.Revision, nil
}

// Stop stops the control plane (SIGTERM, then SIGKILL after 30s), waits for
// it, and removes the data dir if Start created it (and testenv's own files,
// such as the audit policy). It is idempotent; every
// call returns the first call's result.
func (e *Env) Stop() error {
	e.stopOnce.Do(func() {
		e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-e.exited:
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				e.stopErr = err
			} else if err != nil {
				e.stopErr = fmt.Errorf("skiff-controlplane exited with %v (logs: %s)", err, e.logPath)
			}
		case <-time.After(30 * time.Second):
			e.cmd.Process.Kill()
			<-e.exited
			e.stopErr = fmt.Errorf("skiff-controlplane did not stop within 30s; killed (logs: %s)", e.logPath)
		}
		e.removeDir()
	})
	return e.stopErr
}

func (e *Env) kill() {
	e.cmd.Process.Kill()
	<-e.exited
}

func (e *Env) removeDir() {
	if e.ownsDir {
		os.RemoveAll(filepath.Dir(e.dataDir))
	}
	if e.scratchDir != "" {
		os.RemoveAll(e.scratchDir)
	}
}

// filesDir is where testenv writes files the control plane reads: the temp
// dir that holds the data dir, or, when the caller chose the data dir (which
// skiff-controlplane wants empty or its own), a temp dir of its own.
func (e *Env) filesDir() (string, error) {
	if e.ownsDir {
		return filepath.Dir(e.dataDir), nil
	}
	if e.scratchDir == "" {
		dir, err := os.MkdirTemp("", "skiff-testenv-files-")
		if err != nil {
			return "", fmt.Errorf("create a temp dir for testenv's files: %w", err)
		}
		e.scratchDir = dir
	}
	return e.scratchDir, nil
}

// limitedBuffer keeps the first max bytes written and drops the rest.
type limitedBuffer struct {
	mu  sync.Mutex
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
