package engine

import (
	"io"
	"unsafe"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/codec"
)

// permessage-deflate (RFC 7692).
//
// Nothing compression needs is kept per connection unless context
// takeover is negotiated: two bytes in Conn say what was agreed. A message
// is inflated on the loop by the loop's one Inflater once all of it has
// arrived, into a pooled buffer that goes back to the pool after OnMessage;
// messages are deflated by a pooled Deflater (klauspost's stateless
// encoder at level 1: no state at all) in the goroutine that sends them. A
// publish compresses its message once, and every member that negotiated
// the usual parameters (no server context takeover, a 32 KiB window) gets
// the same compressed bytes; other members get the plain frame, which RFC
// 7692 allows at any time.
//
// The server never keeps its own context (it always answers
// server_no_context_takeover; benchmarks/RESULTS.md says what takeover
// would cost). With client context takeover (WithContextTakeover), the
// client's window, the last 2^client_max_window_bits bytes of its
// messages, is kept per connection in the loop's clientHist.

// Conn.pmd flags.
const (
	pmdOn             uint8 = 1 << iota // permessage-deflate negotiated
	pmdClientTakeover                   // the client keeps its context: keep its window
)

// negotiateDeflate walks the client's extension offers in order and
// accepts the first permessage-deflate offer it can. It records the
// outcome in c and returns the response's extension value (in the loop's
// buffer), or an error for a malformed element (400).
func (c *Conn) negotiateDeflate() (ext []byte, err error) {
	l := c.loop
	ext, c.pmd, c.win, err = l.srv.negotiateDeflate(&l.req, l.ext[:0])
	if ext != nil {
		l.ext = ext
	}
	return ext, err
}

// negotiateDeflate is Conn.negotiateDeflate for any goroutine: it returns
// the response's extension value appended to buf (nil when none is
// agreed), and the connection's pmd flags and window bits.
func (s *Server) negotiateDeflate(req *codec.Request, buf []byte) (ext []byte, pmd, win uint8, err error) {
	o := &s.opts
	if !o.compress || req.Extensions == nil {
		return nil, 0, 0, nil
	}
	var p codec.DeflateParams
	found := false
	req.VisitExtensions(func(e []byte) bool {
		offer, ok, perr := codec.ParseDeflateOffer(e)
		switch {
		case perr != nil:
			err = perr
			return false
		case ok:
			p, found = o.deflate.Accept(offer), true
			return false
		}
		return true
	})
	if err != nil || !found {
		return nil, 0, 0, err
	}
	pmd = pmdOn
	if !p.ClientNoContextTakeover {
		pmd |= pmdClientTakeover
	}
	win = p.ServerMaxWindowBits | p.ClientMaxWindowBits<<4
	return codec.AppendDeflateResponse(buf, p), pmd, win, nil
}

// inflateMessage decompresses a whole compressed message and delivers it.
// On the loop.
func (c *Conn) inflateMessage(op ws.OpCode, payload []byte) bool {
	l := c.loop
	var hist *[]byte
	var dict []byte
	if c.pmd&pmdClientTakeover != 0 {
		hist = l.clientHistory(c)
		dict = *hist
	}
	out, err := c.inflate(op, payload, dict)
	if err != nil {
		l.bufs.put(out)
		if err == ErrMessageTooBig {
			c.failTooBig()
		} else {
			c.failProtocol(err)
		}
		return false
	}
	l.srv.inflated.Add(1)
	if hist != nil {
		*hist = keepTail(*hist, out, 1<<c.clientWindow())
	}
	c.deliver(op, out)
	l.bufs.put(out)
	return true
}

// inflate decompresses payload, after dict, into a pooled buffer, checking
// text as it comes out; it fails as soon as the output passes
// WithMaxMessageSize (ErrMessageTooBig) or text turns invalid. The buffer
// is returned, error or not, for the caller to put back.
func (c *Conn) inflate(op ws.OpCode, payload, dict []byte) ([]byte, error) {
	l := c.loop
	limit := l.srv.opts.maxMessageSize
	if l.inflater == nil {
		l.inflater = codec.NewInflater()
	}
	l.inflater.Reset(payload, dict)
	text, v := op == ws.OpText, &c.rd.utf8
	v.Reset()
	out := l.bufs.get(min(4*len(payload)+64, limit+1))
	for {
		if len(out) == cap(out) {
			if cap(out) > limit {
				return out, ErrMessageTooBig
			}
			out = l.bufs.grow(out, min(2*cap(out), limit+1))
		}
		n, err := l.inflater.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		switch {
		case text && !v.Write(out[len(out)-n:]):
			return out, codec.ErrInvalidUTF8
		case len(out) > limit:
			return out, ErrMessageTooBig
		case err == io.EOF:
			if text && !v.Complete() {
				return out, codec.ErrInvalidUTF8
			}
			return out, nil
		case err != nil:
			return out, err
		}
	}
}

// serverWindow and clientWindow return the LZ77 window bits (8 to 15)
// agreed for c's messages and for its peer's.
func (c *Conn) serverWindow() uint8 { return c.win & 0xf }
func (c *Conn) clientWindow() uint8 { return c.win >> 4 }

// clientHistory returns the window kept for c's client, creating it.
func (l *loop) clientHistory(c *Conn) *[]byte {
	h := l.clientHist[c]
	if h == nil {
		h = new([]byte)
		l.clientHist[c] = h
	}
	return h
}

// keepTail appends p to h and keeps its last n bytes, in a buffer of
// capacity n: the window is all a connection holds.
func keepTail(h, p []byte, n int) []byte {
	if cap(h) < min(n, len(h)+len(p)) {
		h = append(make([]byte, 0, n), h...)
	}
	if len(p) >= n {
		return append(h[:0], p[len(p)-n:]...)
	}
	if drop := len(h) + len(p) - n; drop > 0 {
		h = h[:copy(h, h[drop:])]
	}
	return append(h, p...)
}

// deflater is a pooled Deflater with its output buffer.
type deflater struct {
	d   codec.Deflater
	buf []byte
}

// compress returns p (or s) compressed for a connection with the given
// pmd flags and server window, with the deflater holding it, or nil, nil
// when the message goes plain: compression not negotiated, or the message
// under the threshold. The caller puts the deflater back (putDeflater).
func (s *Server) compress(pmd, window uint8, p []byte, str string) (*deflater, []byte) {
	n := len(p) + len(str)
	if pmd&pmdOn == 0 || n < s.opts.compressMin {
		return nil, nil
	}
	if str != "" {
		p = unsafe.Slice(unsafe.StringData(str), len(str))
	}
	d := s.getDeflater()
	d.buf = d.d.Append(d.buf[:0], p, window, nil)
	s.deflated.Add(1)
	return d, d.buf
}

func (s *Server) getDeflater() *deflater {
	if d, ok := s.deflaters.Get().(*deflater); ok {
		return d
	}
	d := &deflater{}
	d.d = *codec.NewDeflater(s.opts.compressLevel)
	return d
}

func (s *Server) putDeflater(d *deflater) {
	if d == nil {
		return
	}
	if cap(d.buf) > scratchKeep {
		d.buf = nil
	}
	s.deflaters.Put(d)
}
