package engine

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
)

// TLS (wss://) with the standard library's crypto/tls, on the event loops.
//
// crypto/tls's handshake is written as blocking code, so each handshake
// runs on a goroutine of its own, which lives until the handshake ends:
// the loop hands it the bytes the client sends, and it writes through
// gnet's AsyncWrite. A handshake asks for its goroutine only once the
// client's first record (its ClientHello) has arrived whole, so a socket
// that sends nothing, or trickles its first record, holds no goroutine and
// no slot. At most WithMaxTLSHandshakes run at once; sockets beyond that
// wait their turn in a queue (no goroutine, no refusal), under the same
// handshake deadline as every other socket: a client that stalls before or
// inside the handshake is dropped at WithHandshakeTimeout. A socket that
// closes while it waits leaves the queue at once, so the queue never holds
// more entries than there are open sockets (WithMaxConnections).
//
// What a client sends before its handshake has ended waits in a buffer of
// the connection's, consumed by the handshake's goroutine: while the
// handshake waits for a slot, or for a slow GetCertificate, it is not.
// These buffers are bounded per socket and in total
// (WithMaxTLSHandshakeBytes); a socket whose input would pass either bound
// is closed at once (Stats.TLSHandshakeOverflows). Every chunk gnet reads
// is moved out of gnet's buffer as it arrives, so the loop's work per read
// is proportional to the new bytes, and gnet's buffer never grows.
//
// Once the handshake is done the goroutine ends, and the connection's
// records are decrypted and encrypted on its loop: crypto/tls reads from
// gnet's inbound buffer through a transport that answers "would block"
// (a temporary net.Error, which crypto/tls does not keep as an error) when
// the buffer is empty, and writes to the socket with gnet's Write. The
// rest of the engine sees the plaintext through tlsConn, a gnet.Conn whose
// Peek, Discard and InboundBuffered serve decrypted bytes and whose Write
// encrypts: the frame parser, the upgrade, keep-alive HTTP, backpressure
// and closing run unchanged. Decrypted bytes wait in a buffer taken from
// the loop only while some are unread.

// WithTLS makes the server speak TLS (wss:// and https://) with cfg, which
// needs a certificate (Certificates or GetCertificate). TLS 1.2 and 1.3
// are what crypto/tls negotiates by default; cfg.NextProtos defaults to
// "http/1.1" (ALPN). cfg is cloned; nil turns TLS off (the default).
func WithTLS(cfg *tls.Config) Option {
	return func(o *options) {
		if cfg == nil {
			o.tls = nil
			return
		}
		c := cfg.Clone()
		if len(c.NextProtos) == 0 {
			c.NextProtos = []string{"http/1.1"}
		}
		o.tls = c
	}
}

// TLS reports whether s speaks TLS (WithTLS): its URLs are wss:// and
// https://.
func (s *Server) TLS() bool { return s.opts.tls != nil }

// WithMaxTLSHandshakes bounds the TLS handshakes in progress, each on a
// goroutine of its own while it lasts (default: 128 per CPU, at least
// 256). A handshake starts once the client's first record has arrived;
// sockets beyond the bound wait in a queue, within their handshake
// deadline.
func WithMaxTLSHandshakes(n int) Option { return func(o *options) { o.maxTLSHandshakes = n } }

// WithMaxTLSHandshakeBytes bounds what clients send before their TLS
// handshake has ended and the server has not consumed yet (it waits while
// the handshake waits for a slot, or for a slow GetCertificate): at most
// perSocket bytes from one socket, and buffers of at most total bytes
// for all of them together. A socket whose input would pass either bound
// is closed at once and counted in Stats.TLSHandshakeOverflows; the other
// sockets and their handshakes carry on. A ClientHello takes about 2 KiB
// (a client certificate chain for mutual TLS adds its size); sockets that
// hold no more than 4 KiB may take the total to twice its bound, so that
// a flood that fills it does not shut out new clients. Default: 64 KiB
// per socket, 8 MiB in total.
func WithMaxTLSHandshakeBytes(perSocket, total int) Option {
	return func(o *options) { o.tlsInPerSocket, o.tlsInTotal = perSocket, total }
}

// errWouldBlock is what the transport answers crypto/tls when gnet's
// buffer holds no more bytes: temporary, so crypto/tls keeps the
// connection usable and the partial record it has.
var errWouldBlock = &net.OpError{Op: "read", Net: "wsloop", Err: wouldBlock{}}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "would block" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// tlsPlainChunk is how much plaintext is decrypted before the parser
// consumes it, so that a large message is streamed, not held whole.
const tlsPlainChunk = 64 << 10

// tlsState is a TLS connection's state.
type tlsState struct {
	c    *Conn
	raw  gnet.Conn // the socket
	conn *tls.Conn
	err  error // why the TLS layer failed, for OnClose

	// Decrypted bytes not yet consumed: plain[pr:]. The buffer is the
	// loop's while it holds none.
	plain []byte
	pr    int

	// What the client sent and the handshake has not consumed: in[inOff:].
	// During the handshake the loop appends to it and the goroutine
	// consumes it, under mu; after it, the loop consumes what is left. The
	// array counts against Server.tlsHeld (its cap) until it is dropped,
	// which happens as soon as it is empty.
	mu          sync.Mutex
	cond        sync.Cond
	in          []byte
	inOff       int
	dead        bool        // the socket closed: the handshake's reads end
	handshaking atomic.Bool // true from the socket's opening to the handshake's end (on the loop)
	asked       bool        // the handshake has a slot or waits for one (loop-owned)

	// The pool's queue of handshakes waiting for a slot, guarded by
	// handshakePool.mu.
	queued       bool
	qprev, qnext *tlsState

	gc tlsConn // the engine's view (Conn.gc), allocated with the rest
}

// unread is what the client sent that crypto/tls has not read yet.
func (st *tlsState) unread() []byte { return st.in[st.inOff:] }

// consume copies unread bytes into p and drops the buffer once it is
// empty. Under mu during the handshake; on the loop after it.
func (st *tlsState) consume(p []byte) int {
	n := copy(p, st.in[st.inOff:])
	if st.inOff += n; st.inOff == len(st.in) {
		st.dropIn() // an empty slice of it would keep the array for the connection's life
	}
	return n
}

// dropIn lets the input buffer go.
func (st *tlsState) dropIn() {
	if st.in != nil {
		st.c.loop.srv.tlsHeld.Add(-int64(cap(st.in)))
	}
	st.in, st.inOff = nil, 0
}

// tlsHelloRoom is a ClientHello's worth of handshake input (about 2 KiB,
// with a post-quantum key share): a buffer no larger than it may take the
// total to twice WithMaxTLSHandshakeBytes's, so that sockets flooding past
// a ClientHello, which are refused at the bound itself, leave room for the
// handshakes of new clients.
const tlsHelloRoom = 4 << 10

// appendIn adds b to the unread input, within the bounds of
// WithMaxTLSHandshakeBytes: it reports false, and adds nothing, when
// that would pass them. Under mu.
func (st *tlsState) appendIn(b []byte) bool {
	s := st.c.loop.srv
	unread := len(st.in) - st.inOff
	need := unread + len(b)
	if need > s.opts.tlsInPerSocket {
		return false
	}
	if need > cap(st.in) {
		size := min(max(2*cap(st.in), need, 2<<10), s.opts.tlsInPerSocket)
		grow := int64(size - cap(st.in))
		total := int64(s.opts.tlsInTotal)
		if size <= tlsHelloRoom {
			total *= 2 // a ClientHello's worth: a flood that fills the bound does not shut out new clients
		}
		if s.tlsHeld.Add(grow) > total {
			s.tlsHeld.Add(-grow)
			return false
		}
		in := make([]byte, unread, size)
		copy(in, st.in[st.inOff:])
		st.in, st.inOff = in, 0
	} else if st.inOff+need > cap(st.in) {
		st.in = st.in[:copy(st.in, st.in[st.inOff:])] // room at the front
		st.inOff = 0
	}
	st.in = append(st.in, b...)
	return true
}

// transport is the net.Conn crypto/tls reads and writes: the handshake
// goroutine's blocking view while handshaking, the loop's non-blocking
// view after.
type transport tlsState

func (t *transport) Read(p []byte) (int, error) {
	st := (*tlsState)(t)
	if st.handshaking.Load() {
		st.mu.Lock()
		for len(st.in) == st.inOff && !st.dead {
			st.cond.Wait()
		}
		if st.dead {
			st.mu.Unlock()
			return 0, io.EOF
		}
		n := st.consume(p)
		st.mu.Unlock()
		return n, nil
	}
	// On the loop: bytes left over from the handshake first, then gnet's.
	if len(st.in) > st.inOff {
		return st.consume(p), nil
	}
	avail := st.raw.InboundBuffered()
	if avail == 0 {
		return 0, errWouldBlock
	}
	b, _ := st.raw.Peek(min(avail, len(p)))
	n := copy(p, b)
	_, _ = st.raw.Discard(n)
	return n, nil
}

func (t *transport) Write(p []byte) (int, error) {
	st := (*tlsState)(t)
	if st.handshaking.Load() {
		// Off the loop: gnet writes it on the loop, later, so it needs a
		// copy (crypto/tls reuses p).
		if err := st.raw.AsyncWrite(append([]byte(nil), p...), nil); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return st.raw.Write(p)
}

func (t *transport) Close() error                     { return nil }
func (t *transport) LocalAddr() net.Addr              { return t.raw.LocalAddr() }
func (t *transport) RemoteAddr() net.Addr             { return t.c.remote }
func (t *transport) SetDeadline(time.Time) error      { return nil }
func (t *transport) SetReadDeadline(time.Time) error  { return nil }
func (t *transport) SetWriteDeadline(time.Time) error { return nil }

// tlsConn is what the engine reads and writes for a TLS connection: the
// socket's gnet.Conn with the plaintext in place of the bytes on the wire.
type tlsConn struct {
	gnet.Conn
	st *tlsState
}

func (tc *tlsConn) InboundBuffered() int { return len(tc.st.plain) - tc.st.pr }

func (tc *tlsConn) Peek(n int) ([]byte, error) {
	st := tc.st
	if n < 0 || n > len(st.plain)-st.pr {
		n = len(st.plain) - st.pr
	}
	return st.plain[st.pr : st.pr+n], nil
}

func (tc *tlsConn) Discard(n int) (int, error) {
	st := tc.st
	if n < 0 || n > len(st.plain)-st.pr {
		n = len(st.plain) - st.pr
	}
	st.pr += n
	if st.pr == len(st.plain) {
		st.releasePlain()
	}
	return n, nil
}

// Write encrypts b into TLS records and writes them to the socket. On the
// loop.
func (tc *tlsConn) Write(b []byte) (int, error) { return tc.st.conn.Write(b) }

// newTLS wraps a socket that has just opened: c.gc becomes its plaintext
// view. Its handshake starts once the client's first record is in.
func (s *Server) newTLS(c *Conn, raw gnet.Conn) {
	st := &tlsState{c: c, raw: raw}
	st.cond.L = &st.mu
	st.handshaking.Store(true)
	st.conn = tls.Server((*transport)(st), s.opts.tls)
	st.gc = tlsConn{Conn: raw, st: st}
	c.gc = &st.gc
}

// state is the connection's TLS state; nil for a nil st (no TLS).
func (st *tlsState) state() *tls.ConnectionState {
	if st == nil {
		return nil
	}
	cs := st.conn.ConnectionState()
	return &cs
}

// pushHandshake moves what the client sent out of gnet's buffer to the
// handshake, and asks for the handshake's goroutine once the first record
// is in. It reports false once the handshake is over (the loop reads the
// records itself then), and overflow when the input would pass
// WithMaxTLSHandshakeBytes: the socket must close. On the loop.
func (st *tlsState) pushHandshake(raw gnet.Conn) (handshaking, overflow bool) {
	if !st.handshaking.Load() {
		return false, false
	}
	n := raw.InboundBuffered()
	b, _ := raw.Peek(n)
	st.mu.Lock()
	ok := st.appendIn(b)
	ask := ok && !st.asked && firstRecordIn(st.unread())
	if ok {
		st.cond.Signal()
	}
	st.mu.Unlock()
	_, _ = raw.Discard(n)
	if !ok {
		st.c.loop.srv.tlsOverflows.Add(1)
		return true, true
	}
	if ask {
		st.asked = true
		s := st.c.loop.srv
		s.handshakes.start(s, st)
	}
	return true, false
}

// firstRecordIn reports whether b, the start of what a client sent, holds
// its first TLS record whole, or enough to tell that it is not one
// crypto/tls would take: then the handshake can start (and, for the
// latter, fail at once) without waiting on a client that trickles.
func firstRecordIn(b []byte) bool {
	const recordHeader, maxRecord = 5, 16384 + 2048 // crypto/tls's maxCiphertext
	if len(b) > 0 && b[0] != 0x16 {                 // not a handshake record
		return true
	}
	if len(b) < recordHeader {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[3:5]))
	return n > maxRecord || len(b) >= recordHeader+n
}

// handshake runs on its own goroutine, then hands the connection back to
// its loop.
func (st *tlsState) handshake(s *Server) {
	err := st.conn.HandshakeContext(context.Background())
	if err != nil {
		st.mu.Lock()
		closed := st.dead && errors.Is(err, io.EOF) // the socket closed first: not the handshake's failure
		st.mu.Unlock()
		if !closed {
			s.tlsFailures.Add(1) // here, not on the loop: the peer may close before the loop hears of it
		}
	}
	if st.c.loop.el.Execute(context.Background(), &tlsDone{st: st, err: err}) != nil {
		st.mu.Lock()
		st.dead = true
		st.mu.Unlock()
	}
	s.handshakes.done(s)
}

// kill ends a handshake in progress or waiting for a slot (the socket
// closed), and drops its input. On the loop.
func (st *tlsState) kill() {
	s := st.c.loop.srv
	s.handshakes.remove(st)
	st.mu.Lock()
	st.dead = true
	st.dropIn()
	st.cond.Signal()
	st.mu.Unlock()
}

// tlsDone is a finished handshake, back on the loop.
type tlsDone struct {
	st  *tlsState
	err error
}

func (t *tlsDone) Run(context.Context) error {
	st, c := t.st, t.st.c
	if c.state.Load() != stateHandshake {
		return nil // closed meanwhile (the deadline, Shutdown)
	}
	if t.err != nil {
		st.err = t.err
		c.loop.closeSocket(c)
		return nil
	}
	st.mu.Lock()
	st.handshaking.Store(false) // the loop reads and writes from now on; st.in holds what came after the handshake
	st.mu.Unlock()
	c.beginDispatch()
	c.readInput(st)
	c.endDispatch()
	if c.afterDispatch(st) {
		c.loop.closeSocket(c)
		return nil
	}
	st.trimIdle() // the handshake's buffers
	return nil
}

// decrypt moves up to tlsPlainChunk bytes of plaintext out of crypto/tls.
// It reports whether it got any, and an error when the TLS layer failed
// or the peer closed it. On the loop.
func (st *tlsState) decrypt() (bool, error) {
	l := st.c.loop
	got := false
	for len(st.plain)-st.pr < tlsPlainChunk {
		if !st.recordReady() {
			return got, nil // nothing to decrypt: no read that could only say "would block"
		}
		if st.plain == nil {
			st.plain, l.tlsSpare = l.tlsSpare[:0], nil
			if st.plain == nil {
				st.plain = make([]byte, 0, 16<<10)
			}
		}
		if len(st.plain) == cap(st.plain) {
			if st.pr > 0 { // keep what is unread, at the start
				st.plain = st.plain[:copy(st.plain, st.plain[st.pr:])]
				st.pr = 0
			} else {
				st.plain = slices.Grow(st.plain, cap(st.plain))
			}
		}
		n, err := st.conn.Read(st.plain[len(st.plain):cap(st.plain)])
		st.plain = st.plain[:len(st.plain)+n]
		if n > 0 {
			got = true
		}
		if err != nil {
			if st.pr == len(st.plain) {
				st.releasePlain()
			}
			if errors.Is(err, errWouldBlock) {
				return got, nil
			}
			return got, err
		}
	}
	return got, nil
}

// recordReady reports whether crypto/tls can return something without
// waiting: plaintext it holds, or a whole record between what it has
// buffered and what waits in gnet's buffer. A read that finds only "would
// block" costs crypto/tls an allocation, so decrypt asks first. Without
// tlsIdleBufs it cannot tell, and says yes. On the loop.
func (st *tlsState) recordReady() bool {
	if len(tlsIdleBufs) != 3 {
		return true
	}
	p := unsafe.Pointer(st.conn)
	if (*bytes.Reader)(unsafe.Add(p, tlsIdleBufs[2])).Len() > 0 {
		return true // plaintext of a record not yet read out
	}
	buffered := (*bytes.Buffer)(unsafe.Add(p, tlsIdleBufs[0])).Bytes()
	avail := st.raw.InboundBuffered()
	have := len(buffered) + len(st.in) - st.inOff + avail
	if have < 5 {
		return false
	}
	// The next record's header: from crypto/tls's buffer, then the
	// handshake's leftovers, then gnet's.
	var hdr [5]byte
	k := copy(hdr[:], buffered)
	k += copy(hdr[k:], st.unread())
	if k < 5 {
		b, _ := st.raw.Peek(5 - k)
		copy(hdr[k:], b)
	}
	n := int(binary.BigEndian.Uint16(hdr[3:5]))
	if n > 16384+2048 { // crypto/tls's maxCiphertext
		return true // it refuses such a record from its header: waiting for the rest would hold up to 64 KiB
	}
	return have >= 5+n
}

// releasePlain gives an empty plaintext buffer back to the loop, so that
// an idle connection holds none.
func (st *tlsState) releasePlain() {
	l := st.c.loop
	if st.plain != nil && l.tlsSpare == nil && cap(st.plain) <= 4*tlsPlainChunk {
		l.tlsSpare = st.plain[:0]
	}
	st.plain, st.pr = nil, 0
}

// handshakePool bounds the TLS handshakes in progress. Those waiting for
// a slot form a FIFO list through their tlsState; a socket that closes
// leaves it at once (remove), so that it never holds a dead entry.
type handshakePool struct {
	mu         sync.Mutex
	running    int
	waiting    int
	head, tail *tlsState
}

// start runs st's handshake on a goroutine of its own, or queues it until
// a slot is free. On the loop.
func (p *handshakePool) start(s *Server, st *tlsState) {
	p.mu.Lock()
	if p.running >= s.opts.maxTLSHandshakes {
		st.queued, st.qprev = true, p.tail
		if p.tail != nil {
			p.tail.qnext = st
		} else {
			p.head = st
		}
		p.tail = st
		p.waiting++
		p.mu.Unlock()
		return
	}
	p.running++
	p.mu.Unlock()
	go st.handshake(s)
}

// done frees a slot and starts the handshake that has waited longest.
func (p *handshakePool) done(s *Server) {
	p.mu.Lock()
	p.running--
	var next *tlsState
	if p.head != nil && p.running < s.opts.maxTLSHandshakes {
		next = p.head
		p.unlink(next)
		p.running++
	}
	p.mu.Unlock()
	if next != nil {
		go next.handshake(s)
	}
}

// remove takes st out of the queue if it waits there.
func (p *handshakePool) remove(st *tlsState) {
	p.mu.Lock()
	if st.queued {
		p.unlink(st)
	}
	p.mu.Unlock()
}

// unlink takes a queued st out of the list; p.mu is held.
func (p *handshakePool) unlink(st *tlsState) {
	if st.qprev != nil {
		st.qprev.qnext = st.qnext
	} else {
		p.head = st.qnext
	}
	if st.qnext != nil {
		st.qnext.qprev = st.qprev
	} else {
		p.tail = st.qprev
	}
	st.queued, st.qprev, st.qnext = false, nil, nil
	p.waiting--
}

// counts returns the handshakes running and waiting for a slot.
func (p *handshakePool) counts() (running, waiting int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running, p.waiting
}

// crypto/tls keeps the buffers a connection's handshake grew (the raw
// input, about 2 KiB after a ClientHello with a post-quantum key share, and
// the handshake message buffer, as much again) for the connection's life,
// and offers no way to let them go. An idle connection should not hold
// them, so trimIdle drops them when they are empty, through their
// offsets in tls.Conn, found by reflection once and checked by type; on a
// Go whose tls.Conn differs, tlsIdleBufs is empty and nothing is trimmed
// (TestTLSIdleTrim says so). Only the loop uses a connection's tls.Conn
// once its handshake is over, so nothing reads them meanwhile.
var tlsIdleBufs = func() (offs []uintptr) {
	t := reflect.TypeFor[tls.Conn]()
	for _, f := range []struct {
		name string
		typ  reflect.Type
	}{
		{"rawInput", reflect.TypeFor[bytes.Buffer]()},
		{"hand", reflect.TypeFor[bytes.Buffer]()},
		{"input", reflect.TypeFor[bytes.Reader]()},
	} {
		sf, ok := t.FieldByName(f.name)
		if !ok || sf.Type != f.typ || len(sf.Index) != 1 {
			return nil
		}
		offs = append(offs, sf.Offset)
	}
	return offs
}()

// trimIdle drops crypto/tls's empty input buffers of an idle connection
// (its handshake just ended, or it has been silent for a ping interval).
// On the loop.
func (st *tlsState) trimIdle() {
	if len(tlsIdleBufs) != 3 || st.handshaking.Load() {
		return
	}
	p := unsafe.Pointer(st.conn)
	raw := (*bytes.Buffer)(unsafe.Add(p, tlsIdleBufs[0]))
	hand := (*bytes.Buffer)(unsafe.Add(p, tlsIdleBufs[1]))
	in := (*bytes.Reader)(unsafe.Add(p, tlsIdleBufs[2]))
	if in.Len() != 0 || raw.Len() != 0 {
		return // a record or its plaintext is still being read
	}
	*in = bytes.Reader{} // it points into raw's array
	*raw = bytes.Buffer{}
	if hand.Len() == 0 {
		*hand = bytes.Buffer{}
	}
}
