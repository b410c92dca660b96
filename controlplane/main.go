// Command skiff-controlplane runs a real Kubernetes control plane — an
// in-process etcd and kube-apiserver built from their Go modules — on
// loopback, for tests and for people. Nothing is downloaded and no container
// runtime is needed.
//
// It generates a CA, a serving certificate, service-account keys and an
// admin identity (group system:masters), writes an admin kubeconfig, and
// prints one line once /readyz answers ok:
//
//	skiff-controlplane ready in 2.9s: kubeconfig=/tmp/x/kubeconfig server=https://127.0.0.1:41234 admin=http://127.0.0.1:41235 data=/tmp/skiff-controlplane-123
//
// The admin endpoint (loopback only, bearer token in <dir>/admin-token)
// offers POST /compact, which compacts etcd to its current revision so tests
// can provoke 410 Gone on purpose.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == controllerManagerSubcommand {
		os.Exit(runControllerManager(os.Args[2:]))
	}
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "skiff-controlplane: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "skiff-controlplane: %v\n", err)
		os.Exit(1)
	}
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var o config
	fs := flag.NewFlagSet("skiff-controlplane", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.IntVar(&o.port, "port", 0, "apiserver port on 127.0.0.1 (0: a free port)")
	fs.IntVar(&o.adminPort, "admin-port", 0, "admin endpoint port on 127.0.0.1 (0: a free port)")
	fs.StringVar(&o.dataDir, "data-dir", "", "keep etcd data, certificates and the kubeconfig here across restarts (default: a temp dir removed on exit)")
	fs.StringVar(&o.kubeconfigOut, "kubeconfig-out", "", "write the admin kubeconfig here (default: <data dir>/kubeconfig)")
	fs.Var(&o.apiserverArgs, "apiserver-arg", "extra kube-apiserver flag, e.g. --apiserver-arg=--max-requests-inflight=800 (repeatable)")
	fs.StringVar(&o.featureGates, "feature-gates", "", "kube-apiserver feature gates, e.g. WatchList=true")
	fs.StringVar(&o.controllers, "controllers", defaultControllers, "kube-controller-manager controllers to run in a child process (comma separated, \"*\" for all, \"none\" to run none)")
	fs.BoolVar(&o.noFsync, "unsafe-no-fsync", false, "disable etcd fsync (faster; loses data on a machine crash — fine for tests)")
	fs.StringVar(&o.logFile, "log-file", "", "etcd, apiserver and controller-manager logs (default: <data dir>/controlplane.log)")
	fs.DurationVar(&o.readyTimeout, "ready-timeout", defaultReadyTimeout, "how long to wait for /readyz before giving up")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, "usage: skiff-controlplane [flags]")
			fs.PrintDefaults()
			return o, err
		}
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: "); ok {
			return o, fmt.Errorf("unknown flag -%s (run with --help for the list)", name)
		}
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (all options are flags; run with --help)", fs.Arg(0))
	}
	if o.port < 0 || o.port > 65535 {
		return o, fmt.Errorf("--port %d is out of range 0-65535", o.port)
	}
	if o.adminPort < 0 || o.adminPort > 65535 {
		return o, fmt.Errorf("--admin-port %d is out of range 0-65535", o.adminPort)
	}
	if o.readyTimeout <= 0 {
		return o, fmt.Errorf("--ready-timeout must be positive, got %v", o.readyTimeout)
	}
	return o, nil
}
