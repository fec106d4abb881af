package codec

import (
	"encoding/binary"
	"slices"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// MaxHeaderSize is the largest encoded frame header: 2 bytes, an 8-byte
// extended length and a 4-byte mask.
const MaxHeaderSize = 14

// ParseHeader parses a frame header from the start of b (RFC 6455 5.2).
// n == 0 && err == nil means b holds too few bytes: call again with more.
// On success n is the header length (2 to 14) and the payload starts at
// b[n]. A 64-bit length with the most significant bit set is ErrLengthMSB.
// Non-minimal length encodings are accepted (the minimality MUST binds the
// sender). ParseHeader does not allocate and does not check the rules of
// CheckHeader.
func ParseHeader(b []byte) (h ws.Header, n int, err error) {
	if len(b) < 2 {
		return ws.Header{}, 0, nil
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = b[0] >> 4 & 0x7
	h.OpCode = ws.OpCode(b[0] & 0xf)
	h.Masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return ws.Header{}, 0, nil
		}
		h.Length, n = int64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return ws.Header{}, 0, nil
		}
		l64 := binary.BigEndian.Uint64(b[2:])
		if l64>>63 != 0 {
			return ws.Header{}, 0, ErrLengthMSB
		}
		h.Length, n = int64(l64), 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return ws.Header{}, 0, nil
		}
		copy(h.Mask[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// CheckHeader applies the stateless receive rules of RFC 6455 5.1, 5.2 and
// 5.5 for a server, in this order: the mask bit must be set (ErrUnmasked);
// RSV bits outside allowedRsv, a bit set in the form of ws.Rsv (0 when no
// extension is negotiated), are ErrReservedBits; opcodes 0x3-0x7 and
// 0xB-0xF are ErrReservedOpcode; a control frame must be final
// (ErrFragmentedControl) and at most 125 bytes long (ErrControlTooLong).
// When allowedRsv holds RSV1 (permessage-deflate), RSV1 on a control or
// continuation frame is ErrCompressedControl (RFC 7692 6.1). The rules that
// need the connection's state (continuation frames, message size limits)
// are the caller's.
func CheckHeader(h ws.Header, allowedRsv byte) error {
	switch {
	case !h.Masked:
		return ErrUnmasked
	case h.Rsv&^allowedRsv != 0:
		return ErrReservedBits
	case h.OpCode.IsReserved():
		return ErrReservedOpcode
	case h.Rsv&RSV1 != 0 && (h.OpCode.IsControl() || h.OpCode == ws.OpContinuation):
		return ErrCompressedControl
	case !h.OpCode.IsControl():
		return nil
	case !h.Fin:
		return ErrFragmentedControl
	case h.Length > ws.MaxControlFramePayloadSize:
		return ErrControlTooLong
	}
	return nil
}

// HeaderLen returns the encoded size of a frame header for a payload of
// length bytes, with a mask when masked is true: 2 to 14.
func HeaderLen(length int64, masked bool) int {
	n := 2
	switch {
	case length > 0xffff:
		n = 10
	case length > 125:
		n = 4
	}
	if masked {
		n += 4
	}
	return n
}

// AppendHeader appends h to dst with the minimal length encoding,
// including h.Mask when h.Masked. It panics if h.Length is negative (a
// programming error: no frame has such a length). It does not allocate
// when dst has room for HeaderLen(h.Length, h.Masked) bytes.
func AppendHeader(dst []byte, h ws.Header) []byte {
	if h.Length < 0 {
		panic("codec: negative frame length")
	}
	b0 := (h.Rsv&0x7)<<4 | byte(h.OpCode)&0xf
	if h.Fin {
		b0 |= 0x80
	}
	var m byte
	if h.Masked {
		m = 0x80
	}
	switch {
	case h.Length <= 125:
		dst = append(dst, b0, m|byte(h.Length))
	case h.Length <= 0xffff:
		dst = append(dst, b0, m|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(h.Length))
	default:
		dst = append(dst, b0, m|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(h.Length))
	}
	if h.Masked {
		dst = append(dst, h.Mask[:]...)
	}
	return dst
}

// AppendFrame appends an unmasked (server-to-client) frame with the given
// opcode, FIN bit and payload. It does not allocate when dst has room for
// HeaderLen(len(payload), false)+len(payload) bytes, and grows dst at most
// once otherwise.
func AppendFrame(dst []byte, op ws.OpCode, fin bool, payload []byte) []byte {
	dst = slices.Grow(dst, HeaderLen(int64(len(payload)), false)+len(payload))
	dst = AppendHeader(dst, ws.Header{Fin: fin, OpCode: op, Length: int64(len(payload))})
	return append(dst, payload...)
}

// AppendFrameString is AppendFrame for a string payload, without
// converting it to a byte slice.
func AppendFrameString(dst []byte, op ws.OpCode, fin bool, payload string) []byte {
	dst = slices.Grow(dst, HeaderLen(int64(len(payload)), false)+len(payload))
	dst = AppendHeader(dst, ws.Header{Fin: fin, OpCode: op, Length: int64(len(payload))})
	return append(dst, payload...)
}

// AppendDeflatedFrame appends an unmasked, final data frame with RSV1 set
// (RFC 7692 6: a compressed message) carrying the compressed payload z.
// It does not allocate when dst has room.
func AppendDeflatedFrame(dst []byte, op ws.OpCode, z []byte) []byte {
	dst = slices.Grow(dst, HeaderLen(int64(len(z)), false)+len(z))
	dst = AppendHeader(dst, ws.Header{Fin: true, Rsv: RSV1, OpCode: op, Length: int64(len(z))})
	return append(dst, z...)
}

// maxCloseReason is the longest close reason: a control frame payload
// holds at most 125 bytes, two of which are the code.
const maxCloseReason = ws.MaxControlFramePayloadSize - 2

// AppendCloseFrame appends an unmasked close frame with code and reason
// (RFC 6455 5.5.1). The reason is truncated to 123 bytes at a UTF-8
// character boundary so that the payload fits 125 bytes. Code 0 and
// ws.StatusNoStatusRcvd (1005, which means that no code was sent and must
// not itself be sent) write an empty payload and ignore reason. Other codes
// are written as given: ValidReceivedCloseCode tells which ones the peer
// will accept.
func AppendCloseFrame(dst []byte, code ws.StatusCode, reason string) []byte {
	if code == 0 || code == ws.StatusNoStatusRcvd {
		return append(dst, 0x80|byte(ws.OpClose), 0)
	}
	reason = truncateUTF8(reason, maxCloseReason)
	dst = append(dst, 0x80|byte(ws.OpClose), byte(2+len(reason)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(code))
	return append(dst, reason...)
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
