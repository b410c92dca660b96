package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeTestCA writes a CA the way the control plane does: ca.crt and an
// "EC PRIVATE KEY" ca.key.
func writeTestCA(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, caCertPEM), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, caKeyPEM), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestIssueClientCert(t *testing.T) {
	dir := t.TempDir()
	ca := writeTestCA(t, dir)
	now := time.Now()
	certPEM, keyPEM, err := issueClientCert(dir, "alice", []string{"devs", "ops"}, now)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// DER sorts the values of the multi-valued O attribute; order is not kept.
	if org := slices.Sorted(slices.Values(cert.Subject.Organization)); cert.Subject.CommonName != "alice" || !slices.Equal(org, []string{"devs", "ops"}) {
		t.Errorf("subject = %v, want CN=alice O=[devs ops]", cert.Subject)
	}
	if !cert.NotAfter.Equal(now.Add(UserCertValidity).Truncate(time.Second)) {
		t.Errorf("NotAfter = %v, want now + %v", cert.NotAfter, UserCertValidity)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate does not verify as a client cert under the CA: %v", err)
	}
	kb, _ := pem.Decode(keyPEM)
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		t.Error("the returned key does not match the certificate")
	}
}

func TestIssueClientCertErrorsNameTheFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(path string)
		file   string
	}{
		{"missing key", func(p string) { os.Remove(p) }, caKeyPEM},
		{"corrupt key", func(p string) { os.WriteFile(p, []byte("not pem"), 0o600) }, caKeyPEM},
		{"missing cert", func(p string) { os.Remove(p) }, caCertPEM},
	} {
		d := t.TempDir()
		writeTestCA(t, d)
		path := filepath.Join(d, tc.file)
		tc.damage(path)
		_, _, err := issueClientCert(d, "alice", nil, time.Now())
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: err = %v, want one naming %s", tc.name, err, path)
		}
	}
}
