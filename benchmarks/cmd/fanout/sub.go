package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// ring is the number of countdown slots, indexed by sequence number mod
// ring; -inflight must stay below it, so a slot is reused only after its
// publish reached every subscriber.
const (
	ring     = 1 << 16
	ringMask = ring - 1
)

// bench is the state shared by the publisher and every reader.
type bench struct {
	subs int
	size int
	op   byte
	pat  pattern
	cf   bool // -proto centrifuge
	nl   bool // -proto newline

	pending []atomic.Int32 // per sequence number: this process's subscribers still to receive it; -done-to: those that have it
	parties []atomic.Int32 // per sequence number: parties still to complete it (this process, and each -peers process)
	sentAt  []atomic.Int64 // per sequence number: when it was sent (unix ns)
	doneAt  []atomic.Int64 // per sequence number: the latest completion so far (unix ns)
	peers   int            // -peers: subscriber-only processes counted as subscribers
	report  *reporter      // -done-to: this process has subscribers only

	peersJoined atomic.Int64  // -peers: processes whose subscribers all have a probe
	tokens      chan struct{} // one per publish that may be sent now
	// measuredFrom is the first sequence number of the measured phase;
	// until GO it is beyond any sequence number.
	measuredFrom atomic.Uint64
	lastDone     atomic.Int64 // unix ns when the last completed publish completed
	lat          hist
	joined       atomic.Int64 // connections that have received a probe
	all          []*sub       // the subscribers, nil where a dial failed

	errs     atomic.Uint64
	failOnce sync.Once
	failed   chan struct{} // closed at the first error
	closing  atomic.Bool   // we are closing the sockets: read errors are ours

	// -deflate: the compressed copy of each message checked so far, by
	// sequence number, so that every other subscriber's copy is compared
	// byte for byte instead of inflated again.
	deflate   bool
	zcache    []atomic.Pointer[zcopy]
	inflaters sync.Pool // *wsload.Inflater
	wire      atomic.Uint64
	reencoded atomic.Uint64
	inflated  atomic.Uint64
}

// zcopy is a message as compressed by the server, with its sequence
// number and send time.
type zcopy struct {
	seq  uint64
	sent int64
	z    []byte
}

func newBench(subs, size, inflight int, op byte) *bench {
	b := &bench{
		subs:    subs,
		size:    size,
		op:      op,
		pat:     newPattern(size),
		pending: make([]atomic.Int32, ring),
		parties: make([]atomic.Int32, ring),
		sentAt:  make([]atomic.Int64, ring),
		doneAt:  make([]atomic.Int64, ring),
		tokens:  make(chan struct{}, inflight),
		failed:  make(chan struct{}),
	}
	b.measuredFrom.Store(1 << 62)
	b.zcache = make([]atomic.Pointer[zcopy], ring)
	for range inflight {
		b.tokens <- struct{}{}
	}
	return b
}

// fail counts an error, logs the first few and wakes the publisher.
func (b *bench) fail(format string, args ...any) {
	if n := b.errs.Add(1); n <= 20 {
		logf("error: "+format, args...)
	} else if n == 21 {
		logf("error: further errors not shown")
	}
	b.failOnce.Do(func() { close(b.failed) })
}

func (b *bench) hasFailed() bool {
	select {
	case <-b.failed:
		return true
	default:
		return false
	}
}

// sub is one client connection as a reader sees it: a subscriber, or the
// publisher reading its own messages (self).
type sub struct {
	id   int
	self bool
	nc   net.Conn // goroutine reader, and the publisher (a *net.TCPConn, or a *tls.Conn with -tls)
	fd   int      // epoll reader: the socket, non-blocking; -1 once closed

	buf  []byte // unread bytes are buf[r:w]
	r, w int

	scratch []byte // -proto centrifuge: a publication's payload, unescaped
	frag    []byte // -proto newline and centrifuge: a fragmented message so far
	fragOp  byte   // its opcode; 0 when none is in progress

	reads  uint64        // read calls, for the summary once reading stopped
	msgs   uint64        // data messages, probes included
	next   atomic.Uint64 // the next data sequence number expected
	joined bool          // a probe arrived
	data   bool          // a data message arrived
	dead   bool
}

var errClosing = errors.New("closing")

// consume handles every complete frame in s.buf[s.r:s.w] and moves what is
// left to the front of the buffer. An error ends the connection.
func (s *sub) consume(b *bench) error {
	maxPayload := max(b.size+b.size/8+64, 125)
	switch {
	case b.cf:
		maxPayload = cfMaxFrame(b.size)
	case b.nl:
		maxPayload = nlMaxFrame(b.size)
	}
	for {
		f, n, err := parseFrame(s.buf[s.r:s.w], maxPayload)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
		s.r += n
		if f.masked || (f.rsv != 0 && !(b.deflate && f.rsv == 0x40 && (f.op == opText || f.op == opBinary))) {
			return fmt.Errorf("bad frame from server: opcode %#x, masked %v, rsv %#x", f.op, f.masked, f.rsv)
		}
		if (b.cf || b.nl) && (f.op == opCont || ((f.op == opText || f.op == opBinary) && !f.fin)) {
			// A server that joins messages may send the joined message
			// in fragments (gorilla's writer flushes a frame whenever
			// its buffer fills): reassemble it.
			var done bool
			if f, done, err = s.reassemble(f, maxPayload); err != nil {
				return err
			}
			if !done {
				continue
			}
		}
		switch f.op {
		case opText, opBinary:
			if b.cf {
				if err := s.cfFrame(b, f); err != nil {
					return err
				}
				continue
			}
			if b.nl && f.fin {
				for m := range bytes.SplitSeq(f.payload, []byte{'\n'}) {
					if err := s.message(b, frame{fin: true, op: f.op, payload: m}); err != nil {
						return err
					}
				}
				continue
			}
			if err := s.message(b, f); err != nil {
				return err
			}
		case opPing:
			if !f.fin || len(f.payload) > 125 {
				return errors.New("bad ping frame")
			}
			var mask [4]byte
			if err := s.send(wsload.AppendClientFrame(make([]byte, 0, 6+len(f.payload)), opPong, f.payload, mask)); err != nil {
				return fmt.Errorf("answering a ping: %w", err)
			}
		case opPong:
		case opClose:
			if b.closing.Load() {
				return errClosing
			}
			if len(f.payload) >= 2 {
				return fmt.Errorf("server closed the connection: code %d %q", int(f.payload[0])<<8|int(f.payload[1]), f.payload[2:])
			}
			return errors.New("server closed the connection (close frame)")
		default:
			return fmt.Errorf("unexpected frame: opcode %#x fin %v (one final frame per message expected)", f.op, f.fin)
		}
	}
	if s.r == s.w {
		s.r, s.w = 0, 0
	} else if s.r > 0 {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	if s.w == len(s.buf) {
		// A frame larger than the buffer (parseFrame bounds it by
		// maxPayload): make room for the rest of it.
		s.buf = append(s.buf, make([]byte, len(s.buf))...)
	}
	return nil
}

// reassemble adds a fragment of a data message; when it is the last, it
// returns the whole message as one final frame.
func (s *sub) reassemble(f frame, maxPayload int) (frame, bool, error) {
	switch {
	case f.op != opCont && s.fragOp != 0:
		return f, false, fmt.Errorf("message after %d: a new message (opcode %#x) inside a fragmented one", s.next.Load(), f.op)
	case f.op == opCont && s.fragOp == 0:
		return f, false, fmt.Errorf("message after %d: a continuation frame outside a fragmented message", s.next.Load())
	case len(s.frag)+len(f.payload) > maxPayload:
		return f, false, fmt.Errorf("message after %d: fragmented message larger than %d bytes", s.next.Load(), maxPayload)
	}
	if f.op != opCont {
		s.fragOp = f.op
	}
	s.frag = append(s.frag, f.payload...)
	if !f.fin {
		return f, false, nil
	}
	whole := frame{fin: true, op: s.fragOp, payload: s.frag}
	s.frag, s.fragOp = s.frag[:0], 0
	return whole, true, nil
}

// nlMaxFrame bounds a server frame with -proto newline: the messages a
// hub may have queued for a client (gorilla's example queues 256), each
// followed by a newline.
func nlMaxFrame(size int) int { return 300 * (size + 1) }

// inflate returns the payload of a compressed message, or, when f's bytes
// are those of a copy already checked, that copy (and a nil payload).
func (s *sub) inflate(b *bench, f frame) ([]byte, *zcopy, error) {
	next := s.next.Load()
	if c := b.zcache[next&ringMask].Load(); c != nil && c.seq == next && bytes.Equal(c.z, f.payload) {
		return nil, c, nil
	}
	inf, _ := b.inflaters.Get().(*wsload.Inflater)
	if inf == nil {
		inf = new(wsload.Inflater)
	}
	defer b.inflaters.Put(inf)
	p, err := inf.Inflate(f.payload, b.size)
	if err != nil {
		return nil, nil, fmt.Errorf("message after %d: %v", s.next.Load(), err)
	}
	p = bytes.Clone(p)
	if len(p) != b.size {
		return p, nil, nil // message reports the length
	}
	seq, sent, ok := getHeader(p)
	if !ok || seq&probeBit != 0 || !b.pat.check(p, seq) {
		return p, nil, nil // message reports what is wrong, or handles the probe
	}
	if seq >= b.measuredFrom.Load() {
		b.inflated.Add(1)
	}
	slot := &b.zcache[seq&ringMask]
	if c := slot.Load(); c != nil && c.seq == seq {
		b.reencoded.Add(1) // inflates right, but to other bytes than another copy
	} else {
		slot.Store(&zcopy{seq: seq, sent: sent, z: bytes.Clone(f.payload)})
	}
	return p, nil, nil
}

// message checks one data message and counts it down.
func (s *sub) message(b *bench, f frame) error {
	p := f.payload
	if !f.fin {
		return errors.New("fragmented message (one frame per message expected)")
	}
	if f.rsv == 0x40 {
		q, c, err := s.inflate(b, f)
		if err != nil {
			return err
		}
		if c != nil {
			// The same bytes as a copy already checked, of the message
			// expected next.
			s.msgs++
			if c.seq >= b.measuredFrom.Load() && !s.self {
				b.wire.Add(uint64(len(f.payload)))
			}
			return s.count(b, c.seq)
		}
		if len(q) >= headerLen {
			if seq, _, ok := getHeader(q); ok && seq&probeBit == 0 && seq >= b.measuredFrom.Load() && !s.self {
				b.wire.Add(uint64(len(f.payload)))
			}
		}
		p = q
	}
	if f.op != b.op || len(p) != b.size {
		return fmt.Errorf("message after %d: opcode %#x, %d bytes; want opcode %#x, %d bytes", s.next.Load(), f.op, len(p), b.op, b.size)
	}
	s.msgs++
	seq, _, ok := getHeader(p)
	if !ok {
		return fmt.Errorf("message after %d: corrupted header", s.next.Load())
	}
	if !b.pat.check(p, seq) {
		return fmt.Errorf("message %#x: corrupted body", seq)
	}
	if seq&probeBit != 0 {
		if s.data {
			return fmt.Errorf("probe %d after data message %d", seq&^probeBit, s.next.Load()-1)
		}
		if !s.joined {
			s.joined = true
			b.joined.Add(1)
		}
		return nil
	}
	if !s.joined {
		return fmt.Errorf("data message %d before any probe", seq)
	}
	if f.rsv == 0 && seq >= b.measuredFrom.Load() && !s.self {
		b.wire.Add(uint64(len(p)))
	}
	return s.count(b, seq)
}

// count checks that data message seq is the next one and counts it down.
// The clock is read once per publish per process: when this process's
// last subscriber has the message.
func (s *sub) count(b *bench, seq uint64) error {
	s.data = true
	next := s.next.Load()
	switch {
	case seq > next:
		return fmt.Errorf("gap: got message %d, want %d (%d lost)", seq, next, seq-next)
	case seq < next:
		return fmt.Errorf("duplicate or reordered: got message %d, want %d", seq, next)
	}
	s.next.Store(next + 1)
	if s.self {
		return nil
	}
	slot := seq & ringMask
	if b.report != nil { // subscribers only: count up, and tell the publisher's process
		if b.pending[slot].Add(1) == int32(b.subs) {
			b.pending[slot].Store(0)
			b.report.done(seq, time.Now().UnixNano())
		}
		return nil
	}
	if b.pending[slot].Add(-1) == 0 {
		return b.complete(seq, time.Now().UnixNano())
	}
	return nil
}

// complete counts down one party to seq (this process's subscribers, all
// of them, or a peer process's) that had it at t; the last one returns
// the publish's token and records its latency, to the latest t.
func (b *bench) complete(seq uint64, t int64) error {
	slot := seq & ringMask
	for {
		old := b.doneAt[slot].Load()
		if t <= old || b.doneAt[slot].CompareAndSwap(old, t) {
			break
		}
	}
	if b.parties[slot].Add(-1) == 0 {
		last := b.doneAt[slot].Load()
		if seq >= b.measuredFrom.Load() {
			b.lat.record(last - b.sentAt[slot].Load())
		}
		b.lastDone.Store(last)
		select {
		case b.tokens <- struct{}{}:
		default:
			return fmt.Errorf("message %d completed with every token back (a duplicate countdown)", seq)
		}
	}
	return nil
}

// send writes a (small) control frame.
func (s *sub) send(p []byte) error {
	if s.nc != nil {
		_ = s.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, err := s.nc.Write(p)
		return err
	}
	for tries := 0; len(p) > 0; tries++ {
		n, err := unix.Write(s.fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN && tries < 100:
			time.Sleep(time.Millisecond)
			continue
		case err != nil:
			return err
		}
		p = p[n:]
	}
	return nil
}

// delivered is the number of measured messages s received.
func (s *sub) delivered(from uint64) uint64 {
	if n := s.next.Load(); n > from {
		return n - from
	}
	return 0
}
