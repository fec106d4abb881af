package wsload

import "encoding/binary"

// AppendClientFrame appends a final, masked client frame with opcode op,
// payload p and masking key mask to b.
func AppendClientFrame(b []byte, op byte, p []byte, mask [4]byte) []byte {
	b = append(b, 0x80|op)
	switch n := len(p); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, mask[:]...)
	off := len(b)
	b = append(b, p...)
	for i := range p {
		b[off+i] ^= mask[i&3]
	}
	return b
}
