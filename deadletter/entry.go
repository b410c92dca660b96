package deadletter

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/types"
)

// Limits of the layout. A ConfigMap holds at most 1 MiB; with entries of at
// most MaxEntryBytes plus a data key of at most 253 bytes, MaxMaxEntries
// entries stay under 900 KiB.
const (
	// MaxErrorBytes is how much of a last error an entry keeps (UTF-8 safe,
	// with "…" marking a cut).
	MaxErrorBytes = 1024
	// MaxEntryBytes bounds one encoded entry; an error whose JSON escaping
	// makes it longer is cut further.
	MaxEntryBytes = 2048
	// DefaultMaxEntries is StoreOptions.MaxEntries' default.
	DefaultMaxEntries = 256
	// MaxMaxEntries is the largest StoreOptions.MaxEntries allowed.
	MaxMaxEntries = 400
	// maxDataKey is the longest ConfigMap data key.
	maxDataKey = 253
	// maxReplica bounds the replica name kept in an entry.
	maxReplica = 253
)

// Entry is one persisted dead letter: a ConfigMap data value holds it as
// JSON. Key is the key as its Codec encodes it.
type Entry struct {
	Key          string    `json:"key"`
	Attempts     int       `json:"attempts"`
	LastError    string    `json:"lastError,omitempty"`
	FirstFailure time.Time `json:"firstFailure"`
	LastFailure  time.Time `json:"lastFailure"`
	// Replica is the replica that wrote the entry, which holds the key in
	// its queue's dead-letter set while it owns the key.
	Replica string `json:"replica"`
}

// Codec turns queue keys into the strings stored in Entry.Key and back.
// Encode must be injective, and Decode(Encode(k)) must return k.
type Codec[K comparable] interface {
	Encode(K) string
	Decode(string) (K, error)
}

// RequestCodec is the Codec of controller.Request (types.NamespacedName):
// "namespace/name", and "/name" for cluster-scoped objects. A namespace
// never contains "/", so the first "/" separates the two.
type RequestCodec struct{}

// Encode returns "namespace/name".
func (RequestCodec) Encode(k types.NamespacedName) string { return k.Namespace + "/" + k.Name }

// Decode parses what Encode returned.
func (RequestCodec) Decode(s string) (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || name == "" {
		return types.NamespacedName{}, fmt.Errorf("dead-letter key %q is not namespace/name", s)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// DataKey returns the ConfigMap data key of the entry for key. Data keys
// must match [-._a-zA-Z0-9]+ and be at most 253 bytes long, so: letters,
// digits, '.' and '-' stay; '_' becomes "__"; every other byte becomes '_'
// and two lower-case hex digits ("default/web" is "default_2fweb"), and so
// does a leading '.' ("." and ".." are no valid data keys). A
// result longer than 253 bytes is replaced by "_h" and the SHA-256 of key
// in hex. Both forms are injective and never collide ("_h" is no escape).
// The Entry's own Key field is the truth; the data key must match it.
func DataKey(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.' && i > 0:
			b.WriteByte(c)
		case c == '_':
			b.WriteString("__")
		default:
			fmt.Fprintf(&b, "_%02x", c)
		}
		if b.Len() > maxDataKey {
			sum := sha256.Sum256([]byte(key))
			return "_h" + hex.EncodeToString(sum[:])
		}
	}
	return b.String()
}

// ConfigMapName returns the name of the ConfigMap that holds controller's
// dead letters: "skiff-deadletters-" and the controller's name, lower-cased
// with every character outside [a-z0-9-] turned into '-'. If that changed
// the name or it would be too long, a '-' and the first 8 hex digits of the
// SHA-256 of the original name are appended, so two controllers never
// share a ConfigMap.
func ConfigMapName(controller string) string {
	const prefix, maxName = "skiff-deadletters-", 253
	s := []byte(strings.ToLower(controller))
	for i, c := range s {
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			s[i] = '-'
		}
	}
	name := strings.TrimRight(prefix+string(s), "-")
	if string(s) == controller && len(name) <= maxName && name == prefix+controller && controller != "" {
		return name
	}
	sum := sha256.Sum256([]byte(controller))
	suffix := "-" + hex.EncodeToString(sum[:4])
	name = strings.TrimRight(name[:min(len(name), maxName-len(suffix))], "-")
	return name + suffix
}

// NewEntry returns the Entry that persists a dead letter: err cut to
// MaxErrorBytes, replica to 253 bytes.
func NewEntry(key string, attempts int, err error, first, last time.Time, replica string) Entry {
	e := Entry{Key: key, Attempts: attempts, FirstFailure: first, LastFailure: last, Replica: truncate(replica, maxReplica)}
	if err != nil {
		e.LastError = truncate(err.Error(), MaxErrorBytes)
	}
	return e
}

// truncate cuts s to at most n bytes on a rune boundary, marking a cut with
// "…".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// Encode returns e's JSON, at most MaxEntryBytes long: an error whose
// escaping would make it longer is cut further.
func Encode(e Entry) (string, error) {
	for {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(e); err != nil {
			return "", fmt.Errorf("encode dead letter %q: %w", e.Key, err)
		}
		out := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
		if len(out) <= MaxEntryBytes {
			return string(out), nil
		}
		if e.LastError == "" {
			return "", fmt.Errorf("encode dead letter %q: %d bytes without its error, more than %d", e.Key, len(out), MaxEntryBytes)
		}
		e.LastError = truncate(e.LastError, len(e.LastError)/2)
	}
}

// ErrMalformed is wrapped by every error of Decode.
var ErrMalformed = errors.New("malformed dead-letter entry")

// Problem is a data key of the ConfigMap that is not a valid entry. It is
// skipped, reported, and left in the ConfigMap untouched.
type Problem struct {
	DataKey string
	Err     error
}

func (p Problem) Error() string { return fmt.Sprintf("data key %q: %v", p.DataKey, p.Err) }

// Decode parses the entry stored under dataKey. It fails, wrapping
// ErrMalformed, if value is not a JSON object of an Entry, if its key is
// empty, its attempts negative, or dataKey is not DataKey(key).
func Decode(dataKey, value string) (Entry, error) {
	var e Entry
	if err := json.Unmarshal([]byte(value), &e); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case e.Key == "":
		return Entry{}, fmt.Errorf("%w: no key", ErrMalformed)
	case e.Attempts < 0:
		return Entry{}, fmt.Errorf("%w: key %q: negative attempts %d", ErrMalformed, e.Key, e.Attempts)
	case DataKey(e.Key) != dataKey:
		return Entry{}, fmt.Errorf("%w: key %q belongs under data key %q", ErrMalformed, e.Key, DataKey(e.Key))
	}
	return e, nil
}

// Parse decodes every entry of a ConfigMap's data, keyed by Entry.Key, and
// lists the data keys it skipped, sorted.
func Parse(data map[string]string) (map[string]Entry, []Problem) {
	out := make(map[string]Entry, len(data))
	var problems []Problem
	for k, v := range data {
		e, err := Decode(k, v)
		if err != nil {
			problems = append(problems, Problem{DataKey: k, Err: err})
			continue
		}
		out[e.Key] = e
	}
	slices.SortFunc(problems, func(a, b Problem) int { return strings.Compare(a.DataKey, b.DataKey) })
	return out, problems
}
