package cert

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

var testPolicy = policy{
	hosts:      []string{"svc", "svc.ns", "127.0.0.1"},
	caValidity: 300 * time.Hour, servingValidity: 30 * time.Hour,
	renewFraction: 1.0 / 3, backdate: time.Minute, grace: time.Hour,
}

// roundTrip passes s through the Secret encoding, as every replica sees it.
func roundTrip(t *testing.T, s *state) *state {
	t.Helper()
	sec := testSecret(s)
	got, err := parseSecret(sec)
	if err != nil {
		t.Fatalf("parse encoded state: %v", err)
	}
	return got
}

func mustDecide(t *testing.T, cur *state, now time.Time, since time.Time) decision {
	t.Helper()
	d, err := decide(cur, now, testPolicy, since)
	if err != nil {
		t.Fatalf("decide at %v: %v", now, err)
	}
	return d
}

// trusted reports whether serving verifies against bundle for host.
func trusted(s *state, bundle []*x509.Certificate, now time.Time) error {
	pool := x509.NewCertPool()
	for _, c := range bundle {
		pool.AddCert(c)
	}
	_, err := s.serving.cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "svc.ns", CurrentTime: now})
	return err
}

func TestDecideCreatesWhenMissing(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	d := mustDecide(t, nil, t0, time.Time{})
	if d.write == nil {
		t.Fatal("no Secret: want a write")
	}
	s := roundTrip(t, d.write)
	if err := trusted(s, s.bundle, t0); err != nil {
		t.Fatalf("fresh serving certificate not trusted by its bundle: %v", err)
	}
	if !hostsMatch(s.serving.cert, testPolicy.hosts) {
		t.Fatalf("hosts %v %v, want %v", s.serving.cert.DNSNames, s.serving.cert.IPAddresses, testPolicy.hosts)
	}
	if got := s.serving.cert.NotAfter.Sub(t0); got != 30*time.Hour {
		t.Fatalf("serving validity %v, want 30h", got)
	}
	if got := s.ca.cert.NotBefore; !got.Equal(t0.Add(-time.Minute)) {
		t.Fatalf("CA NotBefore %v, want backdated 1m", got)
	}
	// Nothing to do right after; wake when the serving cert is due.
	d = mustDecide(t, s, t0.Add(time.Second), time.Time{})
	if d.write != nil {
		t.Fatalf("fresh state: unexpected write (%s)", d.reason)
	}
	if due := renewAt(s.serving.cert, 1.0/3); !d.wake.Equal(due) {
		t.Fatalf("wake %v, want serving due time %v", d.wake, due)
	}
}

// TestRotationKeepsTrust walks a fake clock through many serving
// rotations and two CA rotations, with "every object carries the bundle"
// reported a little after each publish, and checks at every step that the
// certificate served before and after a write is trusted by every bundle
// the API server may hold at that moment.
func TestRotationKeepsTrust(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	d := mustDecide(t, nil, now, time.Time{})
	cur := roundTrip(t, d.write)
	// apiBundle is what the API server trusts: the bundle the objects
	// carry, updated injectDelay after a publish.
	apiBundle := cur.bundle
	var pendingBundle []*x509.Certificate
	var carriedSince, pendingAt time.Time
	const injectDelay = 10 * time.Minute
	servingChanges, caChanges := 0, 0
	reasons := map[string]int{}
	end := now.Add(700 * time.Hour)
	for now.Before(end) {
		now = now.Add(7 * time.Minute)
		if pendingBundle != nil && !now.Before(pendingAt) {
			apiBundle, pendingBundle, carriedSince = pendingBundle, nil, now
		}
		d := mustDecide(t, cur, now, carriedSince)
		if d.write == nil {
			if !d.wake.After(now) {
				t.Fatalf("at %v: no write but wake %v is not in the future", now, d.wake)
			}
			continue
		}
		next := roundTrip(t, d.write)
		reasons[strings.Fields(d.reason)[0]+" "+strings.Fields(d.reason)[1]]++
		if !next.serving.cert.Equal(cur.serving.cert) {
			servingChanges++
			// Replicas may serve either certificate for a while: both must
			// be trusted by what the API server holds.
			if err := trusted(next, apiBundle, now); err != nil {
				t.Fatalf("at %v (%s): new serving certificate not trusted by the API server's bundle: %v", now, d.reason, err)
			}
		}
		if err := trusted(cur, apiBundle, now); err != nil {
			t.Fatalf("at %v: old serving certificate no longer trusted: %v", now, err)
		}
		if !next.ca.cert.Equal(cur.ca.cert) {
			caChanges++
		}
		if encodeString(next.bundle) != encodeString(cur.bundle) {
			// A bundle change removing a CA must not drop the one the
			// still-served certificates need.
			if err := trusted(cur, next.bundle, now); err != nil && !next.ca.cert.Equal(cur.ca.cert) {
				t.Fatalf("at %v (%s): new bundle drops the CA of the old serving certificate", now, d.reason)
			}
			pendingBundle, pendingAt, carriedSince = next.bundle, now.Add(injectDelay), time.Time{}
		}
		cur = next
	}
	if servingChanges < 20 || caChanges < 2 {
		t.Fatalf("serving changes %d, CA changes %d over 700h; want ≥20 and ≥2 (reasons %v)", servingChanges, caChanges, reasons)
	}
	for _, r := range []string{"publish a", "switch serving", "drop the", "renew serving"} {
		if reasons[r] == 0 {
			t.Errorf("step %q never happened (reasons %v)", r, reasons)
		}
	}
}

func encodeString(c []*x509.Certificate) string { return string(encodeCerts(c)) }

func TestDecideWaitsForInjectionAndGrace(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cur := roundTrip(t, mustDecide(t, nil, t0, time.Time{}).write)
	due := renewAt(cur.ca.cert, 1.0/3)
	pub := mustDecide(t, cur, due, time.Time{})
	if pub.write == nil || pub.write.next == nil || len(pub.write.bundle) != 2 {
		t.Fatalf("CA due: want next CA published in a 2-CA bundle, got %+v", pub)
	}
	cur = roundTrip(t, pub.write)
	// A fresh serving certificate, so only the CA steps are due below.
	serving, err := newServing(cur.ca, testPolicy.hosts, due.Add(time.Hour), testPolicy.servingValidity, testPolicy.backdate)
	if err != nil {
		t.Fatal(err)
	}
	cur.serving = serving
	for _, tc := range []struct {
		name    string
		at      time.Duration // after due
		since   time.Duration // -1: not carried
		switch_ bool
	}{
		{"not carried", 5 * time.Hour, -1, false},
		{"carried, within grace", 2 * time.Hour, time.Hour + time.Minute, false},
		{"carried, grace over", 3 * time.Hour, time.Hour, true},
	} {
		var since time.Time
		if tc.since >= 0 {
			since = due.Add(tc.since)
		}
		d := mustDecide(t, cur, due.Add(tc.at), since)
		switched := d.write != nil && !d.write.ca.cert.Equal(cur.ca.cert)
		if switched != tc.switch_ {
			t.Errorf("%s: switched=%v (%s), want %v", tc.name, switched, d.reason, tc.switch_)
		}
		if !tc.switch_ && tc.since >= 0 && !d.wake.Equal(since.Add(time.Hour)) {
			t.Errorf("%s: wake %v, want end of grace %v", tc.name, d.wake, since.Add(time.Hour))
		}
	}
}

func TestDecideReissuesForNewHostsAndExpiredCA(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cur := roundTrip(t, mustDecide(t, nil, t0, time.Time{}).write)
	p := testPolicy
	p.hosts = []string{"other"}
	d, err := decide(cur, t0.Add(time.Minute), p, time.Time{})
	if err != nil || d.write == nil || !hostsMatch(d.write.serving.cert, p.hosts) || !d.write.ca.cert.Equal(cur.ca.cert) {
		t.Fatalf("hosts changed: want new serving cert for %v under the same CA, got %v (%v)", p.hosts, d.reason, err)
	}
	d = mustDecide(t, cur, cur.ca.cert.NotAfter, time.Time{})
	if d.write == nil || d.write.ca.cert.Equal(cur.ca.cert) || len(d.write.bundle) != 1 {
		t.Fatalf("CA expired: want a fresh CA, got %q", d.reason)
	}
}
