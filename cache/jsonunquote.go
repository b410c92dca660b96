package cache

import (
	"unicode/utf16"
	"unicode/utf8"
)

// unquoteJSON decodes the JSON string starting at b[i] == '"' the way
// encoding/json (and so sigs.k8s.io/json) does: the escapes \" \\ \/ \b
// \f \n \r \t and \uXXXX, a \u surrogate pair as one rune, a lone or
// broken surrogate as U+FFFD, and each byte of invalid UTF-8 as U+FFFD. It
// returns the string and the offset past its closing quote; ok is false
// for what JSON forbids (a control character, an unknown escape, a \u
// without four hex digits, no closing quote), where the JSON decoders
// fail. The fast decoders use it for strings that scanPlainString does not
// take as they are (escapes, bytes of 0x80 and up that are not valid
// UTF-8).
func unquoteJSON(b []byte, i int) (s string, end int, ok bool) {
	// The value is at most as long as the literal (escapes shrink), but
	// for invalid UTF-8 (one byte becomes three): one buffer, one copy.
	n, err := skipString(b, i)
	if err != nil {
		return "", n, false
	}
	out := make([]byte, 0, n-i)
	j := i + 1
	for {
		k, high := plainRun(b, j)
		out = appendUTF8(out, b[j:k], high)
		if k >= len(b) {
			return "", k, false
		}
		switch b[k] {
		case '"':
			return string(out), k + 1, true
		case '\\':
			if k+1 >= len(b) {
				return "", k, false
			}
			var c byte
			switch b[k+1] {
			case '"', '\\', '/':
				c = b[k+1]
			case 'b':
				c = '\b'
			case 'f':
				c = '\f'
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			case 'u':
				r, ok := hex4(b, k+2)
				if !ok {
					return "", k, false
				}
				j = k + 6
				if utf16.IsSurrogate(r) {
					if r2, ok := hex4(b, j+2); ok && j+1 < len(b) && b[j] == '\\' && b[j+1] == 'u' {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							out = utf8.AppendRune(out, d)
							j += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
				continue
			default:
				return "", k, false
			}
			out = append(out, c)
			j = k + 2
		default: // a control character
			return "", k, false
		}
	}
}

// appendUTF8 appends seg to out, each byte of invalid UTF-8 replaced by
// U+FFFD; high says whether seg has bytes of 0x80 and up at all.
func appendUTF8(out, seg []byte, high bool) []byte {
	if !high || utf8.Valid(seg) {
		return append(out, seg...)
	}
	for len(seg) > 0 {
		r, n := utf8.DecodeRune(seg)
		if r == utf8.RuneError && n == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, seg[:n]...)
		}
		seg = seg[n:]
	}
	return out
}

// hex4 reads the four hex digits at b[i:i+4] as a rune.
func hex4(b []byte, i int) (rune, bool) {
	if i < 0 || i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}
