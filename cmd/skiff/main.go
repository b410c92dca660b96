// Command skiff is Skiff's command line:
//
//	skiff demo                 run the example operator on N objects and report (the main job)
//	skiff up                   run a local control plane until Ctrl-C
//	skiff build-controlplane   build (or find) skiff-controlplane and print its path
//	skiff doctor               measure the connection to a cluster and recommend settings
//
// Run `skiff <command> --help` for a command's flags.
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
	"time"

	"github.com/skiffkit/skiff/testenv"
)

const usage = `usage: skiff <command> [flags]

commands:
  demo                 run the example Foo operator against a local control plane (or --kubeconfig),
                       create N objects with churn, show progress and a summary
  up                   run a local Kubernetes control plane (etcd + kube-apiserver) until Ctrl-C
  doctor               measure the connection to a cluster (latency, features, flow control, server
                       limits from /metrics) and recommend client settings and server flags
  build-controlplane   build (or find the cached) skiff-controlplane binary and print its path
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch args[0] {
	case "up":
		err = up(ctx, args[1:], stdout, stderr)
	case "demo":
		err = demo(ctx, args[1:], stdout, stderr)
	case "doctor":
		err = doctorCmd(ctx, args[1:], stdout, stderr)
	case "build-controlplane":
		err = buildControlPlane(ctx, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "skiff: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "skiff %s: %v\n", args[0], err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

type usageError struct{ error }

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func parse(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

func up(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("skiff up", flag.ContinueOnError)
	var o testenv.Options
	var apiArgs stringList
	fs.StringVar(&o.DataDir, "data-dir", "", "keep the cluster's data here across runs (default: a temp dir removed on exit)")
	fs.IntVar(&o.Port, "port", 0, "apiserver port on 127.0.0.1 (default: a free port)")
	fs.Var(&apiArgs, "apiserver-arg", "extra kube-apiserver flag, e.g. --apiserver-arg=--max-requests-inflight=800 (repeatable)")
	fs.StringVar(&o.FeatureGates, "feature-gates", "", "kube-apiserver feature gates")
	fs.StringVar(&o.Controllers, "controllers", "", `kube-controller-manager controllers (default: namespace and garbage collector; "none" for none)`)
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	o.APIServerArgs = apiArgs
	o.Fsync = o.DataDir != "" // a kept cluster should survive a crash
	o.Build.Progress = stderr
	env, err := testenv.Start(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "skiff: control plane ready in %.1fs at %s\n", env.ReadyIn().Seconds(), env.Server())
	fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", env.KubeconfigPath())
	fmt.Fprintf(stdout, "skiff: logs in %s; press Ctrl-C to stop\n", env.LogPath())
	<-ctx.Done()
	fmt.Fprintln(stdout, "skiff: stopping")
	start := time.Now()
	if err := env.Stop(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "skiff: stopped in %.1fs\n", time.Since(start).Seconds())
	return nil
}

func buildControlPlane(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("skiff build-controlplane", flag.ContinueOnError)
	var o testenv.BuildOptions
	fs.StringVar(&o.SourceDir, "source", "", "controlplane module directory (default: the one in this checkout, else the matching one from the Go module proxy)")
	if err := parse(fs, args, stderr); err != nil {
		return err
	}
	o.Progress = stderr
	bin, err := testenv.Binary(ctx, o)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, bin)
	return nil
}
