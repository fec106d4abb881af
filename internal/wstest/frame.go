package wstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"time"
)

// Opcodes (RFC 6455 section 5.2). Any 4-bit value may be written.
const (
	OpContinuation byte = 0x0
	OpText         byte = 0x1
	OpBinary       byte = 0x2
	OpClose        byte = 0x8
	OpPing         byte = 0x9
	OpPong         byte = 0xA
)

// Close status codes the suite uses (RFC 6455 section 7.4.1).
const (
	CloseNormal         = 1000
	CloseGoingAway      = 1001
	CloseProtocolError  = 1002
	CloseNoStatus       = 1005
	CloseInvalidPayload = 1007
)

// maxServerFrame caps the payload length ReadFrame will allocate for.
const maxServerFrame = 64 << 20

// Errors returned when the server breaks the protocol.
var (
	// ErrMaskedFrame: the server sent a masked frame (RFC 6455 section 5.1).
	ErrMaskedFrame = errors.New("wstest: server sent a masked frame")
	// ErrBadLength: the server used a non-minimal or oversized length.
	ErrBadLength = errors.New("wstest: server frame length invalid")
)

// Frame is a client frame to send. Anything goes: reserved opcodes, RSV bits,
// unmasked frames, lengths that do not match the payload.
type Frame struct {
	Fin    bool
	Rsv    byte // the three RSV bits, 0..7
	Op     byte
	Masked bool
	Mask   [4]byte // used as is when Masked (all zero is a valid mask); see RandomMask
	// Payload is written after the header, masked with Mask when Masked.
	Payload []byte
	// Length is the payload length written in the header. Zero or negative
	// (use -1) means len(Payload). To declare zero while sending bytes after
	// the header, use WriteRaw.
	Length int64
}

// RandomMask returns a random masking key.
func RandomMask() [4]byte {
	var m [4]byte
	binary.LittleEndian.PutUint32(m[:], rand.Uint32())
	return m
}

// NewFrame returns a final, masked frame with a random mask: what a
// well-behaved client sends.
func NewFrame(op byte, payload []byte) Frame {
	return Frame{Fin: true, Op: op, Masked: true, Mask: RandomMask(), Payload: payload, Length: -1}
}

// CloseBody returns a close frame body: the code in network byte order, then
// the reason.
func CloseBody(code int, reason string) []byte {
	b := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	return append(b, reason...)
}

// AppendFrame appends the wire bytes of f to dst.
func AppendFrame(dst []byte, f Frame) []byte {
	n := f.Length
	if n <= 0 {
		n = int64(len(f.Payload))
	}
	b0 := f.Op & 0x0F
	b0 |= (f.Rsv & 0x07) << 4
	if f.Fin {
		b0 |= 0x80
	}
	var b1 byte
	if f.Masked {
		b1 = 0x80
	}
	switch {
	case n <= 125:
		dst = append(dst, b0, b1|byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if !f.Masked {
		return append(dst, f.Payload...)
	}
	dst = append(dst, f.Mask[:]...)
	start := len(dst)
	dst = append(dst, f.Payload...)
	maskBytes(f.Mask, 0, dst[start:])
	return dst
}

// maskBytes XORs b with mask, as if b started at payload offset pos.
func maskBytes(mask [4]byte, pos int, b []byte) {
	var m [4]byte
	for i := range m {
		m[i] = mask[(pos+i)&3]
	}
	m8 := uint64(binary.LittleEndian.Uint32(m[:]))
	m8 |= m8 << 32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^m8)
	}
	for ; i < len(b); i++ {
		b[i] ^= m[i&3]
	}
}

// WriteFrame writes f. With chop 0 the frame goes out in one write;
// otherwise in writes of chop bytes with delay between them (Autobahn's
// chopsize). Writing a close frame marks the connection as closing (see
// ExpectClose).
func (c *Conn) WriteFrame(f Frame, chop int, delay time.Duration) error {
	b := AppendFrame(nil, f)
	if f.Op == OpClose {
		c.sentClose.Store(true)
	}
	return writeChopped(c.nc, b, chop, delay)
}

// WriteRaw writes p as is, in one write.
func (c *Conn) WriteRaw(p []byte) error {
	_, err := c.nc.Write(p)
	return err
}

// WriteMessage writes one final, masked data or control frame.
func (c *Conn) WriteMessage(op byte, payload []byte) error {
	return c.WriteFrame(NewFrame(op, payload), 0, 0)
}

// WriteClose writes a masked close frame with code and reason.
func (c *Conn) WriteClose(code int, reason string) error {
	return c.WriteFrame(NewFrame(OpClose, CloseBody(code, reason)), 0, 0)
}

func writeChopped(w io.Writer, b []byte, chop int, delay time.Duration) error {
	if chop <= 0 {
		_, err := w.Write(b)
		return err
	}
	for i := 0; i < len(b); i += chop {
		if i > 0 {
			pause(delay)
		}
		if _, err := w.Write(b[i:min(i+chop, len(b))]); err != nil {
			return err
		}
	}
	return nil
}

// pause waits d. Short pauses spin (yielding the processor) because a
// sleeping goroutine may wake a millisecond late, which would stretch
// thousands of chopped writes into seconds.
func pause(d time.Duration) {
	if d <= 0 {
		return
	}
	if d >= time.Millisecond {
		time.Sleep(d)
		return
	}
	for start := time.Now(); time.Since(start) < d; {
		runtime.Gosched()
	}
}

// ServerFrame is one frame read from the server, payload unmasked.
type ServerFrame struct {
	Fin     bool
	Rsv     byte
	Op      byte
	Masked  bool // only ReadFrame's internal callers see true; ReadFrame fails instead
	Payload []byte
}

// IsControl reports whether the opcode is a control opcode (0x8 to 0xF).
func (f ServerFrame) IsControl() bool { return f.Op&0x8 != 0 }

func (f ServerFrame) String() string {
	return fmt.Sprintf("op=%#x fin=%t rsv=%d len=%d", f.Op, f.Fin, f.Rsv, len(f.Payload))
}

// ReadFrame reads one server frame, waiting at most timeout (0: no limit).
// It fails with ErrMaskedFrame when the server masks a frame and with
// ErrBadLength on a non-minimal or oversized length; I/O errors are returned
// as they are, for Classify.
func (c *Conn) ReadFrame(timeout time.Duration) (ServerFrame, error) {
	if err := c.setReadDeadline(timeout); err != nil {
		return ServerFrame{}, err
	}
	f, err := c.readFrame()
	if err == nil && f.Masked {
		err = ErrMaskedFrame
	}
	return f, err
}

// readFrame reads one frame with whatever deadline is set. Masked frames are
// returned (unmasked) with Masked set, so callers can judge them.
func (c *Conn) readFrame() (ServerFrame, error) {
	var h [8]byte
	if _, err := io.ReadFull(c.br, h[:2]); err != nil {
		return ServerFrame{}, err
	}
	f := ServerFrame{
		Fin:    h[0]&0x80 != 0,
		Rsv:    (h[0] >> 4) & 0x07,
		Op:     h[0] & 0x0F,
		Masked: h[1]&0x80 != 0,
	}
	n := uint64(h[1] & 0x7F)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, h[:2]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
		if n < 126 {
			return f, fmt.Errorf("%w: %d in 16 bits", ErrBadLength, n)
		}
	case 127:
		if _, err := io.ReadFull(c.br, h[:8]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(h[:8])
		if n < 1<<16 || n > 1<<63-1 {
			return f, fmt.Errorf("%w: %d in 64 bits", ErrBadLength, n)
		}
	}
	if n > maxServerFrame {
		return f, fmt.Errorf("%w: %d bytes is over the %d limit", ErrBadLength, n, maxServerFrame)
	}
	var mask [4]byte
	if f.Masked {
		if _, err := io.ReadFull(c.br, mask[:]); err != nil {
			return f, err
		}
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(c.br, f.Payload); err != nil {
		return f, err
	}
	if f.Masked {
		maskBytes(mask, 0, f.Payload)
	}
	return f, nil
}
