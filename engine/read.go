package engine

import (
	"errors"
	"math"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/wsloop/wsloop/codec"
)

// The read path: frames are parsed straight from gnet's inbound buffer.
//
// A data frame that is complete in the buffer and is a whole message is
// unmasked in place and handed to OnMessage as a slice of that buffer: no
// copy. Anything else (a fragment, or a frame whose payload has not fully
// arrived) is streamed: each read's bytes are unmasked, validated (UTF-8 for
// text, so that an invalid byte fails the connection as soon as it arrives)
// and appended to a pooled reassembly buffer, then discarded from gnet's
// buffer. gnet therefore only ever holds a partial frame header or a partial
// control frame (at most 131 bytes) between reads.

var (
	errContinuationWithoutStart = &codec.ProtocolError{Code: ws.StatusProtocolError, Reason: "continuation frame without a message to continue"}
	errExpectedContinuation     = &codec.ProtocolError{Code: ws.StatusProtocolError, Reason: "new data frame inside a fragmented message"}
)

// reader is a connection's frame parser state.
type reader struct {
	msg       []byte              // reassembly buffer of the message in progress
	frameLeft int64               // payload bytes of the current frame not yet read (streamed) or, once failed, to discard (skipAll: everything): never both at once
	mask      [4]byte             // masking key of the streamed frame
	scanned   int32               // handshake: header bytes already scanned
	maskPos   uint8               // offset of the next payload byte in the streamed frame, mod 4
	msgOp     ws.OpCode           // opcode of the message in progress, 0 when none
	inFrame   bool                // a data frame's payload is being streamed
	frameFin  bool                // the streamed frame is final
	deflated  bool                // the message in progress is compressed (RSV1 on its first frame)
	utf8      codec.UTF8Validator // text validation across fragments
	refused   uint8               // messages refused in a row by WithRateLimit (ratelimit.go), at most 255
}

// skipAll is reader.frameLeft once the connection has failed with a stream
// that cannot be parsed any more: everything is discarded until EOF or the
// close deadline.
const skipAll = math.MaxInt64

// inMessage reports whether a message has begun and not ended.
func (rd *reader) inMessage() bool { return rd.msgOp != 0 || rd.inFrame }

// release returns the reassembly buffer to the loop's pool.
func (rd *reader) release(l *loop) {
	if rd.msg != nil {
		l.bufs.put(rd.msg)
		rd.msg = nil
	}
	rd.msgOp = 0
	rd.inFrame = false
	rd.deflated = false
}

// readFrames consumes the frames in c's inbound buffer. It runs on the loop
// during a dispatch.
func (c *Conn) readFrames() {
	gc := c.gc
	for {
		switch c.state.Load() {
		case stateFailed:
			c.skipUntilClose()
			return
		case stateDone, stateClosed:
			_, _ = gc.Discard(-1)
			return
		}
		avail := gc.InboundBuffered()
		if avail == 0 {
			return
		}
		if c.loop.handingOff && !c.rd.inMessage() && c.state.Load() == stateOpen {
			c.checkFrozen() // frozen at a message boundary for the hand-off (handoff.go)
			return
		}
		var more bool
		if c.rd.inFrame {
			more = c.readPayload(avail)
		} else {
			more = c.readFrame(gc, avail)
		}
		if !more {
			if st := c.state.Load(); st == stateOpen || st == stateClosing {
				return // wait for more bytes
			}
			// Failed: the top of the loop skips to the peer's close frame,
			// which may already be in the buffer.
		}
	}
}

// readFrame parses the frame header at the start of the buffer and handles
// the frame. It reports whether the caller should go on.
func (c *Conn) readFrame(gc gnet.Conn, avail int) bool {
	hb, _ := gc.Peek(min(avail, codec.MaxHeaderSize))
	h, hl, err := codec.ParseHeader(hb)
	if err != nil {
		c.failProtocol(err)
		c.rd.frameLeft = skipAll
		return false
	}
	if hl == 0 {
		return false // partial header: wait for more
	}
	var rsv byte
	if c.pmd != 0 {
		rsv = codec.RSV1
	}
	if err := codec.CheckHeader(h, rsv); err != nil {
		c.failProtocol(err)
		c.skipFrame(hl, h.Length)
		return false
	}
	if h.OpCode.IsControl() {
		total := hl + int(h.Length) // at most 14 + 125
		if avail < total {
			return false
		}
		fb, _ := gc.Peek(total)
		p := fb[hl:]
		ws.Cipher(p, h.Mask, 0)
		c.control(h.OpCode, p)
		_, _ = gc.Discard(total)
		return true
	}
	return c.dataFrame(gc, h, hl, avail)
}

func (c *Conn) dataFrame(gc gnet.Conn, h ws.Header, hl, avail int) bool {
	rd := &c.rd
	deflated := rd.deflated || (rd.msgOp == 0 && h.Rsv&codec.RSV1 != 0)
	limit := c.wireLimit(deflated)
	switch {
	case rd.msgOp == 0 && h.OpCode == ws.OpContinuation:
		c.failProtocol(errContinuationWithoutStart)
		c.skipFrame(hl, h.Length)
		return false
	case rd.msgOp != 0 && h.OpCode != ws.OpContinuation:
		c.failProtocol(errExpectedContinuation)
		c.skipFrame(hl, h.Length)
		return false
	case h.Length > int64(limit-len(rd.msg)):
		c.failTooBig()
		c.skipFrame(hl, h.Length)
		return false
	}
	if total := hl + int(h.Length); rd.msgOp == 0 && h.Fin && avail >= total {
		// A whole message in the buffer: deliver it in place.
		fb, _ := gc.Peek(total)
		p := fb[hl:]
		ws.Cipher(p, h.Mask, 0)
		if deflated {
			ok := c.inflateMessage(h.OpCode, p)
			_, _ = gc.Discard(total)
			return ok
		}
		if h.OpCode == ws.OpText && !utf8.Valid(p) {
			c.failProtocol(codec.ErrInvalidUTF8)
			_, _ = gc.Discard(total)
			return false
		}
		c.deliver(h.OpCode, p)
		_, _ = gc.Discard(total)
		return true
	}
	_, _ = gc.Discard(hl)
	rd.inFrame, rd.frameFin = true, h.Fin
	rd.frameLeft, rd.maskPos, rd.mask = h.Length, 0, h.Mask
	if rd.msgOp == 0 {
		rd.msgOp, rd.deflated = h.OpCode, deflated
		rd.utf8.Reset()
	}
	if h.Length == 0 {
		return c.endFrame()
	}
	return true
}

// wireLimit is the most a message may hold as it arrives: its
// WithMaxMessageSize, or for a compressed one what its decompressed size
// may be plus what DEFLATE adds to data it cannot shrink (5 bytes per
// 64 KiB stored block; inflateMessage checks the decompressed size
// itself).
func (c *Conn) wireLimit(deflated bool) int {
	limit := c.loop.srv.opts.maxMessageSize
	if deflated {
		limit += limit>>12 + 64
	}
	return limit
}

// readPayload streams the available part of the current frame's payload
// into the reassembly buffer.
func (c *Conn) readPayload(avail int) bool {
	rd := &c.rd
	n := int(min(int64(avail), rd.frameLeft))
	p, _ := c.gc.Peek(n)
	ws.Cipher(p, rd.mask, int(rd.maskPos))
	if rd.msgOp == ws.OpText && !rd.deflated && !rd.utf8.Write(p) {
		left := rd.frameLeft
		c.failProtocol(codec.ErrInvalidUTF8)
		c.skipFrame(n, left-int64(n))
		return false
	}
	// The buffer grows no further than the message can: to its end when
	// this frame ends it, else to the limit. (Doubling alone would take a
	// message near a limit that is not a power of two to twice the limit.)
	end := int64(c.wireLimit(rd.deflated))
	if rd.frameFin {
		end = int64(len(rd.msg)) + rd.frameLeft
	}
	rd.msg = c.loop.bufs.appendGrow(rd.msg, p, end)
	_, _ = c.gc.Discard(n)
	rd.frameLeft -= int64(n)
	rd.maskPos = uint8((int(rd.maskPos) + n) & 3)
	if rd.frameLeft > 0 {
		return false
	}
	return c.endFrame()
}

// endFrame finishes a streamed frame and delivers the message if it was
// the last fragment.
func (c *Conn) endFrame() bool {
	rd := &c.rd
	rd.inFrame = false
	if !rd.frameFin {
		return true
	}
	if rd.msgOp == ws.OpText && !rd.deflated && !rd.utf8.Complete() {
		c.failProtocol(codec.ErrInvalidUTF8)
		return false
	}
	op, msg, deflated := rd.msgOp, rd.msg, rd.deflated
	rd.msgOp, rd.msg, rd.deflated = 0, nil, false
	ok := true
	if deflated {
		ok = c.inflateMessage(op, msg)
	} else {
		c.deliver(op, msg)
	}
	c.loop.bufs.put(msg)
	return ok
}

// control handles a complete, unmasked control frame.
func (c *Conn) control(op ws.OpCode, p []byte) {
	switch op {
	case ws.OpPing:
		c.onPing(p)
	case ws.OpPong:
		// Liveness only: every read already stamped c.lastRead.
	case ws.OpClose:
		code, reason, err := codec.ParseClosePayload(p)
		if err != nil {
			c.failProtocol(err)
			return
		}
		c.onPeerClose(code, reason)
	}
}

// deliver calls OnMessage, recovering a panic, unless WithRateLimit
// refuses the message.
func (c *Conn) deliver(op ws.OpCode, p []byte) {
	if st := c.state.Load(); st != stateOpen && st != stateClosing {
		return
	}
	if o := &c.loop.srv.opts; o.appPing != "" && op == ws.OpText && string(p) == o.appPing {
		_ = c.writeMessage(ws.OpText, nil, o.appPong)
		return
	}
	if !c.rateLimit(len(p)) {
		return
	}
	st := &c.loop.stats
	st.msgsIn.Add(1)
	st.bytesIn.Add(uint64(len(p)))
	defer c.recoverCallback()
	c.loop.srv.h.OnMessage(c, op, p)
}

// failTooBig fails the connection with 1009: a message past
// WithMaxMessageSize.
func (c *Conn) failTooBig() { c.fail(ws.StatusMessageTooBig, "message too big", ErrMessageTooBig) }

// failProtocol fails the connection with the close code carried by err.
func (c *Conn) failProtocol(err error) {
	var pe *codec.ProtocolError
	if errors.As(err, &pe) {
		c.fail(pe.Code, pe.Reason, err)
		return
	}
	c.fail(ws.StatusProtocolError, "protocol error", err)
}

// skipFrame discards n bytes now and then left more payload bytes, after a
// failure in the middle of a frame, so that the peer's close frame can still
// be recognised.
func (c *Conn) skipFrame(n int, left int64) {
	_, _ = c.gc.Discard(n)
	c.rd.frameLeft = left
}

// skipUntilClose runs in stateFailed: frames are skipped, not parsed for
// content, until the peer's close frame, which ends the connection (the
// server closes the TCP connection first, RFC 6455 7.1.1). If the stream
// cannot be parsed, everything is discarded until EOF or the close timer.
func (c *Conn) skipUntilClose() {
	gc, rd := c.gc, &c.rd
	for {
		avail := gc.InboundBuffered()
		switch {
		case avail == 0:
			return
		case rd.frameLeft > 0: // skipAll included
			n := int(min(int64(avail), rd.frameLeft))
			_, _ = gc.Discard(n)
			rd.frameLeft -= int64(n)
			continue
		}
		hb, _ := gc.Peek(min(avail, codec.MaxHeaderSize))
		h, hl, err := codec.ParseHeader(hb)
		switch {
		case err != nil || (h.OpCode == ws.OpClose && h.Length > 125):
			rd.frameLeft = skipAll
		case hl == 0:
			return
		case h.OpCode == ws.OpClose:
			if avail >= hl+int(h.Length) {
				c.state.Store(stateDone)
				_, _ = gc.Discard(-1)
			}
			return
		default:
			c.skipFrame(hl, h.Length)
		}
	}
}
