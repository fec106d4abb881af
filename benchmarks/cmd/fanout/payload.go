package main

import (
	"bytes"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// The payload. Bytes 0-15 hold the sequence number (40 bits) and the
// publisher's send time in nanoseconds since the process started (56
// bits), six bits to a byte as '0'+v, so the header is printable ASCII
// without a space or a newline: a text frame stays valid UTF-8, and a
// server that joins queued messages into one frame with newlines (the
// gorilla chat example's hub) can be split again. The rest is letters
// starting at 'a'+seq%26, or chat-like JSON, so every message's bytes
// depend on its sequence number. Join probes carry probeBit in the
// sequence number.

const (
	headerLen = 16
	seqBits   = 40
	timeBits  = 6*headerLen - seqBits
	probeBit  = uint64(1) << (seqBits - 1)
)

// epoch is the zero of the header's send times.
var epoch = time.Now().UnixNano()

const alphabet = "abcdefghijklmnopqrstuvwxyz"

// pattern is the alphabet repeated so that pattern[k:k+size-16] is the body
// of every message whose sequence number is k mod 26.
type pattern []byte

// newJSONPattern is a pattern of chat-like JSON (ASCII): bodies that
// compress as real traffic does.
func newJSONPattern(size int) pattern {
	return pattern(wsload.JSONText(size+len(alphabet), 1))
}

func newPattern(size int) pattern {
	b := make([]byte, 0, size+len(alphabet))
	for len(b) < size+len(alphabet) {
		b = append(b, alphabet...)
	}
	return pattern(b[:size+len(alphabet)])
}

func (pt pattern) body(seq uint64, size int) []byte {
	k := int(seq % uint64(len(alphabet)))
	return pt[k : k+size-headerLen]
}

// fill writes a whole payload into p.
func (pt pattern) fill(p []byte, seq uint64, sent int64) {
	putHeader(p, seq, sent)
	copy(p[headerLen:], pt.body(seq, len(p)))
}

// check reports whether p's body is the one for seq.
func (pt pattern) check(p []byte, seq uint64) bool {
	return bytes.Equal(p[headerLen:], pt.body(seq, len(p)))
}

func putHeader(p []byte, seq uint64, sent int64) {
	// The 96 bits, seq then the time, are hi's low 32 and lo.
	seq &= 1<<seqBits - 1
	hi, lo := seq>>(64-timeBits), seq<<timeBits|uint64(sent-epoch)&(1<<timeBits-1)
	for i := headerLen - 1; i >= 0; i-- {
		p[i] = '0' + byte(lo&0x3f)
		lo = lo>>6 | hi<<(64-6)
		hi >>= 6
	}
}

// getHeader decodes what putHeader wrote; ok is false if a byte is not
// one putHeader writes.
func getHeader(p []byte) (seq uint64, sent int64, ok bool) {
	var hi, lo uint64
	ok = true
	for _, c := range p[:headerLen] {
		v := c - '0'
		ok = ok && v < 0x40
		hi = hi<<6 | lo>>(64-6)
		lo = lo<<6 | uint64(v&0x3f)
	}
	seq = hi<<(64-timeBits) | lo>>timeBits
	return seq, int64(lo&(1<<timeBits-1)) + epoch, ok
}
