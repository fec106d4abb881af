package codec

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

type utf8Case struct {
	name  string
	text  string
	valid bool
}

// autobahnUTF8 returns the UTF-8 test vectors of the Autobahn test suite's
// case 6 (after Markus Kuhn's UTF-8 decoder stress test).
func autobahnUTF8() []utf8Case {
	const kosme = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" // κόσμε
	cs := []utf8Case{
		{"6.1 empty", "", true},
		{"6.2 Hello-µ@ßöäüàá-UTF-8!!", "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!", true},
		{"6.3 surrogate inside text", kosme + "\xed\xa0\x80edited", false},
		{"6.4 above U+10FFFF inside text", kosme + "\xf4\x90\x80\x80edited", false},
		{"6.5 kosme", kosme, true},
		{"6.5 four-byte", "\xf0\x90\x80\x80", true},
		{"6.7 first 1-byte", "\x00", true},
		{"6.7 first 2-byte", "\xc2\x80", true},
		{"6.7 first 3-byte", "\xe0\xa0\x80", true},
		{"6.7 first 4-byte", "\xf0\x90\x80\x80", true},
		{"6.8 first 5-byte", "\xf8\x88\x80\x80\x80", false},
		{"6.8 first 6-byte", "\xfc\x84\x80\x80\x80\x80", false},
		{"6.9 last 1-byte", "\x7f", true},
		{"6.9 last 2-byte", "\xdf\xbf", true},
		{"6.9 last 3-byte", "\xef\xbf\xbf", true},
		{"6.9 last 4-byte", "\xf4\x8f\xbf\xbf", true},
		{"6.10 last 4-byte form", "\xf7\xbf\xbf\xbf", false},
		{"6.10 last 5-byte form", "\xfb\xbf\xbf\xbf\xbf", false},
		{"6.10 last 6-byte form", "\xfd\xbf\xbf\xbf\xbf\xbf", false},
		{"6.11 U+D7FF", "\xed\x9f\xbf", true},
		{"6.11 U+E000", "\xee\x80\x80", true},
		{"6.11 U+FFFD", "\xef\xbf\xbd", true},
		{"6.11 U+10FFFF", "\xf4\x8f\xbf\xbf", true},
		{"6.11 U+110000", "\xf4\x90\x80\x80", false},
		{"6.15 incomplete sequences concatenated", "\xc0\xe0\x80\xf0\x80\x80\xf8\x80\x80\x80\xfc\x80\x80\x80\x80" +
			"\xdf\xef\xbf\xf7\xbf\xbf\xfb\xbf\xbf\xbf\xfd\xbf\xbf\xbf\xbf", false},
		{"6.16 FE", "\xfe", false},
		{"6.16 FF", "\xff", false},
		{"6.16 FE FE FF FF", "\xfe\xfe\xff\xff", false},
	}
	// 6.6: every prefix of kosme, valid exactly at character boundaries.
	for i := 1; i <= len(kosme); i++ {
		cs = append(cs, utf8Case{fmt.Sprintf("6.6 kosme prefix %d", i), kosme[:i], utf8.RuneStart(kosme[i%len(kosme)]) || i == len(kosme)})
	}
	// 6.12: unexpected continuation bytes.
	cont := ""
	for c := 0x80; c <= 0xbf; c++ {
		cont += string(rune(0)) + string([]byte{byte(c)})
	}
	for i, s := range []string{"\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf",
		"\x80\xbf\x80\xbf\x80", "\x80\xbf\x80\xbf\x80\xbf", strings.ReplaceAll(cont, "\x00", "")} {
		cs = append(cs, utf8Case{fmt.Sprintf("6.12.%d continuation bytes", i+1), s, false})
	}
	// 6.13: lonely start bytes, each followed by a space.
	for _, r := range [][2]int{{0xc0, 0xdf}, {0xe0, 0xef}, {0xf0, 0xf7}, {0xf8, 0xfb}, {0xfc, 0xfd}} {
		var b []byte
		for c := r[0]; c <= r[1]; c++ {
			b = append(b, byte(c), ' ')
		}
		cs = append(cs, utf8Case{fmt.Sprintf("6.13 lonely %X-%X", r[0], r[1]), string(b), false})
	}
	groups := []struct {
		name string
		seqs []string
	}{
		{"6.14 last continuation missing", []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80",
			"\xfc\x80\x80\x80\x80", "\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}},
		{"6.17 overlong slash", []string{"\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf", "\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf"}},
		{"6.18 maximum overlong", []string{"\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf", "\xfc\x83\xbf\xbf\xbf\xbf"}},
		{"6.19 overlong NUL", []string{"\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80", "\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80"}},
		{"6.20 single surrogate", []string{"\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf",
			"\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf"}},
		{"6.21 paired surrogates", []string{"\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf",
			"\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf", "\xed\xae\x80\xed\xb0\x80",
			"\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf"}},
		{"truncated at the end", []string{"a\xe2\x82", "a\xf0\x9f\x98", "a\xc3", "\xf4\x8f\xbf"}},
	}
	for _, g := range groups {
		for i, s := range g.seqs {
			cs = append(cs, utf8Case{fmt.Sprintf("%s %d", g.name, i+1), s, false})
		}
	}
	// 6.22: noncharacters are valid UTF-8; 6.23: specials.
	var nonchars []byte
	for plane := rune(0); plane <= 16; plane++ {
		nonchars = utf8.AppendRune(nonchars, plane<<16|0xfffe)
		nonchars = utf8.AppendRune(nonchars, plane<<16|0xffff)
	}
	for r := rune(0xfdd0); r <= 0xfdef; r++ {
		nonchars = utf8.AppendRune(nonchars, r)
	}
	cs = append(cs, utf8Case{"6.22 noncharacters", string(nonchars), true},
		utf8Case{"6.23 specials", "\xef\xbf\xb9\xef\xbf\xba\xef\xbf\xbb\xef\xbf\xbc\xef\xbf\xbd", true})
	return cs
}

// firstInvalid returns the offset of the first byte of p that no valid
// UTF-8 text can have there, or -1 if p is a prefix of valid UTF-8.
// utf8.FullRune reports an invalid prefix as full as soon as its bytes
// prove it invalid.
func firstInvalid(p []byte) int {
	for i := 0; i < len(p); {
		if !utf8.FullRune(p[i:]) {
			return -1 // a valid, incomplete tail
		}
		if r, n := utf8.DecodeRune(p[i:]); r != utf8.RuneError || n != 1 {
			i += n
			continue
		}
		for k := 1; ; k++ {
			if utf8.FullRune(p[i : i+k]) {
				return i + k - 1
			}
		}
	}
	return -1
}

// checkSplit writes parts to a fresh validator and checks it against the
// reference: the verdict of utf8.Valid on the whole, and failing on exactly
// the part that holds the first invalid byte.
func checkSplit(t testing.TB, whole []byte, parts ...[]byte) {
	t.Helper()
	want, bad := utf8.Valid(whole), firstInvalid(whole)
	var v UTF8Validator
	end, ok := 0, true
	for k, p := range parts {
		end += len(p)
		got := v.Write(p)
		if wantOK := bad < 0 || end <= bad; got != wantOK {
			t.Fatalf("%q split %q: Write(part %d) = %v, want %v (first invalid byte at %d)", whole, parts, k, got, wantOK, bad)
		}
		ok = ok && got
	}
	if got := ok && v.Complete(); got != want {
		t.Fatalf("%q split %q: valid = %v, utf8.Valid = %v", whole, parts, got, want)
	}
}

func TestUTF8ValidatorAutobahn(t *testing.T) {
	for _, tc := range autobahnUTF8() {
		t.Run(tc.name, func(t *testing.T) {
			p := []byte(tc.text)
			if utf8.Valid(p) != tc.valid {
				t.Fatalf("test vector wrong: utf8.Valid = %v", !tc.valid)
			}
			checkSplit(t, p, p)
			for i := 0; i <= len(p); i++ {
				checkSplit(t, p, p[:i], p[i:])
				for j := i; j <= len(p); j++ {
					checkSplit(t, p, p[:i], p[i:j], p[j:])
				}
			}
		})
	}
}

func TestUTF8ValidatorLong(t *testing.T) {
	// Long runs go through the ASCII and utf8.Valid paths; put the
	// interesting bytes at every offset relative to the 8-byte words.
	for _, tc := range autobahnUTF8() {
		for pad := range 17 {
			p := []byte(strings.Repeat("a", pad) + tc.text + strings.Repeat("é", pad) + tc.text)
			checkSplit(t, p, p)
			checkSplit(t, p, p[:len(p)/2], p[len(p)/2:])
		}
	}
}

func TestUTF8ValidatorStickyAndReset(t *testing.T) {
	var v UTF8Validator
	if v.Write([]byte("ok\xff")) || v.Write([]byte("fine")) || v.Complete() {
		t.Fatal("failure is not sticky")
	}
	v.Reset()
	if !v.Write([]byte("\xe2\x82")) || v.Complete() {
		t.Fatal("pending sequence reported complete")
	}
	if !v.Write(nil) || !v.Write([]byte("\xac")) || !v.Complete() {
		t.Fatal("sequence split over writes rejected")
	}
	if v.Write(bytes.Repeat([]byte{0x80}, 1)) {
		t.Fatal("stray continuation accepted")
	}
}
