package cert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

// ServiceHosts returns the DNS names a Service's clients use for it, the
// names a serving certificate for a webhook behind that Service needs:
// svc, svc.ns, svc.ns.svc and svc.ns.svc.cluster.local.
func ServiceHosts(service, namespace string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}

// Fingerprint is the hex SHA-256 of a certificate's DER bytes, the usual
// way to tell certificates apart in logs.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// keyPair is a certificate and its private key, parsed and encoded.
type keyPair struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// newCA makes a self-signed CA valid from now-backdate to now+validity.
// ECDSA P-256: every TLS client the API server uses (Go's crypto/tls)
// accepts it, it is fast to sign and verify, and keys are small; Ed25519
// certificates are not accepted by every client and HSM-backed tooling.
func newCA(now time.Time, validity, backdate time.Duration) (keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return keyPair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// A distinct name per CA, so an old and a new CA in one bundle
		// are never confused by a chain builder.
		Subject:               pkix.Name{CommonName: fmt.Sprintf("skiff-webhook-ca@%d", now.UnixNano())},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return keyPair{}, fmt.Errorf("sign CA certificate: %w", err)
	}
	return encodePair(der, key)
}

// newServing makes a serving certificate for hosts (DNS names or IP
// addresses) signed by ca, valid from now-backdate to now+validity but
// never past ca's own expiry.
func newServing(ca keyPair, hosts []string, now time.Time, validity, backdate time.Duration) (keyPair, error) {
	if len(hosts) == 0 {
		return keyPair{}, errors.New("serving certificate: no hosts")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, fmt.Errorf("generate serving key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return keyPair{}, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return keyPair{}, fmt.Errorf("sign serving certificate for %v: %w", hosts, err)
	}
	return encodePair(der, key)
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n, nil
}

func encodePair(der []byte, key *ecdsa.PrivateKey) (keyPair, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return keyPair{}, fmt.Errorf("parse generated certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return keyPair{}, fmt.Errorf("encode generated key: %w", err)
	}
	return keyPair{
		cert:    cert,
		key:     key,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// parseCerts decodes every CERTIFICATE block of a PEM bundle. what names
// the input in errors (e.g. `secret "ns/name" key ca.crt`).
func parseCerts(data []byte, what string) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("%s: PEM block %d is %q, want CERTIFICATE", what, len(certs)+1, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d: %w", what, len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: bad PEM: no CERTIFICATE block", what)
	}
	return certs, nil
}

// parsePair decodes a certificate and its ECDSA key and checks that they
// belong together. what names the input in errors.
func parsePair(certPEM, keyPEM []byte, what string) (keyPair, error) {
	certs, err := parseCerts(certPEM, what+" certificate")
	if err != nil {
		return keyPair{}, err
	}
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		return keyPair{}, fmt.Errorf("%s key: bad PEM: no PEM block", what)
	}
	var key any
	switch b.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		return keyPair{}, fmt.Errorf("%s key: PEM block is %q, want PRIVATE KEY or EC PRIVATE KEY", what, b.Type)
	}
	if err != nil {
		return keyPair{}, fmt.Errorf("%s key: %w", what, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return keyPair{}, fmt.Errorf("%s key: %T, want an ECDSA key", what, key)
	}
	if !ec.PublicKey.Equal(certs[0].PublicKey) {
		return keyPair{}, fmt.Errorf("%s: key mismatch: the private key does not belong to the certificate %q", what, certs[0].Subject.CommonName)
	}
	return keyPair{cert: certs[0], key: ec, certPEM: certPEM, keyPEM: keyPEM}, nil
}

// tlsCertificate is the pair as crypto/tls serves it (the leaf only: the
// CA is what clients trust, so it is not sent).
func (p keyPair) tlsCertificate() *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{p.cert.Raw}, PrivateKey: p.key, Leaf: p.cert}
}

// hostsMatch reports whether cert names exactly hosts (in any order).
func hostsMatch(cert *x509.Certificate, hosts []string) bool {
	var have []string
	have = append(have, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		have = append(have, ip.String())
	}
	want := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		want = append(want, h)
	}
	slices.Sort(have)
	slices.Sort(want)
	return slices.Equal(slices.Compact(have), slices.Compact(want))
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
