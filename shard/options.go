package shard

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/skiffkit/skiff/queue"
)

// Lease metadata written and read by members.
const (
	// GroupLabel on a member's Lease names its group; members list Leases
	// by it.
	GroupLabel = "shard.skiff.dev/group"
	// WeightAnnotation is the member's Weight (strconv 'g' format; absent
	// for 0).
	WeightAnnotation = "shard.skiff.dev/weight"
	// SelectorAnnotation is the member's label Selector (labels.Selector
	// String form; absent for none).
	SelectorAnnotation = "shard.skiff.dev/selector"
	// DrainedAnnotation is the ring version the member has drained to:
	// it holds no item, and starts none, that it does not own under that
	// ring.
	DrainedAnnotation = "shard.skiff.dev/drained"
)

// Options configures a Replica. Namespace and Group are required; every
// other field has a default.
type Options struct {
	// Namespace holds the members' Leases. Required.
	Namespace string
	// Group names the set of replicas that share work (one per controller
	// group, e.g. the operator's name). Leases are named
	// "<Group>-<Identity>" and labelled GroupLabel=<Group>. Required; a
	// valid label value.
	Group string
	// Identity names this replica, unique in the group: its Lease's
	// holderIdentity and its ID in the ring. It must be fresh for each
	// process start (a restarted replica is a new member). Default: the
	// host name, lower-cased, + "-" + 8 random hex digits.
	Identity string
	// Weight is this member's initial Member.Weight. Default 0: an equal
	// share. SetWeight changes it at run time.
	Weight float64
	// Selector is this member's initial Member.Selector. Default nil.
	// SetSelector changes it at run time.
	Selector labels.Selector
	// LeaseDuration is how long others wait without seeing this member
	// renew before they take its work. Default 10s.
	LeaseDuration time.Duration
	// RenewDeadline: this member stops admitting work (and cancels the
	// contexts of work in flight) when its last successful renewal was
	// sent this long ago. Default 7s. LeaseDuration − RenewDeadline is the
	// time a cancelled reconcile has to return, plus clock-rate drift.
	RenewDeadline time.Duration
	// RetryPeriod is how often the member renews its Lease and reads the
	// others'. Default 1s. A hand-off takes about two of these.
	RetryPeriod time.Duration
	// ReleaseTimeout bounds how long Run, once its context is done, waits
	// for work in flight to finish before it deletes its Lease. If work is
	// still in flight then, Run leaves the Lease to expire instead (others
	// take over after LeaseDuration) and returns an error. Default 30s.
	ReleaseTimeout time.Duration
	// Clock is the source of time. Default queue.RealClock{}.
	Clock queue.Clock
	// Logger receives membership and hand-off events. Default
	// slog.Default().
	Logger *slog.Logger
}

func (o *Options) defaults() error {
	if o.Namespace == "" || o.Group == "" {
		return errors.New("shard: Options need Namespace and Group")
	}
	if errs := validation.IsValidLabelValue(o.Group); len(errs) > 0 {
		return fmt.Errorf("shard: Group %q is not a valid label value: %s", o.Group, strings.Join(errs, "; "))
	}
	if o.Identity == "" {
		o.Identity = defaultIdentity()
	}
	if errs := validation.IsDNS1123Subdomain(o.leaseName()); len(errs) > 0 {
		return fmt.Errorf("shard: Lease name %q (Group-Identity) is not valid: %s", o.leaseName(), strings.Join(errs, "; "))
	}
	if _, err := NewRing([]Member{{ID: o.Identity, Weight: o.Weight}}); err != nil {
		return err
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = 10 * time.Second
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = 7 * time.Second
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = time.Second
	}
	if o.ReleaseTimeout == 0 {
		o.ReleaseTimeout = 30 * time.Second
	}
	if !(o.LeaseDuration > o.RenewDeadline && o.RenewDeadline > o.RetryPeriod && o.RetryPeriod > 0) {
		return fmt.Errorf("shard: need LeaseDuration (%v) > RenewDeadline (%v) > RetryPeriod (%v) > 0",
			o.LeaseDuration, o.RenewDeadline, o.RetryPeriod)
	}
	if o.LeaseDuration%time.Second != 0 {
		return fmt.Errorf("shard: LeaseDuration %v is not whole seconds (a Lease stores seconds)", o.LeaseDuration)
	}
	if o.Clock == nil {
		o.Clock = queue.RealClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

func (o *Options) leaseName() string { return o.Group + "-" + o.Identity }

func defaultIdentity() string {
	host, _ := os.Hostname()
	var b strings.Builder
	for _, r := range strings.ToLower(host) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 40 {
		name = name[:40]
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	if name == "" {
		name = "replica"
	}
	return name + "-" + hex.EncodeToString(suffix)
}
