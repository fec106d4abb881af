package wstest

import (
	"fmt"
	"strings"
	"time"
)

// sec converts the suite's float seconds.
func sec(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// echoCase is the shape of 1.1.* and 1.2.*: send one frame, expect the echo
// and a clean close started by the client.
func echoCase(id, desc string, op byte, payload string, chop int, kill float64) abCase {
	return abCase{id, desc, func(s *session) {
		s.expect(OutcomeOK, msg(payload, op == OpBinary))
		s.expectClose(true, true, CloseNormal)
		s.sendFrame(op, payload, chopsize(chop))
		s.killAfter(sec(kill))
	}}
}

// Section 1: framing.
func cases1() []abCase {
	sizes := []int{0, 125, 126, 127, 128, 65535, 65536, 65536}
	var cs []abCase
	for i, kind := range []string{"text", "binary"} {
		op, fill := OpText, "*"
		if kind == "binary" {
			op, fill = OpBinary, "\xfe"
		}
		for j, n := range sizes {
			id := fmt.Sprintf("1.%d.%d", i+1, j+1)
			desc := fmt.Sprintf("Send %s message message with payload of length %d.", kind, n)
			chop, kill := 0, 1.0
			switch {
			case j == 0:
				desc = fmt.Sprintf("Send %s message with payload 0.", kind)
			case j == 7:
				chop = 997
				desc = fmt.Sprintf("Send %s message message with payload of length %d. Sent out data in chops of 997 octets.", kind, n)
			}
			if n > 128 {
				kill = 10
			}
			cs = append(cs, echoCase(id, desc, op, strings.Repeat(fill, n), chop, kill))
		}
	}
	return cs
}

// pingCase is 2.1 to 2.4 and 2.6: a ping, its pong, a clean close.
func pingCase(id, desc, payload string, chop int, after float64) abCase {
	return abCase{id, desc, func(s *session) {
		s.expect(OutcomeOK, pong(payload))
		s.expectClose(true, true, CloseNormal)
		s.sendFrame(OpPing, payload, chopsize(chop))
		s.closeAfter(sec(after))
	}}
}

// tenPings is 2.10 and 2.11.
func tenPings(id, desc string, chop int) abCase {
	return abCase{id, desc, func(s *session) {
		var want []event
		for i := range 10 {
			p := fmt.Sprintf("payload-%d", i)
			want = append(want, pong(p))
			s.sendFrame(OpPing, p, chopsize(chop))
		}
		s.expect(OutcomeOK, want...)
		s.expectClose(true, true, CloseNormal)
		s.closeAfter(3 * time.Second)
	}}
}

// Section 2: pings and pongs.
func cases2() []abCase {
	return []abCase{
		pingCase("2.1", "Send ping without payload.", "", 0, 1),
		pingCase("2.2", "Send ping with small text payload.", "Hello, world!", 0, 1),
		pingCase("2.3", "Send ping with small binary (non UTF-8) payload.", "\x00\xff\xfe\xfd\xfc\xfb\x00\xff", 0, 1),
		pingCase("2.4", "Send ping with binary payload of 125 octets.", strings.Repeat("\xfe", 125), 0, 1),
		{"2.5", "Send ping with binary payload of 126 octets.", func(s *session) {
			s.expect(OutcomeOK)
			s.expectClose(false, false, CloseProtocolError)
			s.sendFrame(OpPing, strings.Repeat("\xfe", 126))
			s.killAfter(time.Second)
		}},
		pingCase("2.6", "Send ping with binary payload of 125 octets, send in octet-wise chops.", strings.Repeat("\xfe", 125), 1, 2),
		{"2.7", "Send unsolicited pong without payload. Verify nothing is received. Clean close with normal code.", func(s *session) {
			s.expect(OutcomeOK)
			s.expectClose(true, true, CloseNormal)
			s.sendFrame(OpPong, "")
			s.sendCloseFrame(CloseNormal, "", false)
			s.closeAfter(time.Second)
		}},
		{"2.8", "Send unsolicited pong with payload. Verify nothing is received. Clean close with normal code.", func(s *session) {
			s.expect(OutcomeOK)
			s.expectClose(true, true, CloseNormal)
			s.sendFrame(OpPong, "unsolicited pong payload")
			s.sendCloseFrame(CloseNormal, "", false)
			s.closeAfter(time.Second)
		}},
		{"2.9", "Send unsolicited pong with payload. Send ping with payload. Verify pong for ping is received.", func(s *session) {
			s.expect(OutcomeOK, pong("ping payload"))
			s.expectClose(true, true, CloseNormal)
			s.sendFrame(OpPong, "unsolicited pong payload")
			s.sendFrame(OpPing, "ping payload")
			s.closeAfter(time.Second)
		}},
		tenPings("2.10", "Send 10 Pings with payload.", 0),
		tenPings("2.11", "Send 10 Pings with payload. Send out octets in octet-wise chops.", 1),
	}
}

// failCase is the common shape of the fail-fast cases: the frames sent by
// send must make the server fail the connection with code (or no code)
// before the kill timer, echoing at most what nonStrict allows.
func failCase(id, desc string, code int, send func(s *session)) abCase {
	return abCase{id, desc, func(s *session) {
		s.expect(OutcomeOK)
		s.expectClose(false, false, code)
		send(s)
		s.killAfter(time.Second)
	}}
}

// echoThenFail is 3.2 to 3.4 and 4.1.3 to 4.2.5: a valid text message whose
// echo is expected, then a bad frame, then a ping that must not be answered.
func echoThenFail(id, desc string, send func(s *session)) abCase {
	return abCase{id, desc, func(s *session) {
		s.expect(OutcomeOK, msg("Hello, world!", false))
		s.expect(OutcomeNonStrict)
		s.expectClose(false, false, CloseProtocolError)
		send(s)
		s.killAfter(time.Second)
	}}
}

const hello = "Hello, world!"

// Section 3: reserved bits.
func cases3() []abCase {
	return []abCase{
		failCase("3.1", "Send small text message with RSV = 1.", CloseProtocolError, func(s *session) {
			s.sendFrame(OpText, hello, rsv(1))
		}),
		echoThenFail("3.2", "Send small text message, then send again with RSV = 2, then send Ping.", func(s *session) {
			s.sendFrame(OpText, hello)
			s.sendFrame(OpText, hello, rsv(2))
			s.sendFrame(OpPing, "")
		}),
		echoThenFail("3.3", "Send small text message, then send again with RSV = 3, then send Ping. Octets are sent in frame-wise chops. Octets are sent in octet-wise chops.", func(s *session) {
			s.sendFrame(OpText, hello, synced(true))
			s.sendFrame(OpText, hello, rsv(3), synced(true))
			s.sendFrame(OpPing, "", synced(true))
		}),
		echoThenFail("3.4", "Send small text message, then send again with RSV = 4, then send Ping. Octets are sent in octet-wise chops.", func(s *session) {
			s.sendFrame(OpText, hello, chopsize(1))
			s.sendFrame(OpText, hello, rsv(4), chopsize(1))
			s.sendFrame(OpPing, "", chopsize(1))
		}),
		failCase("3.5", "Send small binary message with RSV = 5.", CloseProtocolError, func(s *session) {
			s.sendFrame(OpBinary, "\x00\xff\xfe\xfd\xfc\xfb\x00\xff", rsv(5))
		}),
		// The suite sends a binary frame here despite the description.
		failCase("3.6", "Send Ping with RSV = 6.", CloseProtocolError, func(s *session) {
			s.sendFrame(OpBinary, hello, rsv(6))
		}),
		failCase("3.7", "Send Close with RSV = 7.", CloseProtocolError, func(s *session) {
			s.sendFrame(OpClose, "", rsv(7))
		}),
	}
}

// reservedOpcode is 4.1.1, 4.1.2, 4.2.1 and 4.2.2.
func reservedOpcode(id, desc string, op byte, payload string) abCase {
	return failCase(id, desc, CloseProtocolError, func(s *session) { s.sendFrame(op, payload) })
}

// reservedAfterEcho is 4.1.3 to 4.1.5 and 4.2.3 to 4.2.5.
func reservedAfterEcho(id, desc string, op byte, payload string, chop int) abCase {
	return echoThenFail(id, desc, func(s *session) {
		s.sendFrame(OpText, hello, chopsize(chop))
		s.sendFrame(op, payload, chopsize(chop))
		s.sendFrame(OpPing, "", chopsize(chop))
	})
}

// Section 4: opcodes.
func cases4() []abCase {
	return []abCase{
		reservedOpcode("4.1.1", "Send frame with reserved non-control Opcode = 3.", 3, ""),
		reservedOpcode("4.1.2", "Send frame with reserved non-control Opcode = 4 and non-empty payload.", 4, "reserved opcode payload"),
		reservedAfterEcho("4.1.3", "Send small text message, then send frame with reserved non-control Opcode = 5, then send Ping.", 5, "", 0),
		reservedAfterEcho("4.1.4", "Send small text message, then send frame with reserved non-control Opcode = 6 and non-empty payload, then send Ping.", 6, hello, 0),
		reservedAfterEcho("4.1.5", "Send small text message, then send frame with reserved non-control Opcode = 7 and non-empty payload, then send Ping.", 7, hello, 1),
		reservedOpcode("4.2.1", "Send frame with reserved control Opcode = 11.", 11, ""),
		reservedOpcode("4.2.2", "Send frame with reserved control Opcode = 12 and non-empty payload.", 12, "reserved opcode payload"),
		reservedAfterEcho("4.2.3", "Send small text message, then send frame with reserved control Opcode = 13, then send Ping.", 13, "", 0),
		reservedAfterEcho("4.2.4", "Send small text message, then send frame with reserved control Opcode = 14 and non-empty payload, then send Ping.", 14, hello, 0),
		reservedAfterEcho("4.2.5", "Send small text message, then send frame with reserved control Opcode = 15 and non-empty payload, then send Ping.", 15, hello, 1),
	}
}
