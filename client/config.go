package client

import (
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// LoadConfig finds the API server the way kubectl does, in order: the
// kubeconfig file given (if not ""), $KUBECONFIG (a list of files, merged),
// the in-cluster service account when running in a pod, then
// ~/.kube/config; context names a kubeconfig context ("" for the current
// one). The error says what was tried.
func LoadConfig(kubeconfig, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: context}
	if kubeconfig == "" && context == "" && os.Getenv(clientcmd.RecommendedConfigPathEnvVar) == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			return cfg, nil
		}
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("client: no API server found (tried kubeconfig %q, $KUBECONFIG, in-cluster, ~/.kube/config, context %q): %w", kubeconfig, context, err)
	}
	return cfg, nil
}
