package cache

import (
	"testing"

	kjson "sigs.k8s.io/json"
)

// checkUnquote fails t unless unquoteJSON reads the string at the start of
// b as kjson decodes it: the same value, or both refusing it.
func checkUnquote(t *testing.T, b []byte) {
	t.Helper()
	if len(b) == 0 || b[0] != '"' {
		return
	}
	got, end, ok := unquoteJSON(b, 0)
	var want string
	err := kjson.UnmarshalCaseSensitivePreserveInts(b[:max(end, 0)], &want)
	switch {
	case ok && err != nil:
		t.Fatalf("%q: unquoteJSON read %q (to %d), kjson refuses %q: %v", b, got, end, b[:end], err)
	case ok && got != want:
		t.Fatalf("%q: unquoteJSON %q, kjson %q", b, got, want)
	case !ok:
		// kjson must refuse every string unquoteJSON refuses. Where
		// unquoteJSON stopped is not a string's end, so ask kjson about
		// the string as skipString delimits it.
		if e, serr := skipString(b, 0); serr == nil {
			if kerr := kjson.UnmarshalCaseSensitivePreserveInts(b[:e], &want); kerr == nil {
				t.Fatalf("%q: unquoteJSON refuses it, kjson reads %q", b[:e], want)
			}
		}
	}
}

func TestUnquoteJSON(t *testing.T) {
	for _, s := range []string{
		`""`, `"plain"`, `"a\"b\\c\/d\be\ff\ng\rh\ti"`, `"\u00e9\u20AC\ud83d\ude00"`,
		`"\ud800"`, `"\udc00x"`, `"\ud800\u0041"`, `"\ud800\ud800\udc00"`, "\"\xff\xfe ok \xc3\xa9\"",
		`"{\"apiVersion\":\"v1\",\"kind\":\"Pod\"}"`, `"tail\\"`,
		`"\q"`, `"\u12"`, `"\uZZZZ"`, `"\ud800\uZZZZ"`, "\"ctl\x01\"", `"open`, `"\`, `"\'"`,
	} {
		checkUnquote(t, []byte(s))
	}
}

// FuzzUnquoteJSON: unquoteJSON agrees with kjson on every string.
func FuzzUnquoteJSON(f *testing.F) {
	for _, s := range []string{`"a\nb"`, `"\ud83d\ude00"`, `"\ud800x"`, "\"\xff\"", `"\u00zz"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkUnquote(t, append([]byte{'"'}, b...))
	})
}

// BenchmarkUnquoteJSON: a 400-byte message with quotes, newlines and a
// non-ASCII escape, as status messages and embedded configs have them.
func BenchmarkUnquoteJSON(b *testing.B) {
	var msg []byte
	msg = append(msg, '"')
	for range 10 {
		msg = append(msg, `step \"apply\" failed:\n\tconfig \u00e9 invalid; `...)
	}
	msg = append(msg, '"')
	b.Run("decoder=kjson", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			var s string
			if err := kjson.UnmarshalCaseSensitivePreserveInts(msg, &s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decoder=unquote", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if _, _, ok := unquoteJSON(msg, 0); !ok {
				b.Fatal("refused")
			}
		}
	})
}
