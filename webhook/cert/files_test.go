package cert

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The interfaces the webhook server needs of a certificate source.
type servingSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
	CABundle() ([]byte, error)
	Run(ctx context.Context) error
}

var (
	_ servingSource = (*Files)(nil)
	_ servingSource = (*Secret)(nil)
)

func writePair(t *testing.T, dir string, p keyPair, ca []byte) {
	t.Helper()
	for name, b := range map[string][]byte{"tls.crt": p.certPEM, "tls.key": p.keyPEM, "ca.crt": ca} {
		if b == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func issue(t *testing.T) (keyPair, keyPair) {
	t.Helper()
	now := time.Now()
	ca, err := newCA(now, time.Hour, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServing(ca, []string{"127.0.0.1"}, now, time.Hour, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return ca, s
}

func served(t *testing.T, f *Files) string {
	t.Helper()
	c, err := f.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return Fingerprint(c.Certificate[0])
}

func TestFilesReloadNeverServesAHalfWrittenPair(t *testing.T) {
	dir := t.TempDir()
	ca, s1 := issue(t)
	writePair(t, dir, s1, ca.certPEM)
	f, err := NewFiles(FilesOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	first := Fingerprint(s1.cert.Raw)
	if got := served(t, f); got != first {
		t.Fatalf("served %s, want %s", got, first)
	}
	if b, err := f.CABundle(); err != nil || string(b) != string(ca.certPEM) {
		t.Fatalf("CABundle = %q, %v; want ca.crt", b, err)
	}
	if changed, err := f.Reload(); changed || err != nil {
		t.Fatalf("unchanged files: Reload = %v, %v; want false, nil", changed, err)
	}

	_, s2 := issue(t)
	// Only the certificate written so far: key mismatch, keep s1.
	writePair(t, dir, keyPair{certPEM: s2.certPEM}, nil)
	if _, err := f.Reload(); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("half-written pair: err %v, want a key mismatch", err)
	}
	if got := served(t, f); got != first {
		t.Fatal("half-written pair was served")
	}
	// A truncated key: bad PEM, keep s1.
	writePair(t, dir, keyPair{keyPEM: s2.keyPEM[:20]}, nil)
	if _, err := f.Reload(); err == nil || !strings.Contains(err.Error(), "tls.key") {
		t.Fatalf("truncated key: err %v, want one naming tls.key", err)
	}
	if got := served(t, f); got != first {
		t.Fatal("truncated key was served")
	}
	writePair(t, dir, s2, nil)
	if changed, err := f.Reload(); !changed || err != nil {
		t.Fatalf("complete new pair: Reload = %v, %v; want true, nil", changed, err)
	}
	if got := served(t, f); got != Fingerprint(s2.cert.Raw) {
		t.Fatal("new pair not served after it was complete")
	}
}

func TestFilesRunReloads(t *testing.T) {
	dir := t.TempDir()
	ca, s1 := issue(t)
	writePair(t, dir, s1, ca.certPEM)
	f, err := NewFiles(FilesOptions{Dir: dir, Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := f.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	defer wg.Wait()
	defer cancel()
	_, s2 := issue(t)
	writePair(t, dir, s2, nil)
	want := Fingerprint(s2.cert.Raw)
	deadline := time.Now().Add(10 * time.Second)
	for served(t, f) != want {
		if time.Now().After(deadline) {
			t.Fatal("Run did not reload the new pair within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFilesErrorsNameTheProblem(t *testing.T) {
	_, s1 := issue(t)
	_, s2 := issue(t)
	for _, tc := range []struct {
		name  string
		write func(dir string)
		want  string
	}{
		{"missing", func(string) {}, "tls.crt"},
		{"bad PEM cert", func(d string) { writePair(t, d, keyPair{certPEM: []byte("junk"), keyPEM: s1.keyPEM}, nil) }, "bad PEM"},
		{"mismatch", func(d string) { writePair(t, d, keyPair{certPEM: s1.certPEM, keyPEM: s2.keyPEM}, nil) }, "does not match"},
		{"bad ca.crt", func(d string) {
			writePair(t, d, s1, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
		}, "ca.crt"},
	} {
		dir := t.TempDir()
		tc.write(dir)
		_, err := NewFiles(FilesOptions{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestParseSecretErrorsNameTheProblem(t *testing.T) {
	cur := roundTrip(t, mustDecide(t, nil, time.Now(), time.Time{}).write)
	_, other := issue(t)
	for _, tc := range []struct {
		name   string
		change func(*corev1.Secret)
		want   string
	}{
		{"wrong type", func(s *corev1.Secret) { s.Type = corev1.SecretTypeOpaque }, `has type "Opaque", want "kubernetes.io/tls"`},
		{"bad PEM", func(s *corev1.Secret) { s.Data["ca.crt"] = []byte("nope") }, "key ca.crt: bad PEM"},
		{"key mismatch", func(s *corev1.Secret) { s.Data["tls.key"] = other.keyPEM }, "tls.crt/tls.key: key mismatch"},
		{"bad annotation", func(s *corev1.Secret) { s.Annotations[annSwitchedAt] = "yesterday" }, annSwitchedAt},
	} {
		sec := testSecret(cur)
		sec.ObjectMeta = metav1.ObjectMeta{Namespace: "ns", Name: "cert", Annotations: map[string]string{}}
		tc.change(sec)
		_, err := parseSecret(sec)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "secret ns/cert") {
			t.Errorf("%s: err %v, want one naming secret ns/cert and %q", tc.name, err, tc.want)
		}
	}
}
