package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/buffer/elastic"
	"golang.org/x/sys/unix"

	"github.com/wsloop/wsloop/codec"
)

// Live connections handed to the new process (Restart with RestartKeep).
//
// Once the new process serves, the old one stops accepting (it keeps its
// listening descriptor until the hand-off ends, to accept again if the new
// process dies) and freezes the input of its open connections: a loop
// parses no further message of a connection once the one in progress (if
// any) is complete, and leaves what else arrives in gnet's buffer. Then, in
// rounds a few milliseconds apart, each loop hands over every connection
// that is at rest: at a message boundary, no send waiting in the loop's
// queue, no close under way. For each it sends, in one SOCK_SEQPACKET
// record per batch, the connection's descriptor (SCM_RIGHTS) and its
// state: subprotocol, permessage-deflate parameters and the client's
// window (client context takeover), bound key, rooms, the input read but
// not parsed, the output not yet written (what gnet holds, then what the
// engine has not given it, then the answer to a pending ping), and the
// application's own state (HandOffHandler.OnHandOff).
// The send is non-blocking, from the loop; once it succeeds the old process
// closes its descriptor (the socket lives on in the new process: no close
// frame, no FIN) and forgets the connection without OnClose.
//
// The new process adopts each connection on one of its loops as if it had
// just been upgraded there, without a 101: it rejoins the rooms, rebinds
// the key, restores the state (HandOffHandler.OnAdopt instead of OnOpen),
// and holds its input, again in gnet's buffer, until the old process says
// the hand-off is done. It writes the output it got before anything else,
// at once. Only then does it parse: a message published by
// one handed-over client therefore reaches every member of its rooms, in
// the order it was published, whichever process they were in, and the
// pause a client sees is the hand-off itself.
//
// What is not handed over: TLS connections (crypto/tls cannot export a
// session's keys and sequence numbers) and any connection not at rest when
// RestartHandOffTimeout runs out (a peer in the middle of a message that
// never ends) are drained with 1012; so are plain HTTP sockets. A new
// process built before output travelled (it does not say msgTakes) gets
// only connections whose output has left, and the others are drained when
// theirs does not leave in time. gnet offers no way to read back what a
// socket did not take; gnetout.go reads its connection's buffer in place
// (by reflection, checked by TestGnetOutboundReadable); were that ever
// impossible, such connections would wait for their output to drain. Sockets still in their upgrade handshake finish it in
// the old process and are handed over in a later round, if their request
// comes within handshakeGrace (300 ms) of the start; a socket that stays
// silent longer (a browser's preconnect) is closed at the end, and its
// client dials again, reaching the new process. If the new
// process dies during the hand-off, the old one takes its connections that
// had not left back into service (their frozen input is parsed), accepts
// again, and Restart returns ErrRestartFailed; the connections already
// sent are lost with the new process.

// HandOffHandler is a Handler whose connections Restart(RestartKeep) hands
// to the new process instead of draining them.
type HandOffHandler interface {
	Handler
	// OnHandOff runs on the old process's event loop, instead of OnClose,
	// when c is about to leave for the new process; what it returns travels
	// with c (at most a few KiB). It may run more than once for a
	// connection whose hand-off had to wait; the last result counts. What
	// was written to c before it runs travels with c; a write to c in
	// OnHandOff, or from another goroutine after it has run, may be
	// accepted and lost (c has left), so stop such writers here.
	OnHandOff(c *Conn) []byte
	// OnAdopt runs on the new process's event loop, instead of OnOpen, for
	// a connection handed over, with what OnHandOff returned: rebuild the
	// connection's Value from it (SetValue). Rooms, the bound key, the
	// subprotocol and compression are already restored.
	OnAdopt(c *Conn, state []byte)
}

// RestartKeep makes Restart hand the open connections to the new process
// instead of draining them (see HandOffHandler); the handler must
// implement HandOffHandler. Connections that cannot be handed over (TLS,
// or not at rest within RestartHandOffTimeout) are drained as RestartDrain
// says.
func RestartKeep() RestartOption { return func(c *restartConfig) { c.keep = true } }

// RestartHandOffTimeout bounds how long the hand-off waits for connections
// to come to rest (RestartKeep): half of it for messages in progress to
// end, all of it for the rest (a close or a queued send under way, and,
// with a new process built before output travelled, output to drain).
// Every client's input waits meanwhile, so one that never comes to rest
// must not hold the others for long: past the bound it is drained with
// 1012 instead. Default: 2 s.
func RestartHandOffTimeout(d time.Duration) RestartOption {
	return func(c *restartConfig) { c.handOffTimeout = d }
}

const (
	msgConn = "wsloop/1 conn" // old -> new, with the connections' descriptors: "\n" and their state
	// msgConnOut is msgConn with the output waiting to be written too, sent
	// to a new process that said msgTakes.
	msgConnOut = "wsloop/2 conn"
	msgTakes   = "wsloop/1 takes output" // new -> old, after msgReady: it takes msgConnOut records
	msgMore    = "wsloop/1 more"         // old -> new: "\n" and more of the input of the connection just sent
	msgDone    = "wsloop/1 done"         // old -> new: every connection that could be handed over was
	msgAck     = "wsloop/1 ack"          // new -> old: " <n>": it has adopted n connections
	msgSync    = "wsloop/1 sync"         // old -> new: acknowledge now
)

// A new process built before msgConnOut existed takes only msgConn
// records: it says nothing after msgReady, and the old process then hands
// over only connections whose output has left (and waits for it, up to
// RestartHandOffTimeout). The old process learns which it is from the
// answer to a first msgSync: msgTakes, if it comes, is before it.

// handOffWindow is how many connections may be sent and not yet adopted:
// those are lost if the new process dies, the rest stay with the old one.
// The new process acknowledges every ackEvery connections, and when asked.
const (
	handOffWindow = 1024
	ackEvery      = 64
)

// handshakeGrace is how long the hand-off waits for sockets in their
// upgrade handshake to open, so that they move too; those that have not
// are drained with the rest.
const handshakeGrace = 300 * time.Millisecond

// handOffChunk is the most a record carries: records are datagrams, which
// the socket pair's default send buffer (about 208 KiB) must hold. Input
// beyond it follows in msgMore records.
const handOffChunk = 128 << 10

// maxHandOffInput bounds the input a connection may have frozen (a client
// that streams during the hand-off); one with more is drained instead.
// maxHandOffData bounds its input and output together (the output is
// bounded by WithMaxOutboundBytes, and gnet's share of it by twice that).
const (
	maxHandOffInput = 16 << 20
	maxHandOffData  = 64 << 20
)

// handOffState is the old process's side of a hand-off, shared by its
// loops.
type handOffState struct {
	mu      sync.Mutex // one connection's records at a time
	fd      int        // the hand-off socket, a duplicate used for non-blocking sends
	sent    atomic.Int64
	acked   atomic.Int64 // adopted by the new process, as it last said
	wantAck atomic.Bool  // the window is full: ask for an acknowledgement
	acks    atomic.Int64 // acknowledgements received
	output  atomic.Bool  // the new process takes the output waiting (msgTakes)
	ended   atomic.Bool  // done was sent: from here EOF is the new process ending its side
	failed  atomic.Pointer[error]
}

func (h *handOffState) fail(err error) { h.failed.CompareAndSwap(nil, &err) }

// sync asks the new process to acknowledge what it has adopted.
func (h *handOffState) sync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.sendWait([]byte(msgSync)); err != nil {
		h.fail(err)
	}
}

// sendWait sends a record without descriptors, waiting for room in the
// socket pair (records the new process waits for); h.mu is held. It runs
// on a loop (a lone connection's rest of input and output): a new process
// that stops reading for sendWaitMax fails the hand-off.
func (h *handOffState) sendWait(rec []byte) error {
	for start := time.Now(); ; {
		err := unix.Sendmsg(h.fd, rec, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if !errors.Is(err, unix.EAGAIN) {
			return err
		}
		if time.Since(start) > sendWaitMax {
			return fmt.Errorf("the new process took no record for %v", sendWaitMax)
		}
		_, _ = unix.Poll([]unix.PollFd{{Fd: int32(h.fd), Events: unix.POLLOUT}}, 100)
	}
}

// sendWaitMax bounds sendWait.
const sendWaitMax = 5 * time.Second

// keepConnections runs the old process's hand-off once the new process
// serves, and then drains what is left (cfg.window).
func (s *Server) keepConnections(ctx context.Context, cfg *restartConfig) error {
	start := time.Now()
	hc := s.handoff.Load()
	var hfd int
	rc, err := hc.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { hfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		s.acc.handedOver.Store(true)
		s.stopAccepting()
		<-s.acc.exited // a socket it takes before it ends is served, and drained
		return s.Drain(ctx, cfg.window, cfg.drainOpts...)
	}
	ho := &handOffState{fd: hfd}
	defer unix.Close(hfd)
	go func() { // the new process's acknowledgements; EOF: it is gone
		buf := make([]byte, 64)
		for {
			n, err := hc.Read(buf)
			if err != nil {
				if !ho.ended.Load() {
					ho.fail(fmt.Errorf("the hand-off socket: %w", err))
				}
				return
			}
			if string(buf[:n]) == msgTakes {
				ho.output.Store(true)
			}
			if v, ok := cutPrefix(buf[:n], msgAck+" "); ok {
				if k, err := strconv.ParseInt(string(v), 10, 64); err == nil {
					ho.acked.Store(k)
				}
				ho.acks.Add(1)
			}
		}
	}()
	// Does the new process take the output waiting? It said so before
	// it answers this, if it does.
	ho.sync()
	for asked := time.Now(); ho.acks.Load() == 0 && ho.failed.Load() == nil && time.Since(asked) < time.Second; {
		time.Sleep(200 * time.Microsecond)
	}
	s.acc.paused.Store(true)
	s.handing.Store(ho)
	deadline := start.Add(cfg.handOffTimeout)
	stopped := false // the server stopped: its loops are gone
	// First every loop freezes, and the messages in progress end: one
	// completed now may publish, and its publish must reach members that
	// are all still here. A connection whose message does not end within
	// half the time allowed is closed with 1012 before anyone leaves.
	for freezeEnd := start.Add(cfg.handOffTimeout / 2); ; time.Sleep(2 * time.Millisecond) {
		var busy atomic.Int64
		stopped = !s.onEveryLoop(func(l *loop) {
			l.handingOff = true
			l.each(func(c *Conn) {
				if c.state.Load() == stateOpen && c.rd.inMessage() {
					busy.Add(1)
				}
			})
		})
		if stopped || busy.Load() == 0 || time.Now().After(freezeEnd) || ctx.Err() != nil {
			break
		}
	}
	stopped = stopped || !s.onEveryLoop(func(l *loop) {
		l.each(func(c *Conn) {
			if c.state.Load() == stateOpen && c.rd.inMessage() {
				c.closeNow(statusServiceRestart, "server restarting, reconnect", ErrServerRestart)
			}
		})
	})
	for {
		var remaining atomic.Int64
		early := time.Since(start) < handshakeGrace
		if stopped || !s.onEveryLoop(func(l *loop) { remaining.Add(int64(l.handOffRound(ho, early))) }) {
			return fmt.Errorf("%w: the server stopped during the hand-off, after %d connections", ErrRestartFailed, ho.sent.Load())
		}
		if p := ho.failed.Load(); p != nil {
			return s.abortHandOff(ho, *p)
		}
		if remaining.Load() == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		if ho.wantAck.Swap(false) {
			ho.sync()
		}
		time.Sleep(time.Millisecond)
	}
	// Every connection sent must be adopted before the end: until then the
	// new process may still die with them.
	for ho.acked.Load() < ho.sent.Load() && ho.failed.Load() == nil && time.Now().Before(deadline.Add(5*time.Second)) {
		ho.sync()
		time.Sleep(2 * time.Millisecond)
	}
	if p := ho.failed.Load(); p != nil {
		return s.abortHandOff(ho, *p)
	}
	if _, err := hc.Write([]byte(msgDone)); err != nil {
		return s.abortHandOff(ho, err)
	}
	ho.ended.Store(true)
	took := time.Since(start)
	s.handOffs.Add(uint64(ho.sent.Load()))
	if l := s.opts.logger; l != nil {
		l.Info("wsloop: connections handed to the new process", "handed", ho.sent.Load(), "took", took,
			"left", s.upgraded.Load())
	}
	s.acc.handedOver.Store(true)
	// Stop first, then unpause: the accept goroutine ends without taking
	// another socket (the new process's), and the drain begins once it has.
	s.stopAccepting()
	s.acc.paused.Store(false)
	<-s.acc.exited
	window := cfg.window
	if s.upgraded.Load() == 0 {
		window = 0
	}
	return s.Drain(ctx, window, cfg.drainOpts...)
}

// abortHandOff puts the connections that did not leave back into service
// after the new process failed, and accepts again.
func (s *Server) abortHandOff(ho *handOffState, cause error) error {
	s.handing.Store(nil)
	s.onEveryLoop(func(l *loop) {
		l.handingOff = false
		l.each(func(c *Conn) {
			if c.state.Load() == stateOpen && c.gc.InboundBuffered() > 0 {
				_ = c.socket().Wake(nil) // parse the frozen input
			}
		})
	})
	s.acc.paused.Store(false)
	s.restarting.Store(false)
	if hc := s.handoff.Swap(nil); hc != nil {
		hc.Close()
	}
	err := fmt.Errorf("%w: the new process failed during the hand-off, after %d connections: %w", ErrRestartFailed, ho.sent.Load(), cause)
	if l := s.opts.logger; l != nil {
		l.Error("wsloop: restart failed during the hand-off; this process keeps serving the connections it still has", "err", err)
	}
	return err
}

// onEveryLoop runs fn on every loop, in order with what was queued there
// before, and waits until all have run it; false: the server stopped
// meanwhile (the loops are gone, and fn may not have run on all).
func (s *Server) onEveryLoop(fn func(*loop)) bool {
	var wg sync.WaitGroup
	s.eachLoop(func(l *loop) {
		wg.Add(1)
		if l.enqueue(pubItem{kind: pubTask, cause: loopTask(func(l *loop) { defer wg.Done(); fn(l) })}) != nil {
			wg.Done() // the loop is gone
		}
	})
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	select {
	case <-all:
		return true
	case <-s.done:
		// A task queued as the loops stopped may never run: do not wait
		// for it.
		return false
	}
}

// handOffRound hands over the loop's connections that are at rest and
// returns how many are left that may come to rest. Connections go in
// batches: one record, and one sendmsg, for up to handOffBatch of them.
func (l *loop) handOffRound(ho *handOffState, early bool) int {
	l.handingOff = true
	left := 0
	b := &l.hoBatch
	output := ho.output.Load()
	b.output = output // the records' kind: as the entries are encoded
	l.each(func(c *Conn) {
		switch c.state.Load() {
		case stateHandshake:
			if early && c.lflags&lfServedHTTP == 0 {
				// An upgrade may be on its way: it is handed over once open.
				// (Not for long: a browser opens sockets it may never use.)
				left++
			}
			return
		case stateOpen:
		default:
			return // closing: it ends here
		}
		if c.tlsOf() != nil || ho.failed.Load() != nil {
			return
		}
		if !c.atRest(output) {
			left++
			return
		}
		if ho.sent.Load()+int64(len(b.conns))-ho.acked.Load() >= handOffWindow {
			left++ // the new process has enough in hand: next round
			ho.wantAck.Store(true)
			return
		}
		var blob []byte
		if hh, ok := l.srv.h.(HandOffHandler); ok {
			func() {
				defer c.recoverCallback()
				blob = hh.OnHandOff(c)
			}()
		}
		if c.state.Load() != stateOpen { // OnHandOff closed it
			return
		}
		entry, input, out, ok := l.encodeEntry(c, blob, b.scratch[:0], output)
		b.scratch = entry[:0]
		switch {
		case !ok || len(input)-out > maxHandOffInput || len(input) > maxHandOffData || len(entry) > handOffChunk/2:
			return // drained at the end
		case len(entry)+len(input) > handOffChunk/4:
			// Alone, its input in as many records as it takes.
			left += l.sendBatch(ho)
			b.add(c, entry, input, out)
			left += l.sendBatch(ho)
			return
		case len(b.body)+len(entry)+len(input) > handOffChunk-32 || len(b.conns) == handOffBatch:
			left += l.sendBatch(ho)
		}
		b.add(c, entry, input, out)
	})
	left += l.sendBatch(ho)
	if cap(b.data) > handOffChunk {
		b.data = nil // a lone connection's, not sent: not kept
	}
	return left
}

// handOffBatch is the most connections one record carries (SCM_RIGHTS
// takes at most 253 descriptors).
const handOffBatch = 128

// hoBatch is a loop's batch of connections on their way out.
type hoBatch struct {
	conns    []*Conn
	fds      []int
	body     []byte // the entries, each with its input
	input    []byte // a lone connection's input beyond the record (in data)
	data     []byte // the input and output of the connection being encoded
	output   bool   // the entries carry their output (msgConnOut)
	outBytes int    // the batch's output
	scratch  []byte
}

func (b *hoBatch) add(c *Conn, entry, input []byte, out int) {
	b.outBytes += out
	b.conns = append(b.conns, c)
	b.fds = append(b.fds, c.socket().Fd())
	b.body = append(b.body, entry...)
	room := handOffChunk - 32 - len(b.body)
	if len(input) > room { // a lone connection: the rest follows in msgMore records
		b.body = append(b.body, input[:room]...)
		b.input = input[room:] // the loop's scratch, sent before the next encode
		return
	}
	b.body = append(b.body, input...)
}

// sendBatch sends the loop's batch and forgets its connections here; it
// returns how many stay for the next round (the socket pair was full).
func (l *loop) sendBatch(ho *handOffState) int {
	b := &l.hoBatch
	n := len(b.conns)
	if n == 0 {
		return 0
	}
	defer func() {
		clear(b.conns)
		b.conns, b.fds, b.body, b.input = b.conns[:0], b.fds[:0], b.body[:0], nil
		b.outBytes = 0
		if cap(b.data) > handOffChunk {
			b.data = nil // a lone connection's: not kept
		}
	}()
	kind := msgConn
	if b.output {
		kind = msgConnOut
	}
	rec := binary.AppendUvarint(append(make([]byte, 0, len(kind)+8+len(b.body)), kind+"\n"...), uint64(n))
	rec = append(rec, b.body...)
	ho.mu.Lock()
	defer ho.mu.Unlock()
	err := unix.Sendmsg(ho.fd, rec, unix.UnixRights(b.fds...), nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return n // the socket pair is full: next round
	case errors.Is(err, unix.EMSGSIZE):
		return 0 // drained at the end
	case err != nil:
		ho.fail(err)
		return 0
	}
	// The rest of a lone connection's input: the new process waits for
	// it, so these sends wait for room too.
	var more []byte
	for off := 0; off < len(b.input); {
		k := min(len(b.input)-off, handOffChunk-len(msgMore)-1)
		if more == nil {
			more = make([]byte, 0, handOffChunk)
		}
		more = append(append(append(more[:0], msgMore...), '\n'), b.input[off:off+k]...)
		if err := ho.sendWait(more); err != nil {
			ho.fail(err)
			break // the connection is lost with the new process
		}
		off += k
	}
	ho.sent.Add(int64(n))
	l.srv.handOffBytes.Add(uint64(b.outBytes))
	for _, c := range b.conns {
		c.lflags |= lfHandedOver
		if ob := outboundOf(c); ob != nil {
			_, _ = ob.Discard(ob.Buffered()) // the new process writes it: gnet must not on close
		}
		l.closeSocket(c) // our descriptor only: the socket is the new process's
	}
	return 0
}

// atRest reports whether c can be handed over now: no message in
// progress, no send queued on the loop, no close under way, and, unless
// output travels with it, nothing waiting to be written.
func (c *Conn) atRest(output bool) bool {
	if c.rd.inMessage() || c.closeCalled.Load() || c.queued.Load() != 0 {
		return false
	}
	if output && (c.socket().OutboundBuffered() == 0 || outboundOf(c) != nil) {
		return true
	}
	if c.pong != nil {
		return false
	}
	c.mu.Lock()
	empty := len(c.out) == 0
	c.mu.Unlock()
	return empty && c.socket().OutboundBuffered() == 0
}

// encodeEntry appends c's entry to dst: uvarint-prefixed fields, and last
// the length of c's input and, with output, of its output, which follow it
// in the record; it returns the entry, the input and output (in the loop's
// scratch) and how much of it is output. Not ok: the output cannot be
// read.
func (l *loop) encodeEntry(c *Conn, blob, dst []byte, output bool) (entry, data []byte, out int, ok bool) {
	field := func(b, p []byte) []byte { return append(binary.AppendUvarint(b, uint64(len(p))), p...) }
	b := field(dst, []byte(c.Subprotocol()))
	b = append(b, c.pmd, c.win)
	// The peer's address, so that the new process need not ask the kernel:
	// its IP's length (0, 4 or 16), the IP, the port.
	if ta, ok := c.remote.(*net.TCPAddr); ok && (len(ta.IP) == 4 || len(ta.IP) == 16) {
		b = append(b, byte(len(ta.IP)))
		b = append(b, ta.IP...)
		b = append(b, byte(ta.Port>>8), byte(ta.Port))
	} else {
		b = append(b, 0)
	}
	c.mu.Lock()
	key := c.key
	c.mu.Unlock()
	b = field(b, []byte(key))
	rooms := l.rooms.AppendRoomsOf(l.roomScratch[:0], c)
	b = binary.AppendUvarint(b, uint64(len(rooms)))
	for _, r := range rooms {
		b = field(b, []byte(r))
	}
	clear(rooms)
	l.roomScratch = rooms[:0]
	var hist []byte
	if h := l.clientHist[c]; h != nil {
		hist = *h
	}
	b = field(b, hist)
	b = field(b, blob)
	// One array, sized once: a connection may take megabytes along, and
	// every fresh page costs a fault.
	size := c.gc.InboundBuffered()
	if pc, ok := c.gc.(*prefixConn); ok {
		size += pc.Conn.InboundBuffered()
	}
	var ob *elastic.Buffer
	if output {
		if c.socket().OutboundBuffered() > 0 {
			if ob = outboundOf(c); ob == nil {
				return b, nil, 0, false
			}
			size += ob.Buffered()
		}
		c.mu.Lock()
		size += len(c.out)
		c.mu.Unlock()
		size += 2 + 125
	}
	data = l.hoBatch.data[:0]
	if cap(data) < size {
		data = make([]byte, 0, size)
	}
	if pc, ok := c.gc.(*prefixConn); ok {
		data = append(data, pc.buf[pc.r:]...)
		rest, _ := pc.Conn.Peek(pc.Conn.InboundBuffered())
		data = append(data, rest...)
	} else if n := c.gc.InboundBuffered(); n > 0 {
		in, _ := c.gc.Peek(n)
		data = append(data, in...)
	}
	b = binary.AppendUvarint(b, uint64(len(data)))
	if output {
		// Oldest first: what gnet holds, then what the engine has not given
		// it yet, then the answer to the latest ping.
		in := len(data)
		if ob != nil {
			data = appendOutbound(data, ob)
		}
		c.mu.Lock()
		data = append(data, c.out...)
		c.mu.Unlock()
		if p := c.pong; p != nil {
			data = codec.AppendFrame(data, ws.OpPong, true, p.b[:p.n])
		}
		out = len(data) - in
		b = binary.AppendUvarint(b, uint64(out))
	}
	l.hoBatch.data = data
	return b, data, out, true
}

// adoption is a connection the new process got from the old one.
type adoption struct {
	remote      net.Addr // nil: ask the kernel
	subprotocol string
	pmd, win    uint8
	key         string
	rooms       []string
	hist        []byte
	input       []byte
	output      []byte // waiting to be written, before anything else
	blob        []byte
	inLen       int // of input, whose rest is output (decodeHandOff)
}

// splitOutput moves a's output, received after its input, to a.output.
// The input, which the connection keeps until it is parsed, gets an array
// of its own when there is output (written, and copied by gnet if need
// be, at once).
func (a *adoption) splitOutput() {
	a.input, a.output = a.input[:a.inLen:a.inLen], a.input[a.inLen:]
	if len(a.output) > 0 && len(a.input) > 0 {
		a.input = append([]byte(nil), a.input...)
	}
}

// decodeHandOff decodes a record of connections; the data (input, then
// output) of the last one may continue in msgMore records (len(input) <
// cap(input)): splitOutput then takes its output out of input.
func decodeHandOff(rec []byte) ([]*adoption, error) {
	rest, ok := cutPrefix(rec, msgConn+"\n")
	output := false
	if !ok {
		if rest, ok = cutPrefix(rec, msgConnOut+"\n"); !ok {
			return nil, fmt.Errorf("not a connection record: %.40q", rec)
		}
		output = true
	}
	bad := errors.New("a truncated connection record")
	uv := func() (uint64, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 {
			return 0, false
		}
		rest = rest[k:]
		return n, true
	}
	field := func() ([]byte, bool) {
		n, ok := uv()
		if !ok || uint64(len(rest)) < n {
			return nil, false
		}
		p := rest[:n]
		rest = rest[n:]
		return p, true
	}
	count, ok := uv()
	if !ok || count == 0 || count > handOffBatch {
		return nil, bad
	}
	as := make([]*adoption, 0, count)
	for i := range count {
		a := new(adoption)
		p, ok := field()
		if !ok || len(rest) < 2 {
			return nil, bad
		}
		a.subprotocol = string(p)
		a.pmd, a.win = rest[0], rest[1]
		rest = rest[2:]
		if len(rest) < 1 || (rest[0] != 0 && rest[0] != 4 && rest[0] != 16) || len(rest) < 1+int(rest[0])+2 {
			return nil, bad
		}
		if n := int(rest[0]); n > 0 {
			p := new(tcpPeer)
			copy(p.ip[:], rest[1:1+n])
			p.addr.IP, p.addr.Port = p.ip[:n:n], int(rest[1+n])<<8|int(rest[2+n])
			a.remote = &p.addr
			rest = rest[3+n:]
		} else {
			rest = rest[1:]
		}
		if p, ok = field(); !ok {
			return nil, bad
		}
		a.key = string(p)
		nr, ok := uv()
		if !ok || nr > uint64(len(rest)) {
			return nil, bad
		}
		for range nr {
			if p, ok = field(); !ok {
				return nil, bad
			}
			a.rooms = append(a.rooms, string(p))
		}
		hist, ok := field()
		if !ok {
			return nil, bad
		}
		blob, ok := field()
		if !ok {
			return nil, bad
		}
		total, ok := uv()
		if !ok || total > maxHandOffInput {
			return nil, bad
		}
		var out uint64
		if output {
			if out, ok = uv(); !ok || out > maxHandOffData-total {
				return nil, bad
			}
		}
		a.inLen = int(total)
		total += out
		inline := min(total, uint64(len(rest)))
		if inline < total && i != count-1 {
			return nil, bad // only the last one's input may continue
		}
		// The record's buffer is the receiver's: keep copies.
		a.hist = append([]byte(nil), hist...)
		a.blob = append([]byte(nil), blob...)
		a.input = append(make([]byte, 0, total), rest[:inline]...)
		rest = rest[inline:]
		as = append(as, a)
	}
	return as, nil
}

func cutPrefix(b []byte, prefix string) ([]byte, bool) {
	if len(b) < len(prefix) || string(b[:len(prefix)]) != prefix {
		return b, false
	}
	return b[len(prefix):], true
}

// receiveConnections is the new process's side: it adopts the connections
// the old one sends until it says it is done or goes away, then lets every
// adopted connection parse its input.
func (s *Server) receiveConnections(in *inheritance) {
	defer in.conn.Close()
	defer s.adoptionsDone()
	buf := make([]byte, handOffChunk+1024)
	received := 0
	// Acknowledgements count the connections registered on a loop (Stats.Adopted), not those received.
	ack := func() error {
		_, err := in.conn.Write(fmt.Appendf(nil, "%s %d", msgAck, s.adopted.Load()))
		return err
	}
	oob := make([]byte, unix.CmsgSpace(4*handOffBatch))
	rc, err := in.conn.SyscallConn()
	if err != nil {
		return
	}
	for {
		var n, oobn int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
			return rerr != unix.EAGAIN
		})
		if err != nil || rerr != nil || n == 0 {
			return // the old process ended, or closed its side
		}
		var fds []int
		if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
			for i := range msgs {
				if got, err := unix.ParseUnixRights(&msgs[i]); err == nil {
					fds = append(fds, got...)
				}
			}
		}
		rec := buf[:n]
		if string(rec) == msgSync {
			if ack() != nil {
				return
			}
			continue
		}
		if string(rec) == msgDone {
			for _, fd := range fds {
				_ = unix.Close(fd)
			}
			return
		}
		as, err := decodeHandOff(rec)
		if err == nil {
			last := as[len(as)-1]
			for len(last.input) < cap(last.input) { // the rest of its input
				n, _, _, _, rerr := in.conn.ReadMsgUnix(buf, nil)
				more, ok := cutPrefix(buf[:n], msgMore+"\n")
				if rerr != nil || !ok || len(last.input)+len(more) > cap(last.input) {
					err = fmt.Errorf("the input of a connection handed over was cut short: %v", rerr)
					break
				}
				last.input = append(last.input, more...)
			}
			for _, a := range as {
				a.splitOutput()
			}
		}
		if err != nil || len(fds) != len(as) {
			for _, fd := range fds {
				_ = unix.Close(fd)
			}
			if l := s.opts.logger; l != nil {
				l.Error("wsloop: a bad record from the old process", "err", err, "descriptors", len(fds))
			}
			continue
		}
		gone := false
		for i, a := range as {
			// The sockets are this process's alone once received: all of
			// them are adopted, even if the old process is gone.
			s.adopt(fds[i], a)
			if received++; received%ackEvery == 0 && !gone && ack() != nil {
				gone = true
			}
			if testHookReceived != nil {
				testHookReceived(received)
			}
		}
		if gone {
			return
		}
	}
}

// maxFrozen is the most input a connection may pile up while the hand-off
// holds it unparsed: one message of the largest size the server takes
// (WithMaxMessageSize), its frame headers and 64 KiB. A client that sends
// more (it floods while the hand-off runs) is closed with 1012, and
// reconnects; its input is discarded.
func (s *Server) maxFrozen() int { return s.opts.maxMessageSize + s.opts.maxMessageSize/64 + 64<<10 }

// checkFrozen enforces maxFrozen on the loop.
func (c *Conn) checkFrozen() {
	if c.gc.InboundBuffered() <= c.loop.srv.maxFrozen() || c.state.Load() != stateOpen {
		return
	}
	c.lflags &^= lfFrozen
	c.loop.srv.frozenFloods.Add(1)
	c.closeNow(statusServiceRestart, "server restarting, reconnect", ErrServerRestart)
	_, _ = c.gc.Discard(-1)
}

// testHookReceived, when set (tests), runs after each connection the new
// process receives, with how many it has received.
var testHookReceived func(n int)

// adopt queues a handed-over socket for a loop.
func (s *Server) adopt(fd int, a *adoption) {
	// The descriptor came close-on-exec (MSG_CMSG_CLOEXEC) and
	// non-blocking (a file status flag, shared with the old process's).
	remote := a.remote
	if remote == nil {
		if sa, err := unix.Getpeername(fd); err == nil {
			switch sa := sa.(type) {
			case *unix.SockaddrInet4:
				remote = &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
			case *unix.SockaddrInet6:
				remote = &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
			}
		}
	}
	if !s.takeSocket() {
		_ = unix.Close(fd)
		s.rejected.Add(1)
		if l := s.opts.logger; l != nil {
			l.Error("wsloop: a connection handed over was dropped: the socket cap is reached", "cap", s.socketCap.Load())
		}
		return
	}
	s.acc.queueNow(s.pickLoop(), accepted{fd: fd, remote: remote, adopt: a})
}

// adoptionsDone lets every adopted connection parse what it holds, once
// every one of them is registered on its loop (and has queued its Joins):
// a message one of them publishes then reaches all of them.
func (s *Server) adoptionsDone() {
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		var pending int32
		s.eachLoop(func(l *loop) { pending += l.hb.pending.Load() })
		if pending == 0 {
			break
		}
	}
	s.adopting.Store(false)
	s.eachLoop(func(l *loop) {
		_ = l.enqueue(pubItem{kind: pubTask, cause: loopTask(func(l *loop) {
			l.each(func(c *Conn) {
				if c.lflags&lfFrozen == 0 {
					return
				}
				c.lflags &^= lfFrozen
				if c.gc.InboundBuffered() > 0 {
					_ = c.socket().Wake(nil)
				}
			})
		})})
	})
}

// adoptConn makes the socket just opened on the loop the connection the old
// process handed over: open, without a 101. On the loop, in OnOpen.
func (c *Conn) adoptConn(a *adoption) gnet.Action {
	l := c.loop
	s := l.srv
	for i, p := range s.opts.subprotocols {
		if p == a.subprotocol {
			c.proto = uint8(i + 1)
		}
	}
	c.pmd, c.win = a.pmd, a.win
	// What the old process had not written yet goes first.
	c.write(a.output)
	if c.state.Load() == stateClosed {
		// The peer is gone (it reset the socket meanwhile): gnet closed
		// it, OnClose ran. Counted still, so that the old process's wait
		// for acknowledgements ends.
		s.adopted.Add(1)
		return gnet.None
	}
	if len(a.hist) > 0 {
		h := append([]byte(nil), a.hist...)
		l.clientHist[c] = &h
	}
	if len(a.input) > 0 {
		c.gc = &prefixConn{Conn: c.gc, buf: a.input}
	}
	if s.adopting.Load() {
		c.lflags |= lfFrozen
	}
	c.beginDispatch()
	c.mu.Lock()
	c.state.Store(stateOpen)
	c.mu.Unlock()
	c.opened()
	s.adopted.Add(1)
	for _, r := range a.rooms {
		_ = c.Join(r)
	}
	if a.key != "" {
		_ = c.Bind(a.key)
	}
	if hh, ok := s.h.(HandOffHandler); ok {
		func() {
			defer c.recoverCallback()
			hh.OnAdopt(c, a.blob)
		}()
	} else {
		c.callOnOpen()
	}
	if c.lflags&lfFrozen == 0 && c.gc.InboundBuffered() > 0 {
		c.readInput(nil)
	}
	c.endDispatch()
	if c.afterDispatch(nil) {
		return gnet.Close
	}
	return gnet.None
}
