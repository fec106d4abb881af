package codec

// Character classes of HTTP (RFC 9110 5.6.2 and 5.5), shared by the request
// parser and the response writers.

// tokenChars marks the tchar bytes of RFC 9110 5.6.2:
// "!#$%&'*+-.^_`|~", digits and letters.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// isToken reports whether b is a non-empty token.
func isToken[T string | []byte](b T) bool {
	for i := range len(b) {
		if !tokenChars[b[i]] {
			return false
		}
	}
	return len(b) > 0
}

// validValue reports whether a trimmed field value holds no control
// character other than HTAB (RFC 9110 5.5: field-vchar, obs-text, SP, HTAB).
func validValue(v []byte) bool {
	for _, c := range v {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// trimOWS trims optional whitespace (SP and HTAB) from both ends of b.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// trimCR drops the CR of a CRLF line end.
func trimCR(line []byte) []byte {
	if len(line) > 0 && line[len(line)-1] == '\r' {
		return line[:len(line)-1]
	}
	return line
}

// lowerEqual reports whether the token b equals lower, which holds only
// lower-case letters and '-', ignoring ASCII case. For a token, OR-ing
// 0x20 maps a byte onto such a character only if it is that character or
// its upper-case letter.
func lowerEqual(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		if b[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals s under ASCII case folding, as
// header names and tokens compare (RFC 9110 5.1); it does not allocate.
func EqualFold(b []byte, s string) bool { return foldEqual(b, s) }

// foldEqual reports whether b equals s under ASCII case folding.
func foldEqual[T string | []byte](b T, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		if toLower(b[i]) != toLower(s[i]) {
			return false
		}
	}
	return true
}

func toLower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// hasToken reports whether the comma list v has an element equal to tok
// (lower case) ignoring ASCII case, such as "upgrade" in
// "keep-alive, Upgrade".
func hasToken(v []byte, tok string) bool {
	found := false
	visitElements(v, func(e []byte) bool {
		found = foldEqual(e, tok)
		return !found
	})
	return found
}
