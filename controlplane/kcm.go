package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

// The controllers a test control plane needs so that namespaces can be
// deleted and owner references garbage-collected. Workload controllers
// (deployment, replicaset, ...) are opt-in: without a scheduler and kubelet
// they only create pods that never run.
const defaultControllers = "namespace-controller,garbage-collector-controller"

// controllerManagerSubcommand re-enters this binary as kube-controller-manager.
// It runs in a child process because kube-controller-manager and
// kube-apiserver each own process-wide state (feature gates, metrics
// registries, flags) that must not be shared.
const controllerManagerSubcommand = "__kube-controller-manager"

func runControllerManager(args []string) int {
	cmd := app.NewControllerManagerCommand()
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		return 1
	}
	return 0
}

type controllerManager struct {
	cmd  *exec.Cmd
	done chan error // receives the child's exit; nil channel when none runs
}

// startControllerManager starts the child unless controllers is "none". The
// child dies with its parent (PDEATHSIG), so a killed control plane leaves
// no orphan behind.
func startControllerManager(controllers, kubeconfig string, p pki, logFile *os.File) (*controllerManager, error) {
	if controllers == "none" || controllers == "" {
		return &controllerManager{}, nil
	}
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for kube-controller-manager: %w", err)
	}
	cmd := exec.Command(self, controllerManagerSubcommand,
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
		"--controllers="+controllers,
		"--leader-elect=false",
		"--secure-port=0",
		"--root-ca-file="+p.path(caCertFile),
		"--service-account-private-key-file="+p.path(saKeyFile),
		"--kube-api-qps=500", "--kube-api-burst=1000",
		"--concurrent-namespace-syncs=10",
		"--concurrent-gc-syncs=20",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kube-controller-manager: %w", err)
	}
	c := &controllerManager{cmd: cmd, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	return c, nil
}

// stop sends SIGTERM and waits for the child, killing it after 10s.
func (c *controllerManager) stop() {
	if c.cmd == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-c.done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			fmt.Fprintf(os.Stderr, "skiff-controlplane: kube-controller-manager: %v\n", err)
		}
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}
