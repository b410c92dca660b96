package main

import (
	"context"
	"fmt"
	"net"

	"github.com/spf13/pflag"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// apiserverArgs are the flags skiff-controlplane always sets. User flags
// (--apiserver-arg) are parsed after these, so for scalar flags the user wins.
func apiserverArgs(p pki, etcdURL, certDir string) []string {
	return []string{
		"--advertise-address=127.0.0.1",
		"--bind-address=127.0.0.1",
		"--cert-dir=" + certDir,
		"--tls-cert-file=" + p.path(servingCertFile),
		"--tls-private-key-file=" + p.path(servingKeyFile),
		"--client-ca-file=" + p.path(caCertFile),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + p.path(saPubFile),
		"--service-account-signing-key-file=" + p.path(saKeyFile),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--etcd-servers=" + etcdURL,
		"--allow-privileged=true",
		// No kubelet and no token controller run here, so the ServiceAccount
		// admission plugin would reject every pod for want of a "default" SA.
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=true",
		// Without it an open watch holds shutdown for the full request
		// timeout (60s): the HTTP server waits for active streams.
		"--shutdown-watch-termination-grace-period=2s",
		// The built-in endpoint reconciler refuses loopback addresses.
		"--endpoint-reconciler-type=none",
	}
}

// prepareAPIServer parses flags into kube-apiserver's own options and returns
// a function that runs the server until ctx ends. It fails before anything is
// started when a flag is unknown or an option does not validate, so bad
// --apiserver-arg values are reported as such.
func prepareAPIServer(ctx context.Context, ln net.Listener, args []string) (func() error, error) {
	s := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	fs.SetOutput(discard{})
	for _, f := range s.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("kube-apiserver flags: %w", err)
	}
	if err := s.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, fmt.Errorf("kube-apiserver feature gates: %w", err)
	}
	rest.SetDefaultWarningHandler(rest.NoWarnings{})
	s.SecureServing.Listener = ln
	s.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port
	completed, err := s.Complete(ctx)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, fmt.Errorf("kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	return func() error { return app.Run(ctx, completed) }, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
