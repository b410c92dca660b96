package cert

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testSecret(s *state) *corev1.Secret {
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cert", Annotations: map[string]string{}},
		Type:       corev1.SecretTypeTLS,
	}
	sec.Data = s.encode(sec.Annotations)
	return sec
}
