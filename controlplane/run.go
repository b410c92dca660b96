package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
)

const defaultReadyTimeout = 90 * time.Second

type config struct {
	port          int
	adminPort     int
	dataDir       string
	kubeconfigOut string
	apiserverArgs stringList
	featureGates  string
	controllers   string
	noFsync       bool
	logFile       string
	readyTimeout  time.Duration
}

// markerFile marks a directory as a skiff-controlplane data dir, so a typo in
// --data-dir never points etcd at someone's unrelated files.
const markerFile = "skiff-controlplane.dir"

// prepareDataDir returns the run directory and a cleanup func. A given dir
// must be empty, absent or a previous skiff-controlplane dir, and writable.
func prepareDataDir(dir string) (string, func(), error) {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "skiff-controlplane-")
		if err != nil {
			return "", nil, fmt.Errorf("create temp data dir: %w", err)
		}
		return tmp, func() { os.RemoveAll(tmp) }, os.WriteFile(filepath.Join(tmp, markerFile), []byte("1\n"), 0o600)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, fmt.Errorf("--data-dir %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return "", nil, fmt.Errorf("--data-dir %s cannot be created: %w", abs, err)
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return "", nil, fmt.Errorf("--data-dir %s cannot be read: %w", abs, err)
	}
	if _, err := os.Stat(filepath.Join(abs, markerFile)); err != nil && len(entries) > 0 {
		return "", nil, fmt.Errorf("--data-dir %s is not empty and is not a skiff-controlplane data dir (no %s); refusing to use it", abs, markerFile)
	}
	probe, err := os.CreateTemp(abs, ".write-probe-")
	if err != nil {
		return "", nil, fmt.Errorf("--data-dir %s is not writable: %w", abs, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	if err := os.WriteFile(filepath.Join(abs, markerFile), []byte("1\n"), 0o600); err != nil {
		return "", nil, fmt.Errorf("--data-dir %s is not writable: %w", abs, err)
	}
	return abs, func() {}, nil
}

func listenLoopback(port int, what string) (net.Listener, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		if port != 0 {
			return nil, fmt.Errorf("%s port %d on 127.0.0.1 is not available: %w", what, port, err)
		}
		return nil, fmt.Errorf("no free loopback port for %s: %w", what, err)
	}
	return ln, nil
}

func run(ctx context.Context, o config, stdout io.Writer) (err error) {
	start := time.Now()
	dir, cleanup, err := prepareDataDir(o.dataDir)
	if err != nil {
		return err
	}
	defer cleanup()

	// Ports first: a port in use is the likeliest bad input and should fail
	// before anything slow starts.
	apiLn, err := listenLoopback(o.port, "apiserver")
	if err != nil {
		return err
	}
	defer apiLn.Close()
	adminLn, err := listenLoopback(o.adminPort, "admin")
	if err != nil {
		return err
	}
	defer adminLn.Close()

	logPath := o.logFile
	if logPath == "" {
		logPath = filepath.Join(dir, "controlplane.log")
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open log file: %w", err)
	}
	defer logFile.Close()
	quietKlog(logFile)
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (logs: %s)", err, logPath)
		}
	}()

	p, err := loadOrCreatePKI(filepath.Join(dir, "pki"))
	if err != nil {
		return err
	}
	kubeconfig := o.kubeconfigOut
	if kubeconfig == "" {
		kubeconfig = filepath.Join(dir, "kubeconfig")
	}
	if kubeconfig, err = filepath.Abs(kubeconfig); err != nil {
		return err
	}
	server := "https://" + apiLn.Addr().String()
	// Written before the apiserver starts so an unwritable path fails fast;
	// "ready" is signalled by the printed line, not by the file.
	if err := writeKubeconfig(kubeconfig, server, p); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", kubeconfig, err)
	}

	etcd, err := startEtcd(ctx, filepath.Join(dir, "etcd"), logPath, o.noFsync)
	if err != nil {
		return err
	}
	defer etcd.close()

	args := apiserverArgs(p, etcd.clientURL, filepath.Join(dir, "apiserver-certs"))
	if o.featureGates != "" {
		args = append(args, "--feature-gates="+o.featureGates)
	}
	args = append(args, o.apiserverArgs...)
	apiCtx, stopAPI := context.WithCancel(context.Background())
	runAPI, err := prepareAPIServer(apiCtx, apiLn, args)
	if err != nil {
		stopAPI()
		return err
	}
	apiDone := make(chan error, 1)
	go func() { apiDone <- runAPI() }()
	defer func() {
		stopAPI()
		select {
		case <-apiDone:
		case <-time.After(30 * time.Second):
			fmt.Fprintln(os.Stderr, "skiff-controlplane: kube-apiserver did not stop within 30s")
		}
	}()

	if err := waitReady(ctx, server, p, o.readyTimeout, apiDone); err != nil {
		return err
	}

	token, err := loadOrCreateToken(filepath.Join(dir, "admin-token"))
	if err != nil {
		return err
	}
	admin := newAdminServer(etcd, token)
	adminDone := make(chan error, 1)
	go func() { adminDone <- admin.Serve(adminLn) }()
	defer func() {
		shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		admin.Shutdown(shutCtx)
		<-adminDone
	}()

	kcm, err := startControllerManager(o.controllers, kubeconfig, p, logFile)
	if err != nil {
		return err
	}
	defer kcm.stop()

	fmt.Fprintf(stdout, "skiff-controlplane ready in %.1fs: kubeconfig=%s server=%s admin=http://%s data=%s\n",
		time.Since(start).Seconds(), kubeconfig, server, adminLn.Addr(), dir)

	select {
	case <-ctx.Done():
		return nil
	case err := <-apiDone:
		apiDone <- err // let the deferred join see it
		return fmt.Errorf("kube-apiserver stopped: %v", err)
	case err := <-kcm.done:
		kcm.done <- err
		return fmt.Errorf("kube-controller-manager stopped: %v", err)
	}
}

// quietKlog sends every klog line (apiserver, client-go) to w once: klog
// otherwise copies each line into every lower severity's writer and echoes
// errors to stderr. With one_output each line goes only to its own
// severity's writer, so every severity must have w (warnings and errors such
// as "Error in audit plugin" were once lost to io.Discard here).
func quietKlog(w io.Writer) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	fs.Set("logtostderr", "false")
	fs.Set("alsologtostderr", "false")
	fs.Set("stderrthreshold", "FATAL")
	fs.Set("one_output", "true")
	for _, sev := range []string{"INFO", "WARNING", "ERROR", "FATAL"} {
		klog.SetOutputBySeverity(sev, w)
	}
}

// waitReady polls /readyz with the admin identity until it answers 200.
func waitReady(ctx context.Context, server string, p pki, timeout time.Duration, apiDone chan error) error {
	cert, err := tls.LoadX509KeyPair(p.path(adminCertFile), p.path(adminKeyFile))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.caCertPEM)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	last := "no answer yet"
	for {
		resp, err := c.Get(server + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after %v; last /readyz: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted before the control plane was ready")
		case err := <-apiDone:
			apiDone <- err
			return fmt.Errorf("kube-apiserver exited while starting: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func writeKubeconfig(path, server string, p pki) error {
	cert, err := os.ReadFile(p.path(adminCertFile))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(p.path(adminKeyFile))
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["skiff"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: p.caCertPEM}
	cfg.AuthInfos["skiff-admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts["skiff"] = &clientcmdapi.Context{Cluster: "skiff", AuthInfo: "skiff-admin", Namespace: "default"}
	cfg.CurrentContext = "skiff"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return clientcmd.WriteToFile(*cfg, path)
}
