package wsload

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/gobwas/ws"
)

// Verifier parses the frames a server sends on one connection, in pieces
// as they are read, and checks every data message against the Payload the
// client sent: its opcode, its length and every byte. Masked frames are
// unmasked (the floor server echoes the client's own masked frames) and
// treated like unmasked ones; fragmented messages are checked fragment by
// fragment; pings and pongs are skipped; a close frame, reserved bits, an
// unknown opcode or a message nobody asked for is an error. It keeps no
// buffer: only the header being read (at most 14 bytes) and offsets.
type Verifier struct {
	P  *Payload
	Op ws.OpCode // the data opcode every message must carry
	ID uint32    // connection id, as given to Payload
	// Pongs keeps the payload of the last complete ping for TakePing
	// (viewers answer pings); otherwise pings are skipped.
	Pongs  bool
	ping   []byte
	pingd  bool // a ping completed and TakePing has not taken it
	isPing bool

	hdr   [14]byte
	hn    int // header bytes held
	hneed int // header length, once the second byte is known (else 0)
	rem   int // payload bytes of the current frame still to come
	ctrl  bool
	close bool
	fin   bool
	mask  [4]byte
	mask1 bool // the current frame is masked
	mpos  int  // bytes of the current frame unmasked so far
	inMsg bool // a data message has started and not ended
	moff  int  // bytes of the current message checked so far
	csize int  // close frame: bytes of its payload seen (for its code)
	ccode [2]byte

	// Inf, when set, lets messages arrive compressed (RSV1 on their first
	// frame, permessage-deflate): their payload is gathered in z and
	// checked once inflated.
	Inf      *Inflater
	z        []byte
	deflated bool // the current message is compressed

	// Jump lets the next data message be any later one than expected (a
	// viewer back after a reconnect missed what was published while it
	// was away), JumpAll every one (a bus that lost messages): its
	// counter, the payload's first 16 bytes, says which it is, and the
	// messages passed over are counted in skipped. A message earlier than
	// expected (a duplicate) is still an error, and so is every byte that
	// differs. Uncompressed messages of at least 16 bytes only.
	Jump    bool
	JumpAll bool
	jumping bool // the current message's counter is being gathered
	cn      int
	cnt     [16]byte
	skipped uint64 // messages passed over in the last Feed
	// Sink, when set, is told the sequence number of every message that
	// completes (viewers: its arrival time).
	Sink interface{ Message(seq uint64) }
}

// ErrServerClose is the error (wrapped) of a close frame from the server.
var ErrServerClose = errors.New("server sent a close frame")

// Reset forgets any partial frame.
func (v *Verifier) Reset() {
	p, op, id, inf, pongs, sink := v.P, v.Op, v.ID, v.Inf, v.Pongs, v.Sink
	*v = Verifier{P: p, Op: op, ID: id, Inf: inf, Pongs: pongs, Sink: sink}
}

// Skipped is the number of messages the last Feed passed over (Jump,
// JumpAll): the caller's next is then next+done+Skipped.
func (v *Verifier) Skipped() uint64 { return v.skipped }

// Feed consumes data, the next bytes from the server; it unmasks in place.
// next is the sequence number of the first message that may complete and
// limit how many may complete in all (the messages in flight), counted
// from next: no message may be numbered next+limit or later. It returns
// how many messages completed, all checked.
func (v *Verifier) Feed(data []byte, next uint64, limit int) (done int, err error) {
	v.skipped = 0
	end := next + uint64(max(limit, 0))
	for len(data) > 0 {
		if v.hneed == 0 || v.hn < v.hneed {
			if v.hn < 2 {
				k := copy(v.hdr[v.hn:2], data)
				v.hn += k
				data = data[k:]
				if v.hn < 2 {
					return done, nil
				}
				v.hneed = 2
				switch v.hdr[1] & 0x7f {
				case 126:
					v.hneed += 2
				case 127:
					v.hneed += 8
				}
				if v.hdr[1]&0x80 != 0 {
					v.hneed += 4
				}
			}
			k := copy(v.hdr[v.hn:v.hneed], data)
			v.hn += k
			data = data[k:]
			if v.hn < v.hneed {
				return done, nil
			}
			seq := next + uint64(done) + v.skipped
			if err := v.header(seq, seq < end); err != nil {
				return done, err
			}
			if v.rem > 0 {
				continue
			}
		} else {
			k := min(v.rem, len(data))
			chunk := data[:k]
			data = data[k:]
			if v.mask1 {
				ws.Cipher(chunk, v.mask, v.mpos)
				v.mpos += k
			}
			v.rem -= k
			switch {
			case v.close:
				for _, b := range chunk {
					if v.csize < 2 {
						v.ccode[v.csize] = b
					}
					v.csize++
				}
				if v.rem == 0 {
					return done, v.closeErr()
				}
				continue
			case v.ctrl:
				if v.isPing {
					v.ping = append(v.ping, chunk...)
				}
			case v.deflated:
				v.z = append(v.z, chunk...)
			default:
				seq := next + uint64(done) + v.skipped
				if v.jumping {
					n := copy(v.cnt[v.cn:], chunk)
					v.cn += n
					v.moff += n
					chunk = chunk[n:]
					if v.cn < len(v.cnt) {
						break
					}
					v.jumping = false
					s, err := v.jump(seq, end)
					if err != nil {
						return done, err
					}
					seq = s
				}
				if !v.P.Match(v.ID, seq, v.moff, chunk) {
					at := v.P.FirstDiff(v.ID, seq, v.moff, chunk)
					got := ""
					if v.moff == 0 && len(chunk) >= 16 {
						got = fmt.Sprintf(" (its counter: %q)", chunk[:16]) // which message came instead
					}
					return done, fmt.Errorf("message %d: echo differs from what was sent at byte %d of %d%s", seq, at, v.P.size, got)
				}
				v.moff += len(chunk)
			}
			if v.rem > 0 {
				continue
			}
		}
		// The frame is complete.
		if v.ctrl && v.isPing {
			v.pingd = true
		}
		if !v.ctrl && v.fin && v.deflated {
			seq := next + uint64(done) + v.skipped
			p, err := v.Inf.Inflate(v.z, v.P.size)
			v.z = v.z[:0]
			switch {
			case err != nil:
				return done, fmt.Errorf("message %d: %v", seq, err)
			case len(p) != v.P.size:
				return done, fmt.Errorf("message %d: echo inflates to %d bytes, sent %d", seq, len(p), v.P.size)
			case !v.P.Match(v.ID, seq, 0, p):
				return done, fmt.Errorf("message %d: echo differs from what was sent at byte %d of %d", seq, v.P.FirstDiff(v.ID, seq, 0, p), v.P.size)
			}
			v.moff = v.P.size
		}
		if !v.ctrl && v.fin {
			seq := next + uint64(done) + v.skipped
			if v.moff != v.P.size || v.jumping {
				return done, fmt.Errorf("message %d: echo has %d bytes, sent %d", seq, v.moff, v.P.size)
			}
			v.inMsg = false
			done++
			if v.Sink != nil {
				v.Sink.Message(seq)
			}
		}
		v.hn, v.hneed = 0, 0
	}
	return done, nil
}

// header decodes the header held in v.hdr.
func (v *Verifier) header(seq uint64, expected bool) error {
	b0, b1 := v.hdr[0], v.hdr[1]
	op := ws.OpCode(b0 & 0x0f)
	rsv1 := b0&0x70 == 0x40 && v.Inf != nil && !v.inMsg && (op == ws.OpText || op == ws.OpBinary)
	if b0&0x70 != 0 && !rsv1 {
		return fmt.Errorf("frame with reserved bits set (first byte %#02x)", b0)
	}
	v.fin = b0&0x80 != 0
	n := uint64(b1 & 0x7f)
	h := v.hdr[2:v.hneed]
	switch n {
	case 126:
		n = uint64(binary.BigEndian.Uint16(h))
		h = h[2:]
	case 127:
		n = binary.BigEndian.Uint64(h)
		h = h[8:]
	}
	v.mask1 = b1&0x80 != 0
	if v.mask1 {
		copy(v.mask[:], h)
	}
	v.mpos = 0
	v.ctrl, v.close = op.IsControl(), op == ws.OpClose
	if v.ctrl {
		if !v.fin || n > 125 {
			return fmt.Errorf("bad control frame (opcode %d, %d bytes, fin %v)", op, n, v.fin)
		}
		v.isPing = op == ws.OpPing && v.Pongs
		if v.isPing {
			v.ping = v.ping[:0]
		}
		switch op {
		case ws.OpPing, ws.OpPong:
		case ws.OpClose:
			v.csize = 0
			if n == 0 {
				return v.closeErr()
			}
		default:
			return fmt.Errorf("frame with reserved opcode %d", op)
		}
		v.rem = int(n)
		return nil
	}
	switch {
	case op == ws.OpContinuation:
		if !v.inMsg {
			return fmt.Errorf("continuation frame outside a message")
		}
	case op != ws.OpText && op != ws.OpBinary:
		return fmt.Errorf("frame with reserved opcode %d", op)
	case v.inMsg:
		return fmt.Errorf("message %d: new data frame inside a fragmented message", seq)
	case op != v.Op:
		return fmt.Errorf("message %d: echo has opcode %d, sent %d", seq, op, v.Op)
	case !expected && !v.Jump && !v.JumpAll:
		return fmt.Errorf("unsolicited message (opcode %d, %d bytes): nothing in flight", op, n)
	default:
		v.inMsg, v.moff, v.deflated = true, 0, rsv1
		if v.Jump || v.JumpAll {
			if rsv1 || v.P.cl < len(v.cnt) {
				return fmt.Errorf("message %d: a viewer that may skip messages needs uncompressed messages of 16 bytes or more", seq)
			}
			v.Jump, v.jumping, v.cn = false, true, 0
		}
	}
	if v.deflated {
		if n > uint64(v.P.size+v.P.size/8+64-len(v.z)) {
			return fmt.Errorf("message %d: compressed echo of %d+%d bytes for %d sent", seq, len(v.z), n, v.P.size)
		}
	} else if n > uint64(v.P.size-v.moff) {
		return fmt.Errorf("message %d: echo longer than the %d bytes sent (frame of %d at offset %d)", seq, v.P.size, n, v.moff)
	}
	v.rem = int(n)
	return nil
}

// TakePing returns the payload of the last ping completed since the last
// call (Pongs), valid until the next Feed.
func (v *Verifier) TakePing() ([]byte, bool) {
	if !v.pingd {
		return nil, false
	}
	v.pingd = false
	return v.ping, true
}

func (v *Verifier) closeErr() error {
	if v.csize >= 2 {
		return fmt.Errorf("%w (code %d)", ErrServerClose, binary.BigEndian.Uint16(v.ccode[:]))
	}
	return ErrServerClose
}

// jump reads the counter gathered in v.cnt of a message expected to be
// want or later (and before end), counts the messages passed over, and
// returns its sequence number.
func (v *Verifier) jump(want, end uint64) (uint64, error) {
	var x uint64
	for _, b := range v.cnt {
		switch {
		case b >= '0' && b <= '9':
			x = x<<4 | uint64(b-'0')
		case b >= 'a' && b <= 'f':
			x = x<<4 | uint64(b-'a'+10)
		default:
			return 0, fmt.Errorf("message %d or later: counter %q is not hex", want, v.cnt[:])
		}
	}
	seq := x & 0xffffffff
	switch {
	case uint32(x>>32) != v.ID:
		return 0, fmt.Errorf("message %d or later: counter %q is not this publisher's (%#x)", want, v.cnt[:], v.ID)
	case seq < want:
		return 0, fmt.Errorf("message %d again (expected %d or later): a duplicate or out of order", seq, want)
	case seq >= end:
		return 0, fmt.Errorf("unsolicited message %d (at most %d expected)", seq, end)
	}
	v.skipped += seq - want
	return seq, nil
}
