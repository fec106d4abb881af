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
// With context takeover, the history a message may refer to is kept per
// connection in the loop's maps: the last 2^client_max_window_bits bytes
// of the client's messages, and the last 8 KiB of the server's. Messages
// to a connection with server takeover are compressed on its loop, in
// order, each against that connection's history.

// Conn.pmd flags.
const (
	pmdOn             uint8 = 1 << iota // permessage-deflate negotiated
	pmdClientTakeover                   // the client keeps its context: keep its window
	pmdServerTakeover                   // the server keeps its context: keep a history
)

// negotiateDeflate walks the client's extension offers in order and
// accepts the first permessage-deflate offer it can. It records the
// outcome in c and returns the response's extension value (in the loop's
// buffer), or an error for a malformed element (400).
func (c *Conn) negotiateDeflate() (ext []byte, err error) {
	l := c.loop
	o := &l.srv.opts
	if !o.compress || l.req.Extensions == nil {
		return nil, nil
	}
	var p codec.DeflateParams
	found := false
	l.req.VisitExtensions(func(e []byte) bool {
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
		return nil, err
	}
	c.pmd = pmdOn
	if !p.ClientNoContextTakeover {
		c.pmd |= pmdClientTakeover
	}
	if !p.ServerNoContextTakeover {
		c.pmd |= pmdServerTakeover
	}
	c.win = p.ServerMaxWindowBits | p.ClientMaxWindowBits<<4
	l.ext = codec.AppendDeflateResponse(l.ext[:0], p)
	return l.ext, nil
}

// inflateMessage decompresses a whole compressed message and delivers it.
// On the loop.
func (c *Conn) inflateMessage(op ws.OpCode, payload []byte) bool {
	l := c.loop
	limit := l.srv.opts.maxMessageSize
	inf := l.inflater
	if inf == nil {
		inf = codec.NewInflater()
		l.inflater = inf
	}
	var hist *[]byte
	var dict []byte
	if c.pmd&pmdClientTakeover != 0 {
		hist = l.history(l.clientHist, c)
		dict = *hist
	}
	inf.Reset(payload, dict)
	rd := &c.rd
	rd.utf8.Reset()
	out := l.bufs.get(min(4*len(payload)+64, limit+1))
	for {
		if len(out) == cap(out) {
			if cap(out) > limit {
				l.bufs.put(out)
				c.fail(ws.StatusMessageTooBig, "message too big", ErrMessageTooBig)
				return false
			}
			nb := l.bufs.get(min(2*cap(out), limit+1))
			nb = append(nb, out...)
			l.bufs.put(out)
			out = nb
		}
		n, err := inf.Read(out[len(out):cap(out)])
		chunk := out[len(out) : len(out)+n]
		out = out[:len(out)+n]
		if op == ws.OpText && !rd.utf8.Write(chunk) {
			err = codec.ErrInvalidUTF8
		} else if len(out) > limit {
			l.bufs.put(out)
			c.fail(ws.StatusMessageTooBig, "message too big", ErrMessageTooBig)
			return false
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			l.bufs.put(out)
			c.failProtocol(err)
			return false
		}
	}
	if op == ws.OpText && !rd.utf8.Complete() {
		l.bufs.put(out)
		c.failProtocol(codec.ErrInvalidUTF8)
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

// serverWindow and clientWindow return the LZ77 window bits (8 to 15)
// agreed for c's messages and for its peer's.
func (c *Conn) serverWindow() uint8 { return c.win & 0xf }
func (c *Conn) clientWindow() uint8 { return c.win >> 4 }

// history returns c's history in m, creating it.
func (l *loop) history(m map[*Conn]*[]byte, c *Conn) *[]byte {
	h := m[c]
	if h == nil {
		h = new([]byte)
		m[c] = h
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

// compress returns p (or s) compressed for c, or nil when it goes plain:
// compression not negotiated, the message under the threshold, or server
// context takeover (whose messages the loop compresses, in order). The
// caller must put the returned deflater back with putDeflater.
func (s *Server) compress(pmd, window uint8, p []byte, str string) (*deflater, []byte) {
	n := len(p) + len(str)
	if pmd&(pmdOn|pmdServerTakeover) != pmdOn || n < s.opts.compressMin {
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
