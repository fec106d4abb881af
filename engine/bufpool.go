package engine

import "math/bits"

// bufPool is a loop-owned free list of reassembly buffers by power-of-two
// size class, from minBuf to maxPooledBuf, holding at most poolClassBytes of
// each class. Larger buffers are allocated and left to the GC. Not safe for
// concurrent use: one per event loop.
type bufPool struct {
	classes [nClasses][][]byte
}

const (
	minBufShift    = 12 // 4 KiB
	maxBufShift    = 18 // 256 KiB
	nClasses       = maxBufShift - minBufShift + 1
	poolClassBytes = 1 << 20
)

func classOf(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minBufShift
}

// get returns an empty buffer with capacity at least n.
func (p *bufPool) get(n int) []byte {
	k := classOf(n)
	if k >= nClasses {
		return make([]byte, 0, n)
	}
	if free := p.classes[k]; len(free) > 0 {
		b := free[len(free)-1]
		free[len(free)-1] = nil
		p.classes[k] = free[:len(free)-1]
		return b
	}
	return make([]byte, 0, 1<<(k+minBufShift))
}

// put returns b to the pool if its class has room.
func (p *bufPool) put(b []byte) {
	c := cap(b)
	if c < 1<<minBufShift || c > 1<<maxBufShift || c&(c-1) != 0 {
		return
	}
	k := classOf(c)
	if (len(p.classes[k])+1)*c > poolClassBytes && len(p.classes[k]) > 0 {
		return
	}
	p.classes[k] = append(p.classes[k], b[:0])
}

// appendGrow appends data to b, moving to a larger pooled buffer when
// needed. Growth doubles, so memory follows the bytes that actually arrived
// (a peer that announces a large frame and sends little of it costs
// little). end is the most the message can hold (its total length when it
// is known to end within this frame, else its limit): growth stops there.
func (p *bufPool) appendGrow(b, data []byte, end int64) []byte {
	need := len(b) + len(data)
	if need > cap(b) {
		want := max(need, 2*cap(b), 1<<minBufShift)
		if end >= int64(need) && end < int64(want) {
			want = int(end)
		}
		b = p.grow(b, want)
	}
	return append(b, data...)
}

// grow moves b's bytes to a pooled buffer of capacity at least n and puts
// b back.
func (p *bufPool) grow(b []byte, n int) []byte {
	nb := append(p.get(n), b...)
	if b != nil {
		p.put(b)
	}
	return nb
}
