package wstest

import (
	"fmt"
	"strings"
	"time"
)

// wrongCodeFails is the onConnectionLost override of most 7.* cases: a wrong
// close code fails the case itself, not only its close verdict.
func wrongCodeFails(s *session) {
	s.onLost = func() {
		if s.behaviorClose == OutcomeWrongCode {
			s.behavior = OutcomeFailed
			s.result = s.resultClose
		}
	}
}

// informational marks a case whose events the spec leaves open (7.1.6,
// 7.13.*): Autobahn reports it as INFORMATIONAL whatever happened.
func informational(s *session, note func() string) {
	s.onLost = func() {
		s.result = note()
		s.behavior, s.behaviorClose = OutcomeInformational, OutcomeInformational
	}
}

// closeCase is the shape of 7.1.2 to 7.1.5, 7.3.* and 7.5.1: the client
// closes (send does it, with whatever else), the server must finish the
// closing handshake with one of codes, or (requireClean false) drop TCP.
func closeCase(id, desc string, requireClean bool, codes []int, send func(s *session)) abCase {
	return abCase{id, desc, func(s *session) {
		s.suppressClose = true
		wrongCodeFails(s)
		s.expect(OutcomeOK)
		s.expectClose(true, requireClean, codes...)
		send(s)
		s.killAfter(time.Second)
	}}
}

var (
	normal        = []int{CloseNormal}
	protocolError = []int{CloseProtocolError}
)

// Section 7: close handling.
func cases7() []abCase {
	cs := []abCase{
		{"7.1.1", "Send a message followed by a close frame", func(s *session) {
			wrongCodeFails(s)
			s.expect(OutcomeOK, msg("Hello World!", false))
			s.expectClose(true, true, CloseNormal)
			s.sendFrame(OpText, "Hello World!")
			s.killAfter(time.Second)
		}},
		closeCase("7.1.2", "Send two close frames", true, normal, func(s *session) {
			s.sendCloseFrame(CloseNormal, "", false)
			s.sendFrame(OpClose, "")
		}),
		closeCase("7.1.3", "Send a ping after close message", true, normal, func(s *session) {
			s.sendCloseFrame(CloseNormal, "", false)
			s.sendFrame(OpPing, "")
		}),
		closeCase("7.1.4", "Send text message after sending a close frame.", true, normal, func(s *session) {
			s.sendCloseFrame(CloseNormal, "", false)
			s.sendFrame(OpText, "Hello World!")
		}),
		closeCase("7.1.5", "Send message fragment1 followed by close then fragment", true, normal, func(s *session) {
			s.sendFrame(OpText, "fragment1", fin(false))
			s.sendCloseFrame(CloseNormal, "", false)
			s.sendFrame(OpContinuation, "fragment2")
		}),
		{"7.1.6", "Send 256K message followed by close then a ping", func(s *session) {
			s.suppressClose = true
			informational(s, func() string {
				switch s.behavior {
				case OutcomeOK:
					return "Text message was processed before close."
				case OutcomeNonStrict:
					return "Close was processed before text message could be returned."
				}
				return fmt.Sprintf("Neither expected outcome; events %v.", s.received)
			})
			s.expect(OutcomeOK, msg("Hello World!", false))
			s.expect(OutcomeNonStrict)
			s.expectClose(true, true, CloseNormal)
			s.sendFrame(OpText, "BAsd7&jh23", payloadLen(256<<10))
			s.sendFrame(OpText, "Hello World!")
			s.sendCloseFrame(CloseNormal, "", false)
			s.sendFrame(OpPing, "")
			s.killAfter(time.Second)
		}},
		closeCase("7.3.1", "Send a close frame with payload length 0 (no close code, no close reason)", true, normal, func(s *session) {
			s.sendCloseFrame(noCode, "", false)
		}),
		closeCase("7.3.2", "Send a close frame with payload length 1", false, protocolError, func(s *session) {
			s.sendCloseFrame(noCode, "a", false)
		}),
		closeCase("7.3.3", "Send a close frame with payload length 2 (regular close with a code)", true, normal, func(s *session) {
			s.sendCloseFrame(CloseNormal, "", false)
		}),
		closeCase("7.3.4", "Send a close frame with close code and close reason", true, normal, func(s *session) {
			s.sendCloseFrame(CloseNormal, "Hello World!", false)
		}),
		closeCase("7.3.5", "Send a close frame with close code and close reason of maximum length (123)", true, normal, func(s *session) {
			s.sendCloseFrame(CloseNormal, strings.Repeat("*", 123), false)
		}),
		closeCase("7.3.6", "Send a close frame with close code and close reason which is too long (124) - total frame payload 126 octets", false, protocolError, func(s *session) {
			s.sendCloseFrame(CloseNormal, strings.Repeat("*", 124), false)
		}),
		closeCase("7.5.1", "Send a close frame with invalid UTF8 payload", false, []int{CloseProtocolError, CloseInvalidPayload}, func(s *session) {
			s.sendCloseFrame(CloseNormal, invalid63, false)
		}),
	}
	for i, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cs = append(cs, abCase{fmt.Sprintf("7.7.%d", i+1), fmt.Sprintf("Send close with valid close code %d", code), func(s *session) {
			wrongCodeFails(s)
			s.expect(OutcomeOK)
			s.expectClose(true, true, CloseNormal, code)
			s.sendCloseFrame(code, "", false)
			s.killAfter(time.Second)
		}})
	}
	for i, code := range []int{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		cs = append(cs, abCase{fmt.Sprintf("7.9.%d", i+1), fmt.Sprintf("Send close with invalid close code %d", code), func(s *session) {
			wrongCodeFails(s)
			s.expect(OutcomeOK)
			s.expectClose(true, false, CloseProtocolError)
			s.sendCloseFrame(code, "", false)
			s.killAfter(time.Second)
		}})
	}
	for i, c := range []struct {
		code int
		desc string
	}{{5000, "Send close with close code 5000"}, {65535, "Send close with close code 65536"}} {
		cs = append(cs, abCase{fmt.Sprintf("7.13.%d", i+1), c.desc, func(s *session) {
			s.suppressClose = true
			informational(s, func() string {
				return fmt.Sprintf("Actual events are undefined by the spec. (Here: %s / close %s: %s)", s.behavior, s.behaviorClose, s.resultClose)
			})
			s.expect(OutcomeOK)
			s.expectClose(true, false, CloseNormal, c.code, CloseProtocolError)
			s.sendCloseFrame(c.code, "", false)
			s.killAfter(time.Second)
		}})
	}
	return cs
}
