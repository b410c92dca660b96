package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
)

// The control plane keeps its CA in <data dir>/pki (see the controlplane
// module's pki.go); the apiserver trusts client certificates it signs.
const (
	pkiDir    = "pki"
	caCertPEM = "ca.crt"
	caKeyPEM  = "ca.key"
)

// UserCertValidity is how long a certificate issued by UserConfig is valid.
const UserCertValidity = 7 * 24 * time.Hour

// UserConfig returns a rest.Config that authenticates as user, member of
// groups, with a fresh client certificate (CN=user, O=groups) signed by the
// control plane's CA, valid for UserCertValidity. Unlike Config's admin
// (group system:masters, which bypasses authorization, API Priority and
// Fairness and the max-inflight limits), such a user is subject to RBAC and
// to flow control like any ordinary client: it can do nothing until granted
// (see Grant). The apiserver adds the group system:authenticated itself.
//
// user must be non-empty and no group may be empty. Passing
// "system:masters" as a group makes another admin. Client-side rate limiting
// is off (QPS < 0), as for Config. The order of groups is not kept (a
// certificate holds them as a set). Each call issues a new key pair; the
// config carries it inline (nothing is written to disk).
func (e *Env) UserConfig(user string, groups ...string) (*rest.Config, error) {
	if user == "" {
		return nil, errors.New("testenv: UserConfig: the user name is empty; a client certificate needs a common name")
	}
	for i, g := range groups {
		if g == "" {
			return nil, fmt.Errorf("testenv: UserConfig(%q): group %d is empty", user, i)
		}
	}
	certPEM, keyPEM, err := issueClientCert(filepath.Join(e.dataDir, pkiDir), user, groups, time.Now())
	if err != nil {
		return nil, fmt.Errorf("testenv: UserConfig(%q): %w", user, err)
	}
	cfg := rest.AnonymousClientConfig(e.cfg)
	cfg.CertData, cfg.KeyData = certPEM, keyPEM
	cfg.QPS, cfg.Burst = -1, 0
	return cfg, nil
}

// issueClientCert signs a client certificate for user and groups with the
// CA in dir, returning the certificate and its new key in PEM.
func issueClientCert(dir, user string, groups []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	ca, caKey, err := readCA(dir)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate a key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("generate a serial number: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: user, Organization: groups},
		NotBefore:    now.Add(-time.Hour), // tolerate clock skew
		NotAfter:     now.Add(UserCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign a client certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode the client key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// readCA loads the control plane's CA certificate and its EC private key.
func readCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, caCertPEM), filepath.Join(dir, caKeyPEM)
	block, err := readPEM(certPath)
	if err != nil {
		return nil, nil, err
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse the CA certificate %s: %w", certPath, err)
	}
	block, err = readPEM(keyPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parse the CA key %s: %w", keyPath, err)
	}
	return ca, key, nil
}

func readPEM(path string) (*pem.Block, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the control plane's CA: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("read the control plane's CA: %s holds no PEM block", path)
	}
	return block, nil
}
