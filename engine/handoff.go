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

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// Live connections handed to the new process (Restart with RestartKeep).
//
// Once the new process serves, the old one stops accepting (it keeps its
// listening descriptor until the hand-off ends, to accept again if the new
// process dies) and freezes the input of its open connections: a loop
// parses no further message of a connection once the one in progress (if
// any) is complete, and leaves what else arrives in gnet's buffer. Then, in
// rounds a few milliseconds apart, each loop hands over every connection
// that is at rest: at a message boundary, nothing waiting to be written
// (neither in its own buffer nor in gnet's: output is flushed, not moved),
// no close under way. For each it sends one SOCK_SEQPACKET record on the
// hand-off socket with the connection's descriptor (SCM_RIGHTS) and its
// state: subprotocol, permessage-deflate parameters and the client's
// window (client context takeover), bound key, rooms, the input read but
// not parsed, and the application's own state (HandOffHandler.OnHandOff).
// The send is non-blocking, from the loop; once it succeeds the old process
// closes its descriptor (the socket lives on in the new process: no close
// frame, no FIN) and forgets the connection without OnClose.
//
// The new process adopts each connection on one of its loops as if it had
// just been upgraded there, without a 101: it rejoins the rooms, rebinds
// the key, restores the state (HandOffHandler.OnAdopt instead of OnOpen),
// and holds its input, again in gnet's buffer, until the old process says
// the hand-off is done. Only then does it parse: a message published by
// one handed-over client therefore reaches every member of its rooms, in
// the order it was published, whichever process they were in, and the
// pause a client sees is the hand-off itself.
//
// What is not handed over: TLS connections (crypto/tls cannot export a
// session's keys and sequence numbers) and any connection not at rest when
// RestartHandOffTimeout runs out (a peer in the middle of a message that
// never ends, output that never drains) are drained with 1012; so are
// plain HTTP sockets. Sockets still in their upgrade handshake finish it in
// the old process and are handed over in a later round. If the new
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
	// connection whose hand-off had to wait; the last result counts.
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
// to come to rest (RestartKeep). Default: 10 s.
func RestartHandOffTimeout(d time.Duration) RestartOption {
	return func(c *restartConfig) { c.handOffTimeout = d }
}

const (
	msgConn = "wsloop/1 conn" // old -> new, with the connection's descriptor: "\n" and its state
	msgMore = "wsloop/1 more" // old -> new: "\n" and more of the input of the connection just sent
	msgDone = "wsloop/1 done" // old -> new: every connection that could be handed over was
	msgAck  = "wsloop/1 ack"  // new -> old: " <n>": it has adopted n connections
)

// handOffWindow is how many connections may be sent and not yet adopted:
// those are lost if the new process dies, the rest stay with the old one.
const handOffWindow = 256

// handOffChunk is the most a record carries: records are datagrams, which
// the socket pair's default send buffer (about 208 KiB) must hold. Input
// beyond it follows in msgMore records.
const handOffChunk = 128 << 10

// maxHandOffInput bounds the input a connection may have frozen (a client
// that streams during the hand-off); one with more is drained instead.
const maxHandOffInput = 16 << 20

// handOffState is the old process's side of a hand-off, shared by its
// loops.
type handOffState struct {
	mu     sync.Mutex // one connection's records at a time
	fd     int        // the hand-off socket, a duplicate used for non-blocking sends
	sent   atomic.Int64
	acked  atomic.Int64 // adopted by the new process, as it last said
	failed atomic.Pointer[error]
}

func (h *handOffState) fail(err error) { h.failed.CompareAndSwap(nil, &err) }

// keepConnections runs the old process's hand-off once the new process
// serves, and then drains what is left (cfg.window).
func (s *Server) keepConnections(ctx context.Context, cfg *restartConfig) error {
	start := time.Now()
	var hfd int
	rc, err := s.handoff.SyscallConn()
	if err == nil {
		cerr := rc.Control(func(fd uintptr) { hfd, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) })
		if err == nil {
			err = cerr
		}
	}
	if err != nil {
		s.acc.handedOver.Store(true)
		s.stopAccepting()
		return s.Drain(ctx, cfg.window, cfg.drainOpts...)
	}
	ho := &handOffState{fd: hfd}
	defer unix.Close(hfd)
	go func() { // the new process's acknowledgements; EOF: it is gone
		buf := make([]byte, 64)
		for {
			n, err := s.handoff.Read(buf)
			if err != nil {
				if ho.acked.Load() < 1<<62 { // not after the end
					ho.fail(fmt.Errorf("the hand-off socket: %w", err))
				}
				return
			}
			if v, ok := cutPrefix(buf[:n], msgAck+" "); ok {
				if k, err := strconv.ParseInt(string(v), 10, 64); err == nil {
					ho.acked.Store(k)
				}
			}
		}
	}()
	s.acc.paused.Store(true)
	s.handing.Store(ho)
	deadline := start.Add(cfg.handOffTimeout)
	// First every loop freezes, and the messages in progress end: one
	// completed now may publish, and its publish must reach members that
	// are all still here. A connection whose message does not end within
	// half the time allowed is closed with 1012 before anyone leaves.
	for freezeEnd := start.Add(cfg.handOffTimeout / 2); ; time.Sleep(2 * time.Millisecond) {
		var busy atomic.Int64
		s.onEveryLoop(func(l *loop) {
			l.handingOff = true
			l.each(func(c *Conn) {
				if c.state.Load() == stateOpen && (c.rd.msgOp != 0 || c.rd.inFrame) {
					busy.Add(1)
				}
			})
		})
		if busy.Load() == 0 || time.Now().After(freezeEnd) || ctx.Err() != nil {
			break
		}
	}
	s.onEveryLoop(func(l *loop) {
		l.each(func(c *Conn) {
			if c.state.Load() == stateOpen && (c.rd.msgOp != 0 || c.rd.inFrame) {
				c.closeNow(statusServiceRestart, "server restarting, reconnect", ErrServerRestart)
			}
		})
	})
	for {
		var remaining atomic.Int64
		s.onEveryLoop(func(l *loop) { remaining.Add(int64(l.handOffRound(ho))) })
		if p := ho.failed.Load(); p != nil {
			return s.abortHandOff(ho, *p)
		}
		if remaining.Load() == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Every connection sent must be adopted before the end: until then the
	// new process may still die with them.
	for ho.acked.Load() < ho.sent.Load() && ho.failed.Load() == nil && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(time.Millisecond)
	}
	if p := ho.failed.Load(); p != nil {
		return s.abortHandOff(ho, *p)
	}
	if _, err := s.handoff.Write([]byte(msgDone)); err != nil {
		return s.abortHandOff(ho, err)
	}
	ho.acked.Store(1 << 62) // from here EOF is the new process ending its side
	took := time.Since(start)
	s.handOffs.Add(uint64(ho.sent.Load()))
	if l := s.opts.logger; l != nil {
		l.Info("wsloop: connections handed to the new process", "handed", ho.sent.Load(), "took", took,
			"left", s.upgraded.Load())
	}
	s.acc.handedOver.Store(true)
	s.acc.paused.Store(false)
	s.stopAccepting()
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
	s.handoff.Close()
	s.handoff = nil
	err := fmt.Errorf("%w: the new process failed during the hand-off, after %d connections: %w", ErrRestartFailed, ho.sent.Load(), cause)
	if l := s.opts.logger; l != nil {
		l.Error("wsloop: restart failed during the hand-off; this process keeps serving the connections it still has", "err", err)
	}
	return err
}

// onEveryLoop runs fn on every loop, in order with what was queued there
// before, and waits until all have run it.
func (s *Server) onEveryLoop(fn func(*loop)) {
	var wg sync.WaitGroup
	s.eachLoop(func(l *loop) {
		wg.Add(1)
		if l.enqueue(pubItem{kind: pubTask, task: func(l *loop) { defer wg.Done(); fn(l) }}) != nil {
			wg.Done() // the loop is gone
		}
	})
	wg.Wait()
}

// handOffRound hands over the loop's connections that are at rest and
// returns how many are left that may come to rest.
func (l *loop) handOffRound(ho *handOffState) int {
	l.handingOff = true
	left := 0
	l.each(func(c *Conn) {
		switch c.state.Load() {
		case stateHandshake:
			if c.lflags&lfServedHTTP == 0 {
				left++ // an upgrade may be on its way: it is handed over once open
			}
			return
		case stateOpen:
		default:
			return // closing: it ends here
		}
		if c.tlsOf() != nil || ho.failed.Load() != nil {
			return
		}
		if !c.atRest() {
			left++
			return
		}
		if ho.sent.Load()-ho.acked.Load() >= handOffWindow {
			left++ // the new process has enough in hand: next round
			return
		}
		switch err := l.handOver(c, ho); {
		case err == nil:
		case errors.Is(err, unix.EAGAIN):
			left++ // the socket pair is full: next round
		case errors.Is(err, unix.EMSGSIZE), errors.Is(err, errRecordTooLarge):
			// drained at the end
		default:
			ho.fail(err)
		}
	})
	return left
}

// atRest reports whether c can be handed over now: no message in
// progress, nothing waiting to be written, no close under way.
func (c *Conn) atRest() bool {
	if c.rd.msgOp != 0 || c.rd.inFrame || c.pong != nil || c.closeCalled.Load() || c.queued.Load() != 0 {
		return false
	}
	c.mu.Lock()
	empty := len(c.out) == 0
	c.mu.Unlock()
	return empty && c.socket().OutboundBuffered() == 0
}

var errRecordTooLarge = errors.New("the connection's state is too large to hand over")

// handOver sends c to the new process and forgets it here.
func (l *loop) handOver(c *Conn, ho *handOffState) error {
	var blob []byte
	if hh, ok := l.srv.h.(HandOffHandler); ok {
		func() {
			defer c.recoverCallback()
			blob = hh.OnHandOff(c)
		}()
	}
	if c.state.Load() != stateOpen { // OnHandOff closed it
		return nil
	}
	rec, input := l.encodeHandOff(c, blob)
	if len(input) > maxHandOffInput || len(rec) > handOffChunk {
		return errRecordTooLarge
	}
	first := min(len(input), handOffChunk-len(rec))
	rec = append(rec, input[:first]...)
	ho.mu.Lock()
	defer ho.mu.Unlock()
	err := unix.Sendmsg(ho.fd, rec, unix.UnixRights(c.socket().Fd()), nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
	if err != nil {
		return err
	}
	// The rest of the input: the new process waits for it, so these sends
	// wait for room too.
	for off := first; off < len(input); {
		n := min(len(input)-off, handOffChunk-len(msgMore)-1)
		more := append(append(append(make([]byte, 0, n+len(msgMore)+1), msgMore...), '\n'), input[off:off+n]...)
		if err := unix.Sendmsg(ho.fd, more, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL); err != nil {
			if errors.Is(err, unix.EAGAIN) {
				_, _ = unix.Poll([]unix.PollFd{{Fd: int32(ho.fd), Events: unix.POLLOUT}}, 100)
				continue
			}
			ho.fail(err)
			return nil // the connection is lost with the new process
		}
		off += n
	}
	ho.sent.Add(1)
	c.lflags |= lfHandedOver
	_, _ = c.gc.Discard(-1) // it went with the record
	l.closeSocket(c)        // our descriptor only: the socket is the new process's
	return nil
}

// encodeHandOff encodes c's state: msgConn, a newline, uvarint-prefixed
// fields, and last the length of c's input; it returns the record and the
// input, which follows (handOver).
func (l *loop) encodeHandOff(c *Conn, blob []byte) ([]byte, []byte) {
	field := func(b, p []byte) []byte { return append(binary.AppendUvarint(b, uint64(len(p))), p...) }
	b := append(make([]byte, 0, 256), msgConn+"\n"...)
	b = field(b, []byte(c.Subprotocol()))
	b = append(b, c.pmd, c.win)
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
	var in []byte
	if pc, ok := c.gc.(*prefixConn); ok {
		in = append(in, pc.buf[pc.r:]...)
		rest, _ := pc.Conn.Peek(pc.Conn.InboundBuffered())
		in = append(in, rest...)
	} else if n := c.gc.InboundBuffered(); n > 0 {
		in, _ = c.gc.Peek(n)
	}
	return binary.AppendUvarint(b, uint64(len(in))), in
}

// adoption is a connection the new process got from the old one.
type adoption struct {
	subprotocol string
	pmd, win    uint8
	key         string
	rooms       []string
	hist        []byte
	input       []byte
	blob        []byte
}

func decodeHandOff(rec []byte) (*adoption, error) {
	rest, ok := cutPrefix(rec, msgConn+"\n")
	if !ok {
		return nil, fmt.Errorf("not a connection record: %.40q", rec)
	}
	bad := errors.New("a truncated connection record")
	field := func() ([]byte, bool) {
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n {
			return nil, false
		}
		p := rest[k : k+int(n)]
		rest = rest[k+int(n):]
		return p, true
	}
	a := new(adoption)
	p, ok := field()
	if !ok || len(rest) < 2 {
		return nil, bad
	}
	a.subprotocol = string(p)
	a.pmd, a.win = rest[0], rest[1]
	rest = rest[2:]
	if p, ok = field(); !ok {
		return nil, bad
	}
	a.key = string(p)
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)) {
		return nil, bad
	}
	rest = rest[k:]
	for range n {
		if p, ok = field(); !ok {
			return nil, bad
		}
		a.rooms = append(a.rooms, string(p))
	}
	if a.hist, ok = field(); !ok {
		return nil, bad
	}
	if a.blob, ok = field(); !ok {
		return nil, bad
	}
	total, k := binary.Uvarint(rest)
	if k <= 0 || total > maxHandOffInput || uint64(len(rest)-k) > total {
		return nil, bad
	}
	// The record's buffer is the receiver's: keep copies.
	a.hist = append([]byte(nil), a.hist...)
	a.blob = append([]byte(nil), a.blob...)
	a.input = append(make([]byte, 0, total), rest[k:]...)
	return a, nil
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
	adopted := 0
	oob := make([]byte, unix.CmsgSpace(4*8))
	for {
		n, oobn, _, _, err := in.conn.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 {
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
		if string(rec) == msgDone {
			for _, fd := range fds {
				_ = unix.Close(fd)
			}
			return
		}
		a, err := decodeHandOff(rec)
		for err == nil && len(a.input) < cap(a.input) { // the rest of its input
			n, _, _, _, rerr := in.conn.ReadMsgUnix(buf, nil)
			more, ok := cutPrefix(buf[:n], msgMore+"\n")
			if rerr != nil || !ok || len(a.input)+len(more) > cap(a.input) {
				err = fmt.Errorf("the input of a connection handed over was cut short: %v", rerr)
				break
			}
			a.input = append(a.input, more...)
		}
		if err != nil || len(fds) != 1 {
			for _, fd := range fds {
				_ = unix.Close(fd)
			}
			if l := s.opts.logger; l != nil {
				l.Error("wsloop: a bad record from the old process", "err", err, "descriptors", len(fds))
			}
			continue
		}
		s.adopt(fds[0], a)
		adopted++
		if _, err := in.conn.Write(fmt.Appendf(nil, "%s %d", msgAck, adopted)); err != nil {
			return
		}
	}
}

// adopt queues a handed-over socket for a loop.
func (s *Server) adopt(fd int, a *adoption) {
	unix.CloseOnExec(fd)
	_ = unix.SetNonblock(fd, true)
	var remote net.Addr
	if sa, err := unix.Getpeername(fd); err == nil {
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			remote = &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
		case *unix.SockaddrInet6:
			remote = &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
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
		_ = l.enqueue(pubItem{kind: pubTask, task: func(l *loop) {
			l.each(func(c *Conn) {
				if c.lflags&lfFrozen == 0 {
					return
				}
				c.lflags &^= lfFrozen
				if c.gc.InboundBuffered() > 0 {
					_ = c.socket().Wake(nil)
				}
			})
		}})
	})
}

// openAdopted creates the Conn of a handed-over socket; OnOpen.
func (s *Server) openAdopted(gc gnet.Conn, a *adoption) gnet.Action {
	l := s.loopFor(gc.EventLoop())
	c := &Conn{gc: gc, loop: l, id: s.nextID.Add(1), remote: remoteAddr(gc)}
	c.timer.Owner = c
	l.add(c)
	gc.SetContext(c)
	return c.adoptConn(a)
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
	c.lflags |= lfOpened
	c.lastRead, c.lastPing = l.stamp, l.stamp
	l.schedule(c, time.Duration(c.lastRead+int64(s.opts.pingInterval)-l.now))
	s.upgraded.Add(1)
	s.adopted.Add(1)
	if c.pmd != 0 {
		s.pmdConns.Add(1)
	}
	s.register(c)
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
