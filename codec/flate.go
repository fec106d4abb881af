package codec

import (
	"io"

	"github.com/gobwas/ws"
)

// permessage-deflate payloads (RFC 7692 section 7.2), on
// github.com/klauspost/compress/flate (flate_klauspost.go): its encoder is
// two to three times as fast as compress/flate's at level 1 on 1 KiB JSON,
// with the same ratio, its decoder a sixth to a third faster, and its stateless mode
// keeps no encoder between messages (compress/flate's level-1 writer holds
// 1.2 MB, klauspost's 0.5 MB). Built with -tags wsloop_stdflate, the
// standard library's compress/flate is used instead (flate_std.go), so that
// the benchmarks can measure both in one run; benchmarks/RESULTS.md has the
// figures.

// ErrInvalidDeflate is a compressed message whose payload is not valid
// DEFLATE data. It fails the connection with 1007.
var ErrInvalidDeflate error = &ProtocolError{Code: ws.StatusInvalidFramePayloadData, Reason: "invalid compressed data"}

// ErrCompressedControl is RSV1 on a control frame or on a continuation
// frame, which RFC 7692 6.1 forbids even when permessage-deflate is
// negotiated (1002).
var ErrCompressedControl error = protocolError("RSV1 set on a control or continuation frame")

// RSV1 marks a compressed message on its first frame (RFC 7692 6).
const RSV1 = 0x4

// deflateTail ends every compressed message: the four bytes a sender
// strips (RFC 7692 7.2.1), then an empty final stored block, so that a
// decompressor reports io.EOF at the end of the message instead of
// waiting for more input.
const deflateTail = "\x00\x00\xff\xff\x01\x00\x00\xff\xff"

// MaxDeflateDict is the most history AppendDeflate uses for context
// takeover; older bytes are not referred to.
const MaxDeflateDict = 8 << 10

// Deflater compresses messages. The zero value compresses at level 1 with
// klauspost's stateless encoder, which holds no state between calls; other
// levels keep a klauspost Writer (0.5 to 1 MB) in the Deflater. A Deflater
// is not safe for concurrent use; pool them.
type Deflater struct {
	level int
	out   sliceWriter
	fw    encoder
}

// NewDeflater returns a Deflater for level 1 (fastest) to 9 (smallest).
// Other values mean 1.
func NewDeflater(level int) *Deflater {
	if level < 1 || level > 9 {
		level = 1
	}
	return &Deflater{level: level}
}

// sliceWriter appends to a byte slice.
type sliceWriter struct{ b []byte }

func (w *sliceWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// Append appends p compressed as the payload of one permessage-deflate
// message: raw DEFLATE ending in a sync flush, without its final four
// bytes 00 00 ff ff (RFC 7692 7.2.1). No back-reference reaches further
// than 2^window bytes (window 8 to 15; the RFC's server_max_window_bits).
// dict is the context kept from earlier messages (context takeover; nil
// for none): the peer's window holds it, so the message may refer to it.
// It does not allocate when dst has room, at level 1.
func (d *Deflater) Append(dst, p []byte, window uint8, dict []byte) []byte {
	d.out.b = dst
	switch {
	case window < 15:
		// Compress chunks of 2^window bytes on their own, so that no
		// distance passes the window. Takeover is refused with a window
		// this small (DeflatePolicy), so there is no dict.
		chunk := 1 << max(window, 8)
		for len(p) > 0 {
			n := min(chunk, len(p))
			d.stateless(p[:n], nil)
			p = p[n:]
		}
		if len(d.out.b) == len(dst) { // empty message: one empty stored block
			d.stateless(nil, nil)
		}
	case d.level <= 1:
		d.stateless(p, dict)
	default:
		if d.fw == nil {
			d.fw = newEncoder(&d.out, d.level)
		}
		d.fw.ResetDict(&d.out, dict)
		_, _ = d.fw.Write(p)
		_ = d.fw.Flush()
	}
	b := d.out.b
	d.out.b = nil
	// Every path ends with a sync flush (an empty stored block); strip
	// its LEN and NLEN.
	if n := len(b); n-len(dst) >= 4 && string(b[n-4:]) == "\x00\x00\xff\xff" {
		b = b[:n-4]
	}
	return b
}

// Inflater decompresses messages. It holds klauspost's decompressor (about
// 40 KB) and may be reused for any number of messages and connections; it
// is not safe for concurrent use.
type Inflater struct {
	src inflateSource
	fr  io.ReadCloser
}

// NewInflater returns an Inflater.
func NewInflater() *Inflater {
	f := &Inflater{}
	f.fr = newDecoder(&f.src)
	return f
}

// Reset starts a message: payload is its compressed payload as received
// (without the stripped tail), dict the context kept from earlier messages
// (nil without context takeover). The Inflater reads payload and dict
// until the message ends or Reset is called again.
func (f *Inflater) Reset(payload, dict []byte) {
	f.src = inflateSource{body: payload}
	_ = f.fr.(resetter).Reset(&f.src, dict)
}

// Read reads decompressed bytes; io.EOF marks the end of the message.
// Invalid data is ErrInvalidDeflate.
func (f *Inflater) Read(p []byte) (int, error) {
	n, err := f.fr.Read(p)
	if err != nil && err != io.EOF {
		err = ErrInvalidDeflate
	}
	return n, err
}

// inflateSource reads a message's payload, then deflateTail.
type inflateSource struct {
	body []byte
	tail int // bytes of deflateTail read
}

func (s *inflateSource) Read(p []byte) (int, error) {
	if len(s.body) > 0 {
		n := copy(p, s.body)
		s.body = s.body[n:]
		return n, nil
	}
	if s.tail == len(deflateTail) {
		return 0, io.EOF
	}
	n := copy(p, deflateTail[s.tail:])
	s.tail += n
	return n, nil
}

func (s *inflateSource) ReadByte() (byte, error) {
	if len(s.body) > 0 {
		c := s.body[0]
		s.body = s.body[1:]
		return c, nil
	}
	if s.tail == len(deflateTail) {
		return 0, io.EOF
	}
	c := deflateTail[s.tail]
	s.tail++
	return c, nil
}

var _ io.ByteReader = (*inflateSource)(nil)
