package wstest

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// Message is a data message read from the server, fragments reassembled.
type Message struct {
	Op      byte // OpText or OpBinary
	Payload []byte
	Frames  int // data frames it arrived in
	// Control holds control frames (pings, pongs) that arrived before the
	// message ended. ReadMessage does not answer pings.
	Control []ServerFrame
}

// ReadMessage reads one whole data message, waiting at most timeout for all
// of it (0: no limit). A close frame ends it with a *CloseError; a frame that
// breaks the fragmentation rules, a masked frame or a control frame with a
// bad header is an error. Text is not checked for UTF-8 (see Utf8Validator).
func (c *Conn) ReadMessage(timeout time.Duration) (Message, error) {
	var m Message
	if err := c.setReadDeadline(timeout); err != nil {
		return m, err
	}
	for {
		f, err := c.readFrame()
		if err != nil {
			return m, err
		}
		if f.Masked {
			return m, ErrMaskedFrame
		}
		if f.Rsv != 0 {
			return m, fmt.Errorf("wstest: server frame with RSV=%d", f.Rsv)
		}
		if f.IsControl() {
			if !f.Fin || len(f.Payload) > 125 {
				return m, fmt.Errorf("wstest: bad control frame (%v)", f)
			}
			switch f.Op {
			case OpClose:
				code, reason := CloseNoStatus, ""
				if len(f.Payload) >= 2 {
					code, reason = int(binary.BigEndian.Uint16(f.Payload)), string(f.Payload[2:])
				}
				return m, &CloseError{Code: code, Reason: reason}
			case OpPing, OpPong:
				m.Control = append(m.Control, f)
				continue
			}
			return m, fmt.Errorf("wstest: reserved control opcode (%v)", f)
		}
		switch {
		case f.Op != OpContinuation && f.Op != OpText && f.Op != OpBinary:
			return m, fmt.Errorf("wstest: reserved data opcode (%v)", f)
		case m.Frames == 0 && f.Op == OpContinuation:
			return m, fmt.Errorf("wstest: continuation frame outside a message")
		case m.Frames > 0 && f.Op != OpContinuation:
			return m, fmt.Errorf("wstest: new message (%v) inside a fragmented one", f)
		}
		if m.Frames == 0 {
			m.Op = f.Op
		}
		m.Frames++
		m.Payload = append(m.Payload, f.Payload...)
		if f.Fin {
			return m, nil
		}
	}
}

// Utf8Validator checks UTF-8 incrementally, across frame boundaries, the way
// Autobahn's client validates text messages (fail on the first bad byte).
// The zero value is ready to use.
type Utf8Validator struct {
	need   int  // continuation bytes still expected
	lo, hi byte // allowed range of the next continuation byte
}

// Reset forgets any partial code point.
func (v *Utf8Validator) Reset() { *v = Utf8Validator{} }

// Write feeds b and reports whether everything so far is valid UTF-8 or a
// valid prefix of it. After false, Reset before reusing v.
func (v *Utf8Validator) Write(b []byte) bool {
	// Finish a code point left open by the previous call, then let
	// utf8.Valid check the bulk up to the last lead byte, which may start a
	// code point the next call completes.
	i := 0
	for ; i < len(b) && v.need > 0; i++ {
		if !v.step(b[i]) {
			return false
		}
	}
	b = b[i:]
	cut := len(b)
	for j := len(b) - 1; j >= 0 && j >= len(b)-3; j-- {
		if b[j] >= 0xC0 {
			cut = j
			break
		}
		if b[j] < 0x80 {
			break
		}
	}
	if !utf8.Valid(b[:cut]) {
		return false
	}
	for _, c := range b[cut:] {
		if !v.step(c) {
			return false
		}
	}
	return true
}

// step feeds one byte.
func (v *Utf8Validator) step(c byte) bool {
	if v.need > 0 {
		if c < v.lo || c > v.hi {
			return false
		}
		v.need--
		v.lo, v.hi = 0x80, 0xBF
		return true
	}
	v.lo, v.hi = 0x80, 0xBF
	switch {
	case c < 0x80:
	case c >= 0xC2 && c <= 0xDF:
		v.need = 1
	case c == 0xE0:
		v.need, v.lo = 2, 0xA0
	case c == 0xED:
		v.need, v.hi = 2, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		v.need = 2
	case c == 0xF0:
		v.need, v.lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		v.need = 3
	case c == 0xF4:
		v.need, v.hi = 3, 0x8F
	default:
		return false
	}
	return true
}

// Complete reports whether the input so far ends on a code point boundary.
func (v *Utf8Validator) Complete() bool { return v.need == 0 }
