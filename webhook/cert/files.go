package cert

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// FilesOptions configure a Files source.
type FilesOptions struct {
	// Dir holds tls.crt and tls.key, and optionally ca.crt — the layout of
	// a kubernetes.io/tls Secret mounted as a volume, as cert-manager
	// writes it. Required.
	Dir string
	// Interval is how often Run checks the files for changes. Default 10s.
	Interval time.Duration
	// Logger receives reload failures. Default slog.Default().
	Logger *slog.Logger
}

// Files serves a certificate from files someone else writes and rotates
// (cert-manager), reloading it when they change. A pair that does not
// parse or whose key does not match (a half-written update) is never
// served: the previous pair stays until both files are consistent. Files
// does not touch caBundle fields: whoever issues the files injects them
// (cert-manager's CA injector). Its methods are safe for concurrent use.
type Files struct {
	o FilesOptions

	current atomic.Pointer[filePair]
	mu      sync.Mutex // serialises Reload
	hash    [sha256.Size]byte
	lastErr error
}

type filePair struct {
	cert   *tls.Certificate
	bundle []byte // nil without ca.crt
}

// NewFiles loads the files once (so a missing or bad pair is reported at
// start, naming the file) and returns the source. It starts nothing.
func NewFiles(o FilesOptions) (*Files, error) {
	if o.Dir == "" {
		return nil, errors.New("cert: FilesOptions.Dir is empty")
	}
	if o.Interval == 0 {
		o.Interval = 10 * time.Second
	}
	if o.Interval < 0 {
		return nil, fmt.Errorf("cert: negative FilesOptions.Interval %v", o.Interval)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	f := &Files{o: o}
	if _, err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// GetCertificate returns the newest consistent pair; use it as
// tls.Config.GetCertificate.
func (f *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.current.Load().cert, nil
}

// CABundle returns the content of ca.crt as of the last reload, or an
// error if the directory has no ca.crt. The caller owns the slice.
func (f *Files) CABundle() ([]byte, error) {
	b := f.current.Load().bundle
	if b == nil {
		return nil, fmt.Errorf("cert: no ca.crt in %s", f.o.Dir)
	}
	return bytes.Clone(b), nil
}

// Reload reads the files and, if their content changed and is a
// consistent pair, serves it. It reports whether a new pair is served;
// on error the previous pair stays. Run calls it every Interval.
func (f *Files) Reload() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(f.o.Dir, name))
		if err != nil {
			return nil, fmt.Errorf("cert: read %w", err)
		}
		return b, nil
	}
	certPEM, err := read("tls.crt")
	if err != nil {
		return false, err
	}
	keyPEM, err := read("tls.key")
	if err != nil {
		return false, err
	}
	bundle, err := read("ca.crt")
	if errors.Is(err, os.ErrNotExist) {
		bundle, err = nil, nil
	}
	if err != nil {
		return false, err
	}
	h := sha256.New()
	for _, b := range [][]byte{certPEM, {0}, keyPEM, {0}, bundle} {
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if sum == f.hash && f.current.Load() != nil {
		return false, f.lastErr
	}
	f.hash = sum
	f.lastErr = f.load(certPEM, keyPEM, bundle)
	return f.lastErr == nil, f.lastErr
}

func (f *Files) load(certPEM, keyPEM, bundle []byte) error {
	dir := f.o.Dir
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// Say which file is bad PEM; otherwise crypto/tls's reason (e.g.
		// "private key does not match public key") names the mismatch.
		if _, perr := parseCerts(certPEM, "tls.crt in "+dir); perr != nil {
			return fmt.Errorf("cert: %w", perr)
		}
		if b, _ := pem.Decode(keyPEM); b == nil {
			return fmt.Errorf("cert: tls.key in %s: bad PEM: no PEM block", dir)
		}
		return fmt.Errorf("cert: tls.crt/tls.key in %s: %w", dir, err)
	}
	if bundle != nil {
		if _, err := parseCerts(bundle, "ca.crt in "+dir); err != nil {
			return fmt.Errorf("cert: %w", err)
		}
	}
	f.current.Store(&filePair{cert: &pair, bundle: bundle})
	return nil
}

// Run calls Reload every Interval until ctx ends, then returns nil.
// Failures are logged and the previous pair keeps being served.
func (f *Files) Run(ctx context.Context) error {
	t := time.NewTicker(f.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if changed, err := f.Reload(); err != nil {
				f.o.Logger.Warn("cert: keeping the previous certificate", "dir", f.o.Dir, "err", err)
			} else if changed {
				f.o.Logger.Info("cert: reloaded certificate", "dir", f.o.Dir)
			}
		}
	}
}
