package wstest

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"
)

// session is one Autobahn case on one connection: a port of the parts of
// autobahn's WebSocketClientProtocol and the test suite's FuzzingProtocol
// that the cases rely on. All state is owned by the goroutine running run;
// a reader goroutine feeds it frames and timers feed it callbacks.
//
// Client behaviour kept from Autobahn (its client defaults): failByDrop (a
// protocol violation by the server makes the client drop TCP), a close
// reply with code 1000, closeHandshakeTimeout and serverConnectionDropTimeout
// of one second, pings answered while open and not recorded, every server
// frame validated (RSV, mask, opcodes, fragmentation, UTF-8, close codes).
type session struct {
	cfg *runConfig
	c   *Conn

	state                                         protoState
	closedByMe, failedByMe, droppedByMe, wasClean bool
	remoteCode                                    int // noCode when the server sent none
	remoteReason                                  string
	notClean                                      string // why the close was not clean
	violation                                     string // server protocol violation seen by the client
	end                                           ReadOutcome
	killFired                                     bool

	received      []event
	expected      []expectation // in the order the case lists them
	expClose      closeExpect
	suppressClose bool
	behavior      Outcome
	behaviorClose Outcome
	result        string
	resultClose   string

	inMessage   bool
	msgBinary   bool
	msgDeflated bool
	msg         []byte
	utf8        Utf8Validator

	pmd *deflateState // permessage-deflate, when the case offered it and the server accepted

	autoFragmentSize int
	txFrames         map[byte]int
	streamMask       [4]byte
	streamPos        int
	closeHSArmed     bool

	onMessage func(payload []byte, binary bool) // case override of onMessage
	onLost    func()                            // case override of onConnectionLost, after judging

	w      *writer
	in     chan readItem
	calls  chan func()
	done   chan struct{}
	timers []*time.Timer
}

type protoState int

const (
	stateOpen protoState = iota
	stateClosing
	stateClosed
)

// noCode stands for Python's None where a close code is optional.
const noCode = -1

// Autobahn's client timeouts (closeHandshakeTimeout, serverConnectionDropTimeout).
const (
	closeHandshakeTimeout = time.Second
	serverDropTimeout     = time.Second
)

type event struct {
	kind    string // "message", "pong" or "timeout"
	payload string
	binary  bool
}

func (e event) String() string {
	p := e.payload
	if len(p) > 40 {
		p = p[:40] + "..."
	}
	if e.kind == "message" {
		return fmt.Sprintf("(message %q len=%d binary=%t)", p, len(e.payload), e.binary)
	}
	return fmt.Sprintf("(%s %q)", e.kind, p)
}

type expectation struct {
	name   Outcome
	events []event
}

type closeExpect struct {
	closedByMe         bool
	codes              []int
	requireClean       bool
	wrongEndpointFatal bool // closedByWrongEndpointIsFatal
}

type readItem struct {
	f   ServerFrame
	err error
}

func msg(payload string, binary bool) event {
	return event{kind: "message", payload: payload, binary: binary}
}
func pong(payload string) event { return event{kind: "pong", payload: payload} }

// expect adds an expected outcome, like self.expected[name] = events.
func (s *session) expect(name Outcome, events ...event) {
	s.expected = append(s.expected, expectation{name: name, events: events})
}

// expectClose sets self.expectedClose.
func (s *session) expectClose(closedByMe bool, requireClean bool, codes ...int) {
	s.expClose = closeExpect{closedByMe: closedByMe, codes: codes, requireClean: requireClean}
}

func (s *session) record(e event) { s.received = append(s.received, e) }

func (s *session) isOpen() bool { return s.state == stateOpen }

// after runs fn on the session goroutine after d.
func (s *session) after(d time.Duration, fn func()) {
	t := time.AfterFunc(d, func() {
		select {
		case s.calls <- fn:
		case <-s.done:
		}
	})
	s.timers = append(s.timers, t)
}

// killAfter, closeAfter and continueLater are FuzzingProtocol's timers.
func (s *session) killAfter(d time.Duration) {
	if s.cfg.killTimeout > 0 {
		d = s.cfg.killTimeout
	}
	s.after(d, func() {
		if s.state != stateClosed {
			s.killFired = true
			s.failConnection(fmt.Sprintf("client kill timer fired after %v", d))
		}
	})
}

func (s *session) closeAfter(d time.Duration) {
	s.after(d, func() {
		if s.state != stateClosed {
			s.sendCloseFrame(noCode, "", false)
		}
	})
}

func (s *session) continueLater(d time.Duration, fn func()) {
	s.after(d, func() {
		if s.state != stateClosed {
			fn()
		}
	})
}

// finishWhenDone is case.py's: close once the events match every expected
// outcome (so never when a case lists two different outcomes).
func (s *session) finishWhenDone() {
	for _, e := range s.expected {
		if !eventsEqual(s.received, e.events) {
			return
		}
	}
	if s.expClose.closedByMe && !s.suppressClose {
		s.sendCloseFrame(s.expClose.codes[0], "", false)
	}
}

func eventsEqual(a, b []event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// run executes the case on s.c and returns when the TCP connection is gone.
func (s *session) run(open func(*session)) {
	s.w = newWriter(s.c.nc, s.cfg.chopDelay)
	go s.w.run()
	go s.readLoop()
	open(s)
	limit := time.NewTimer(s.cfg.caseLimit)
	defer limit.Stop()
	for s.state != stateClosed {
		select {
		case it := <-s.in:
			s.handleRead(it)
		case fn := <-s.calls:
			fn()
		case <-limit.C:
			s.failConnection(fmt.Sprintf("harness limit: case still running after %v", s.cfg.caseLimit))
		}
	}
	close(s.done)
	s.w.stop()
	s.c.nc.Close()
	for _, t := range s.timers {
		t.Stop()
	}
}

func (s *session) readLoop() {
	for {
		f, err := s.c.readFrame()
		select {
		case s.in <- readItem{f, err}:
		case <-s.done:
			return
		}
		if err != nil {
			return
		}
	}
}

func (s *session) handleRead(it readItem) {
	if s.state == stateClosed {
		return
	}
	if it.err != nil {
		if Classify(it.err) == ReadFailed {
			s.protocolViolation(it.err.Error())
			return
		}
		s.end = Classify(it.err)
		s.state = stateClosed
		if !s.wasClean && s.notClean == "" {
			s.notClean = "peer dropped the TCP connection without previous WebSocket closing handshake"
		}
		return
	}
	f := it.f
	if reason := s.checkFrame(f); reason != "" {
		s.protocolViolation(reason)
		return
	}
	switch f.Op {
	case OpClose:
		s.onCloseFrame(f.Payload)
	case OpPing:
		if s.state == stateOpen {
			s.sendFrame(OpPong, string(f.Payload))
		}
	case OpPong:
		s.record(pong(string(f.Payload)))
		s.finishWhenDone()
	default:
		s.onData(f)
	}
}

// checkFrame returns why f breaks the protocol, as autobahn's processData
// checks a server frame, or "".
func (s *session) checkFrame(f ServerFrame) string {
	switch {
	case s.pmd != nil && f.Rsv == 4 && (f.IsControl() || f.Op == OpContinuation):
		return "RSV1 set on a control frame or a continuation frame"
	case s.pmd != nil && f.Rsv == 4:
	case f.Rsv != 0:
		return fmt.Sprintf("RSV = %d and no extension negotiated", f.Rsv)
	case f.Masked:
		return "masked server-to-client frame"
	case f.IsControl() && !f.Fin:
		return "fragmented control frame"
	case f.IsControl() && len(f.Payload) > 125:
		return "control frame with payload length > 125 octets"
	case f.IsControl() && f.Op != OpClose && f.Op != OpPing && f.Op != OpPong:
		return fmt.Sprintf("control frame using reserved opcode %d", f.Op)
	case f.Op == OpClose && len(f.Payload) == 1:
		return "received close control frame with payload len 1"
	case f.IsControl():
		return ""
	case f.Op != OpContinuation && f.Op != OpText && f.Op != OpBinary:
		return fmt.Sprintf("data frame using reserved opcode %d", f.Op)
	case !s.inMessage && f.Op == OpContinuation:
		return "received continuation data frame outside fragmented message"
	case s.inMessage && f.Op != OpContinuation:
		return "received non-continuation data frame while inside fragmented message"
	}
	return ""
}

func (s *session) onData(f ServerFrame) {
	if !s.inMessage {
		s.inMessage, s.msgBinary, s.msg = true, f.Op == OpBinary, nil
		s.msgDeflated = f.Rsv == 4
		s.utf8.Reset()
	}
	if !s.msgBinary && !s.msgDeflated && !s.utf8.Write(f.Payload) {
		s.invalidPayload("encountered invalid UTF-8 while processing text message")
		return
	}
	s.msg = append(s.msg, f.Payload...)
	if !f.Fin {
		return
	}
	if s.msgDeflated {
		p, err := s.pmd.decompress(s.msg)
		if err != nil {
			s.invalidPayload("compressed message does not inflate: " + err.Error())
			return
		}
		s.msg = p
		if !s.msgBinary && !s.utf8.Write(p) {
			s.invalidPayload("encountered invalid UTF-8 while processing text message")
			return
		}
	}
	if !s.msgBinary && !s.utf8.Complete() {
		s.invalidPayload("UTF-8 text message payload ended within Unicode code point")
		return
	}
	payload := s.msg
	s.inMessage, s.msg = false, nil
	if s.onMessage != nil {
		s.onMessage(payload, s.msgBinary)
		return
	}
	s.record(msg(string(payload), s.msgBinary))
	s.finishWhenDone()
}

// onCloseFrame is autobahn's WebSocketProtocol.onCloseFrame for a client.
func (s *session) onCloseFrame(p []byte) {
	code, reason := noCode, []byte(nil)
	if len(p) >= 2 {
		code, reason = int(binary.BigEndian.Uint16(p)), p[2:]
	}
	if code != noCode && !ValidCloseCode(code) {
		s.protocolViolation(fmt.Sprintf("invalid close code %d", code))
		return
	}
	if len(reason) > 0 && !utf8.Valid(reason) {
		s.invalidPayload("invalid close reason (non-UTF8 payload)")
		return
	}
	s.remoteCode, s.remoteReason = code, string(reason)
	switch s.state {
	case stateClosing:
		s.closeHSArmed = false
		s.wasClean = true
		s.after(serverDropTimeout, func() {
			if s.state != stateClosed {
				s.wasClean = false
				s.notClean = "server did not drop TCP connection (in time)"
				s.drop()
			}
		})
	case stateOpen:
		s.wasClean = true
		s.sendCloseFrame(CloseNormal, "", true)
	}
}

// sendCloseFrame sends a close frame and moves to closing, once.
func (s *session) sendCloseFrame(code int, reason string, isReply bool) {
	if s.state != stateOpen {
		return
	}
	var p []byte
	if code != noCode {
		p = binary.BigEndian.AppendUint16(p, uint16(code))
	}
	s.sendFrame(OpClose, string(append(p, reason...)))
	s.state = stateClosing
	s.closedByMe = !isReply
	if s.closedByMe {
		s.closeHSArmed = true
		s.after(closeHandshakeTimeout, func() {
			if s.closeHSArmed && s.state != stateClosed {
				s.wasClean = false
				s.notClean = "peer did not respond (in time) in closing handshake"
				s.drop()
			}
		})
	}
}

func (s *session) failConnection(reason string) {
	if s.state == stateClosed {
		return
	}
	s.failedByMe = true
	s.wasClean = false
	s.notClean = reason
	s.drop()
}

func (s *session) protocolViolation(reason string) {
	s.violation = "server protocol violation: " + reason
	s.failConnection(s.violation)
}

func (s *session) invalidPayload(reason string) {
	s.violation = "server sent invalid payload: " + reason
	s.failConnection(s.violation)
}

func (s *session) drop() {
	if s.state == stateClosed {
		return
	}
	s.droppedByMe = true
	s.state = stateClosed
	s.c.nc.Close()
}

// judge is case.py's onConnectionLost.
func (s *session) judge() {
	for _, e := range s.expected {
		if eventsEqual(s.received, e.events) {
			s.behavior = e.name
			s.result = "Actual events match at least one expected."
			break
		}
	}
	ec := s.expClose
	switch {
	case ec.closedByMe != s.closedByMe:
		s.behaviorClose, s.resultClose = OutcomeFailed, "The connection was failed by the wrong endpoint"
	case ec.requireClean && !s.wasClean:
		s.behaviorClose, s.resultClose = OutcomeUnclean, "The spec requires the connection to be failed cleanly here"
	case s.remoteCode != noCode && !containsInt(ec.codes, s.remoteCode):
		s.behaviorClose, s.resultClose = OutcomeWrongCode, fmt.Sprintf("The close code should have been %s or empty", joinInts(ec.codes))
	case s.droppedByMe:
		s.behaviorClose, s.resultClose = OutcomeFailedByClient, "It is preferred that the server close the TCP connection"
	default:
		s.behaviorClose, s.resultClose = OutcomeOK, "Connection was properly closed"
	}
	if ec.wrongEndpointFatal && ec.closedByMe != s.closedByMe {
		s.behavior = OutcomeFailed
	}
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func joinInts(xs []int) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += ","
		}
		s += fmt.Sprint(x)
	}
	return s
}
