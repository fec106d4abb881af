package main

import (
	"bytes"

	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// The payload. Bytes 0-15 hold the sequence number (48 bits) and the
// publisher's send time, time.Now().UnixNano() (64 bits), packed seven bits
// to a byte so that a text frame stays ASCII (valid UTF-8). The rest is
// letters starting at 'a'+seq%26, so every message's bytes depend on its
// sequence number. Join probes carry probeBit in the sequence number.

const (
	headerLen = 16
	seqBits   = 48
	probeBit  = uint64(1) << (seqBits - 1)
)

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
	hi, lo := seq&(1<<seqBits-1), uint64(sent)
	for i := headerLen - 1; i >= 0; i-- {
		p[i] = byte(lo & 0x7f)
		lo = lo>>7 | hi<<57
		hi >>= 7
	}
}

// getHeader decodes what putHeader wrote; ok is false if a byte has its
// high bit set, which putHeader never writes.
func getHeader(p []byte) (seq uint64, sent int64, ok bool) {
	var hi, lo uint64
	var or byte
	for _, c := range p[:headerLen] {
		or |= c
		hi = hi<<7 | lo>>57
		lo = lo<<7 | uint64(c)
	}
	return hi, int64(lo), or < 0x80
}
