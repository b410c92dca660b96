package cert

import (
	"crypto/x509"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Keys and annotations of the Secret (see the package doc for the layout).
const (
	keyCACert      = "ca.crt"
	keyCAKey       = "ca.key"
	keyNextCACert  = "next-ca.crt"
	keyNextCAKey   = "next-ca.key"
	annPublishedAt = "cert.skiff.dev/next-ca-published"
	annSwitchedAt  = "cert.skiff.dev/ca-switched"
)

// state is the parsed content of the Secret.
type state struct {
	ca      keyPair             // the signing CA
	bundle  []*x509.Certificate // what the API server must trust: ca first
	next    *keyPair            // a CA published in bundle but not yet signing
	serving keyPair             // signed by ca (or by an older CA until renewed)
	// publishedAt is when next was published; switchedAt is when ca became
	// the signing CA while the previous one stayed in the bundle.
	publishedAt, switchedAt time.Time
}

// policy is what decide needs of the Options, defaults applied.
type policy struct {
	hosts                       []string
	caValidity, servingValidity time.Duration
	renewFraction               float64
	backdate, grace             time.Duration
}

// decision is decide's output: the state to write (nil: nothing to
// write), why, and when to decide again at the latest.
type decision struct {
	write  *state
	reason string
	wake   time.Time
}

// renewAt is when a certificate is due for replacement: when less than
// fraction of its lifetime remains.
func renewAt(c *x509.Certificate, fraction float64) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Add(-time.Duration(float64(life) * fraction))
}

// decide is the whole rotation protocol as a pure function: given the
// Secret's current state (nil when there is none), the time, and since
// when every configured webhook configuration carries cur's bundle (zero:
// not all of them do yet), it says what to write next.
func decide(cur *state, now time.Time, p policy, carriedSince time.Time) (decision, error) {
	if cur == nil {
		s, err := fresh(now, p)
		return decision{write: s, reason: "create CA and serving certificate"}, err
	}
	if !now.Before(cur.ca.cert.NotAfter) {
		// Nothing trusted can be served any more; start over (admissions
		// fail until the new bundle reaches the API server).
		s, err := fresh(now, p)
		return decision{write: s, reason: "CA expired at " + cur.ca.cert.NotAfter.Format(time.RFC3339) + "; start over"}, err
	}
	wake := now.Add(24 * time.Hour)
	soon := func(t time.Time) {
		if t.Before(wake) {
			wake = t
		}
	}

	// Phase 2: the new CA signs; the old one stays trusted for a grace
	// period so replicas still serving its certificates are accepted.
	if !cur.switchedAt.IsZero() && len(cur.bundle) > 1 && cur.next == nil {
		dropAt := cur.switchedAt.Add(p.grace)
		if !now.Before(dropAt) {
			s := *cur
			s.bundle = []*x509.Certificate{cur.ca.cert}
			s.switchedAt = time.Time{}
			return decision{write: &s, reason: "drop the previous CA from the bundle"}, nil
		}
		soon(dropAt)
	}

	// Phase 1: the next CA is published; switch once every webhook
	// configuration has carried the bundle for the grace period.
	if cur.next != nil {
		if !carriedSince.IsZero() && !now.Before(carriedSince.Add(p.grace)) {
			serving, err := newServing(*cur.next, p.hosts, now, p.servingValidity, p.backdate)
			if err != nil {
				return decision{}, err
			}
			s := state{
				ca:         *cur.next,
				bundle:     append([]*x509.Certificate{cur.next.cert}, without(cur.bundle, cur.next.cert)...),
				serving:    serving,
				switchedAt: now,
			}
			return decision{write: &s, reason: "switch serving certificate to the new CA"}, nil
		}
		if !carriedSince.IsZero() {
			soon(carriedSince.Add(p.grace))
		}
	} else if cur.switchedAt.IsZero() {
		// Steady state: publish a new CA when the current one is due.
		if due := renewAt(cur.ca.cert, p.renewFraction); !now.Before(due) {
			next, err := newCA(now, p.caValidity, p.backdate)
			if err != nil {
				return decision{}, err
			}
			s := *cur
			s.next = &next
			s.bundle = append(append([]*x509.Certificate{}, cur.bundle...), next.cert)
			s.publishedAt = now
			return decision{write: &s, reason: "publish a new CA next to the current one"}, nil
		} else {
			soon(due)
		}
	}

	// The serving certificate under the current CA: renew when due, when
	// the hosts changed, or when another CA signed it.
	reason := ""
	switch due := renewAt(cur.serving.cert, p.renewFraction); {
	case !now.Before(due):
		reason = "renew serving certificate (due " + due.Format(time.RFC3339) + ")"
	case !hostsMatch(cur.serving.cert, p.hosts):
		reason = fmt.Sprintf("reissue serving certificate for hosts %v", p.hosts)
	case cur.serving.cert.CheckSignatureFrom(cur.ca.cert) != nil:
		reason = "reissue serving certificate under the signing CA"
	default:
		soon(due)
	}
	if reason != "" {
		serving, err := newServing(cur.ca, p.hosts, now, p.servingValidity, p.backdate)
		if err != nil {
			return decision{}, err
		}
		s := *cur
		s.serving = serving
		return decision{write: &s, reason: reason}, nil
	}
	return decision{wake: wake}, nil
}

func fresh(now time.Time, p policy) (*state, error) {
	ca, err := newCA(now, p.caValidity, p.backdate)
	if err != nil {
		return nil, err
	}
	serving, err := newServing(ca, p.hosts, now, p.servingValidity, p.backdate)
	if err != nil {
		return nil, err
	}
	return &state{ca: ca, bundle: []*x509.Certificate{ca.cert}, serving: serving}, nil
}

func without(certs []*x509.Certificate, c *x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, x := range certs {
		if !x.Equal(c) {
			out = append(out, x)
		}
	}
	return out
}

// encode writes s into a Secret's data and annotations (ann is modified).
func (s *state) encode(ann map[string]string) map[string][]byte {
	data := map[string][]byte{
		corev1.TLSCertKey:       s.serving.certPEM,
		corev1.TLSPrivateKeyKey: s.serving.keyPEM,
		keyCACert:               encodeCerts(s.bundle),
		keyCAKey:                s.ca.keyPEM,
	}
	if s.next != nil {
		data[keyNextCACert] = s.next.certPEM
		data[keyNextCAKey] = s.next.keyPEM
	}
	setTime(ann, annPublishedAt, s.publishedAt)
	setTime(ann, annSwitchedAt, s.switchedAt)
	return data
}

func setTime(ann map[string]string, k string, t time.Time) {
	if t.IsZero() {
		delete(ann, k)
		return
	}
	ann[k] = t.UTC().Format(time.RFC3339Nano)
}

// parseSecret reads the state out of a Secret, naming the Secret and key
// of whatever is wrong.
func parseSecret(sec *corev1.Secret) (*state, error) {
	name := fmt.Sprintf("secret %s/%s", sec.Namespace, sec.Name)
	if sec.Type != corev1.SecretTypeTLS {
		return nil, fmt.Errorf("%s has type %q, want %q", name, sec.Type, corev1.SecretTypeTLS)
	}
	bundle, err := parseCerts(sec.Data[keyCACert], name+" key "+keyCACert)
	if err != nil {
		return nil, err
	}
	ca, err := parsePair(encodeCerts(bundle[:1]), sec.Data[keyCAKey], name+" keys "+keyCACert+"/"+keyCAKey)
	if err != nil {
		return nil, err
	}
	serving, err := parsePair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey], name+" keys tls.crt/tls.key")
	if err != nil {
		return nil, err
	}
	s := &state{ca: ca, bundle: bundle, serving: serving}
	if _, ok := sec.Data[keyNextCAKey]; ok {
		next, err := parsePair(sec.Data[keyNextCACert], sec.Data[keyNextCAKey], name+" keys "+keyNextCACert+"/"+keyNextCAKey)
		if err != nil {
			return nil, err
		}
		s.next = &next
	}
	for k, t := range map[string]*time.Time{annPublishedAt: &s.publishedAt, annSwitchedAt: &s.switchedAt} {
		if v, ok := sec.Annotations[k]; ok {
			if *t, err = time.Parse(time.RFC3339Nano, v); err != nil {
				return nil, fmt.Errorf("%s annotation %s: %w", name, k, err)
			}
		}
	}
	return s, nil
}
