package webhook_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiffkit/skiff/webhook"
)

// noCertificate stands in for a real source (package webhook/cert, or
// files from cert-manager); the example only prints configuration.
type noCertificate struct{}

func (noCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return nil, errors.New("no certificate")
}

func Example() {
	validate, err := webhook.NewValidating(func(ctx context.Context, req webhook.Request[*corev1.ConfigMap]) webhook.Response {
		if _, ok := req.Object.Data["password"]; ok {
			return webhook.Deny("put passwords in a Secret")
		}
		return webhook.Allow()
	}, webhook.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defaults, err := webhook.NewMutating(func(ctx context.Context, req webhook.Request[*corev1.Pod]) webhook.Response {
		if req.Object.Spec.PriorityClassName == "" {
			req.Object.Spec.PriorityClassName = "standard"
		}
		return webhook.Allow()
	}, webhook.Options{Operations: []webhook.Operation{webhook.Create}, TimeoutSeconds: 5})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := webhook.NewServer(webhook.ServerOptions{Addr: ":9443", Certificates: noCertificate{}})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.Register(validate)
	srv.Register(defaults)
	// srv.Run(ctx) would serve them; here, the configurations for a GitOps repository:
	yaml, err := srv.ConfigurationsYAML(webhook.ConfigOptions{Name: "my-operator",
		Service: &webhook.ServiceRef{Namespace: "my-operator", Name: "webhooks"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	os.Stdout.Write(yaml)
	// Output:
	// apiVersion: admissionregistration.k8s.io/v1
	// kind: ValidatingWebhookConfiguration
	// metadata:
	//   name: my-operator
	// webhooks:
	// - admissionReviewVersions:
	//   - v1
	//   clientConfig:
	//     service:
	//       name: webhooks
	//       namespace: my-operator
	//       path: /validate-core-v1-configmap
	//       port: 443
	//   failurePolicy: Fail
	//   name: configmap.core.validate.skiff.dev
	//   rules:
	//   - apiGroups:
	//     - ""
	//     apiVersions:
	//     - v1
	//     operations:
	//     - CREATE
	//     - UPDATE
	//     resources:
	//     - configmaps
	//     scope: '*'
	//   sideEffects: None
	//   timeoutSeconds: 10
	// ---
	// apiVersion: admissionregistration.k8s.io/v1
	// kind: MutatingWebhookConfiguration
	// metadata:
	//   name: my-operator
	// webhooks:
	// - admissionReviewVersions:
	//   - v1
	//   clientConfig:
	//     service:
	//       name: webhooks
	//       namespace: my-operator
	//       path: /mutate-core-v1-pod
	//       port: 443
	//   failurePolicy: Fail
	//   name: pod.core.mutate.skiff.dev
	//   reinvocationPolicy: Never
	//   rules:
	//   - apiGroups:
	//     - ""
	//     apiVersions:
	//     - v1
	//     operations:
	//     - CREATE
	//     resources:
	//     - pods
	//     scope: '*'
	//   sideEffects: None
	//   timeoutSeconds: 5
}
