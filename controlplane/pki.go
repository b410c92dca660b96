package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the set of credentials a control plane needs: a CA, the apiserver's
// serving certificate, an admin client certificate (group system:masters) and
// the service-account signing key. All of it lives in one directory so that a
// persistent data dir keeps issued tokens and kubeconfigs valid across restarts.
type pki struct {
	dir string

	caCertPEM []byte
}

func (p pki) path(name string) string { return filepath.Join(p.dir, name) }

const (
	caCertFile      = "ca.crt"
	caKeyFile       = "ca.key"
	servingCertFile = "apiserver.crt"
	servingKeyFile  = "apiserver.key"
	adminCertFile   = "admin.crt"
	adminKeyFile    = "admin.key"
	saKeyFile       = "sa.key"
	saPubFile       = "sa.pub"
)

// certValidity is long on purpose: a persistent dev control plane should not
// expire under a developer. Only loopback names are ever signed.
const certValidity = 10 * 365 * 24 * time.Hour

// loadOrCreatePKI reuses the credentials in dir when all of them are present
// and parse, creates all of them when none are present, and fails naming the
// file otherwise (a half-written or corrupt PKI dir is never silently replaced,
// since that would invalidate every kubeconfig handed out before).
func loadOrCreatePKI(dir string) (pki, error) {
	p := pki{dir: dir}
	files := []string{caCertFile, caKeyFile, servingCertFile, servingKeyFile, adminCertFile, adminKeyFile, saKeyFile, saPubFile}
	var present, missing []string
	for _, f := range files {
		if _, err := os.Stat(p.path(f)); err == nil {
			present = append(present, f)
		} else if errors.Is(err, os.ErrNotExist) {
			missing = append(missing, f)
		} else {
			return p, fmt.Errorf("read %s: %w", p.path(f), err)
		}
	}
	switch {
	case len(present) == 0:
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return p, fmt.Errorf("create pki dir: %w", err)
		}
		return p, p.create()
	case len(missing) > 0:
		return p, fmt.Errorf("pki dir %s is incomplete: missing %v (remove the dir to regenerate)", dir, missing)
	}
	for _, pair := range [][2]string{{caCertFile, caKeyFile}, {servingCertFile, servingKeyFile}, {adminCertFile, adminKeyFile}} {
		if _, _, err := readPair(p.path(pair[0]), p.path(pair[1])); err != nil {
			return p, err
		}
	}
	if _, err := readKey(p.path(saKeyFile)); err != nil {
		return p, err
	}
	ca, err := os.ReadFile(p.path(caCertFile))
	if err != nil {
		return p, err
	}
	p.caCertPEM = ca
	return p, nil
}

func (p *pki) create() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "skiff-controlplane-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	if err := writeCertKey(p.path(caCertFile), p.path(caKeyFile), caDER, caKey); err != nil {
		return err
	}
	p.caCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})

	serving := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IPv4(10, 0, 0, 1)},
	}
	if err := p.sign(serving, caCert, caKey, servingCertFile, servingKeyFile); err != nil {
		return err
	}
	admin := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "skiff-admin", Organization: []string{"system:masters"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := p.sign(admin, caCert, caKey, adminCertFile, adminKeyFile); err != nil {
		return err
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	if err := writeKey(p.path(saKeyFile), saKey); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return err
	}
	return os.WriteFile(p.path(saPubFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600)
}

func (p pki) sign(tmpl, ca *x509.Certificate, caKey crypto.Signer, certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return fmt.Errorf("sign %s: %w", certFile, err)
	}
	return writeCertKey(p.path(certFile), p.path(keyFile), der, key)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return n.Add(n, big.NewInt(1))
}

func writeCertKey(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return writeKey(keyPath, key)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func readKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s is corrupt: no PEM block", path)
	}
	k, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w", path, err)
	}
	return k, nil
}

func readPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, nil, fmt.Errorf("%s is corrupt: no PEM block", certPath)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("%s is corrupt: %w", certPath, err)
	}
	k, err := readKey(keyPath)
	return c, k, err
}
