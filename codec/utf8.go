package codec

import "unicode/utf8"

// UTF8Validator validates UTF-8 incrementally (RFC 3629, as RFC 6455 8.1
// requires of text): feed a text message fragment by fragment, or a frame
// chunk by chunk as it arrives. It fails at the first byte that cannot start
// or continue a valid sequence, including sequences that are invalid before
// they are complete: F4 90 is already above U+10FFFF, ED A0 is a surrogate,
// E0 80 is overlong. The zero value is ready to use. A UTF8Validator is not
// safe for concurrent use.
//
// Whole runs are checked with utf8.Valid, after an 8-bytes-at-a-time ASCII
// scan; a small state machine carries the sequence split between two
// writes.
type UTF8Validator struct {
	need uint8 // continuation bytes still expected; utf8Failed once invalid
	rng  uint8 // index in contRanges of the range the next byte must be in
}

const utf8Failed = 0xff

// contRanges are the ranges of a continuation byte: index 0 any, the others
// the first continuation byte after E0, ED, F0 and F4 (RFC 3629 4).
var contRanges = [5]struct{ lo, hi byte }{
	{0x80, 0xBF},
	{0xA0, 0xBF}, // E0: no overlong 3-byte form
	{0x80, 0x9F}, // ED: no surrogates
	{0x90, 0xBF}, // F0: no overlong 4-byte form
	{0x80, 0x8F}, // F4: nothing above U+10FFFF
}

// leadBytes maps a byte at a sequence boundary to need<<4 | rng: 0 for
// ASCII, utf8Failed for a byte that cannot start a sequence.
var leadBytes = func() (t [256]uint8) {
	for c := 0x80; c < 0x100; c++ {
		t[c] = utf8Failed
	}
	for c := 0xC2; c <= 0xDF; c++ {
		t[c] = 1 << 4
	}
	for c := 0xE1; c <= 0xEF; c++ {
		t[c] = 2 << 4
	}
	t[0xE0], t[0xED] = 2<<4|1, 2<<4|2
	t[0xF0], t[0xF1], t[0xF2], t[0xF3], t[0xF4] = 3<<4|3, 3<<4, 3<<4, 3<<4, 3<<4|4
	return t
}()

// Write validates p as the continuation of what was written before. It
// returns false from the first call whose bytes make the text invalid, and
// from every call after it, until Reset. It does not allocate.
func (v *UTF8Validator) Write(p []byte) bool {
	for v.need != 0 { // finish the pending sequence
		if v.need == utf8Failed {
			return false
		}
		if len(p) == 0 {
			return true
		}
		v.step(p[0])
		p = p[1:]
	}
	cut := completeLen(p)
	if !utf8.Valid(p[:cut]) {
		v.need = utf8Failed
		return false
	}
	for _, c := range p[cut:] {
		v.step(c)
	}
	return v.need != utf8Failed
}

// step advances the state machine by one byte (at most 3 bytes are fed to
// it per Write, so it is kept simple rather than fast).
func (v *UTF8Validator) step(c byte) {
	switch v.need {
	case utf8Failed:
	case 0:
		if t := leadBytes[c]; t != 0 {
			v.need, v.rng = t>>4, t&0xf
		}
	default:
		if r := contRanges[v.rng]; c < r.lo || c > r.hi {
			v.need = utf8Failed
			return
		}
		v.need, v.rng = v.need-1, 0
	}
}

// completeLen returns the length of p without the incomplete sequence it
// may end with, the part that a later write can still complete. What it
// keeps is left to utf8.Valid, including any invalid byte at the end.
func completeLen(p []byte) int {
	for k := 1; k <= 4 && k <= len(p); k++ {
		c := p[len(p)-k]
		if c < 0x80 {
			return len(p)
		}
		if c >= 0xC0 { // a lead byte, or an invalid one (size 1)
			if t := leadBytes[c]; t != utf8Failed && int(t>>4) >= k {
				return len(p) - k
			}
			return len(p)
		}
	}
	return len(p)
}

// Complete reports whether everything written so far is valid UTF-8 that
// does not end inside a sequence: a text message is valid when Write
// never failed and Complete is true after its last fragment.
func (v *UTF8Validator) Complete() bool { return v.need == 0 }

// Reset makes v ready for a new message.
func (v *UTF8Validator) Reset() { *v = UTF8Validator{} }
