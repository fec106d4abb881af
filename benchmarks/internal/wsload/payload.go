package wsload

import (
	"bytes"
	"encoding/binary"

	"github.com/gobwas/ws"
)

// poolSize is the span of the random pool that payload windows start in.
const poolSize = 64 << 10

// Payload defines the bytes of every message the load generator sends:
// message seq of connection id is a 16-digit hex counter (id<<32 | seq)
// followed by a window of a pseudo-random pool of printable ASCII, the
// window's start a hash of (id, seq). Every message differs from its
// neighbours, payloads are valid UTF-8 (so text mode works), and a payload
// is never materialised to be checked: Match compares a received chunk
// against the counter and the pool directly. Messages shorter than 16
// bytes carry the counter's low digits only.
type Payload struct {
	size int
	cl   int // counter bytes in front: min(16, size)
	pool []byte
}

// NewPayload returns the payloads of size bytes, the pool drawn from seed.
func NewPayload(size int, seed uint64) *Payload {
	p := &Payload{size: size, cl: min(16, size), pool: make([]byte, poolSize+size)}
	s := seed
	for i := range p.pool {
		s = splitmix(s)
		p.pool[i] = 0x21 + byte(s%94) // '!'..'~'
	}
	return p
}

// NewJSONPayload is NewPayload with a pool of chat-like JSON records
// instead of random characters: payloads that compress as real traffic
// does (about 4 times at 1 KiB).
func NewJSONPayload(size int, seed uint64) *Payload {
	return &Payload{size: size, cl: min(16, size), pool: JSONText(poolSize+size, seed)}
}

// Size is the payload length.
func (p *Payload) Size() int { return p.size }

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func counter(id uint32, seq uint64) [16]byte {
	const hexd = "0123456789abcdef"
	var h [16]byte
	v := uint64(id)<<32 | uint64(uint32(seq))
	for i := 15; i >= 0; i-- {
		h[i] = hexd[v&15]
		v >>= 4
	}
	return h
}

func (p *Payload) window(id uint32, seq uint64) []byte {
	o := int(splitmix(uint64(id)<<40^seq) % poolSize)
	return p.pool[o : o+p.size-p.cl]
}

// Fill writes message seq of connection id into dst (len(dst) == Size()).
func (p *Payload) Fill(dst []byte, id uint32, seq uint64) {
	h := counter(id, seq)
	copy(dst, h[16-p.cl:])
	copy(dst[p.cl:], p.window(id, seq))
}

// Match reports whether chunk equals bytes [off, off+len(chunk)) of
// message seq of connection id. The caller keeps off+len(chunk) <= Size().
func (p *Payload) Match(id uint32, seq uint64, off int, chunk []byte) bool {
	if off < p.cl {
		h := counter(id, seq)
		k := min(len(chunk), p.cl-off)
		if !bytes.Equal(chunk[:k], h[16-p.cl+off:16-p.cl+off+k]) {
			return false
		}
		chunk, off = chunk[k:], off+k
	}
	if len(chunk) == 0 {
		return true
	}
	w := p.window(id, seq)[off-p.cl:]
	return bytes.Equal(chunk, w[:len(chunk)])
}

// FirstDiff returns the offset in the message of chunk's first wrong byte
// (for error messages), or -1.
func (p *Payload) FirstDiff(id uint32, seq uint64, off int, chunk []byte) int {
	want := make([]byte, p.size)
	p.Fill(want, id, seq)
	for i, b := range chunk {
		if off+i >= len(want) || want[off+i] != b {
			return off + i
		}
	}
	return -1
}

// AppendFrame appends message seq of connection id as one final frame
// with opcode op, masked with mask, as a client must send it.
func (p *Payload) AppendFrame(dst []byte, op ws.OpCode, mask [4]byte, id uint32, seq uint64) []byte {
	dst = appendHeader(dst, op, p.size, mask)
	start := len(dst)
	h := counter(id, seq)
	dst = append(dst, h[16-p.cl:]...)
	dst = append(dst, p.window(id, seq)...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}

// appendHeader appends a final, masked frame header for n payload bytes.
func appendHeader(dst []byte, op ws.OpCode, n int, mask [4]byte) []byte {
	dst = append(dst, 0x80|byte(op))
	switch {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, mask[:]...)
}
