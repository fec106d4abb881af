package wstest

import (
	"encoding/hex"
	"fmt"
	"time"
)

// validEcho is 6.1.* and 6.2.*: valid text, echoed whole, clean close.
func validEcho(id, desc, payload string, send func(s *session)) abCase {
	return abCase{id, desc, func(s *session) {
		s.expect(OutcomeOK, msg(payload, false))
		s.expectClose(true, true, CloseNormal)
		send(s)
		s.closeAfter(time.Second)
	}}
}

// expectUTF8Failure sets what 6.3.*, 6.4.* and the invalid 6.x.y cases
// expect of the close: the server fails the connection (1007 or no code),
// and a close by the client (the server never noticed) fails the case.
func expectUTF8Failure(s *session) {
	s.expectClose(false, false, CloseInvalidPayload)
	s.expClose.wrongEndpointFatal = true
}

// The payloads of 6.2, 6.3 and 6.4.
const (
	utf8Hello = "Hello-\u00b5@\u00df\u00f6\u00e4\u00fc\u00e0\u00e1-UTF-8!!"
	kosme     = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" // κόσμε
	// 6.3: invalid exactly on byte 12 (0xa0, a surrogate).
	invalid63 = kosme + "\xed\xa0\x80" + "\x65\x64\x69\x74\x65\x64"
	// 6.4: invalid exactly on byte 12 (0x90, U+110000 out of range).
	part641   = kosme
	part642   = "\xf4\x90\x80\x80"
	part643   = "\x65\x64\x69\x74\x65\x64"
	invalid64 = part641 + part642 + part643
)

// failFast is 6.4.*: three parts of an invalid text message with a second
// between them. The server must accept part one and fail the connection
// within a second of part two, so that the client's timer for part three
// finds the connection no longer open. Events ("timeout", "A") and
// ("timeout", "B") mark the timers that fired with the connection open.
func failFast(id, desc string, stream bool, parts [3]string) abCase {
	return abCase{id, desc, func(s *session) {
		s.expect(OutcomeOK, event{kind: "timeout", payload: "A"})
		s.expect(OutcomeNonStrict, event{kind: "timeout", payload: "A"}, event{kind: "timeout", payload: "B"})
		expectUTF8Failure(s)
		if stream {
			s.beginMessageFrame(len(invalid64))
			s.sendMessageFrameData(parts[0])
		} else {
			s.sendFrame(OpText, parts[0], fin(false))
		}
		s.continueLater(time.Second, func() {
			if !s.isOpen() {
				return
			}
			s.record(event{kind: "timeout", payload: "A"})
			if stream {
				s.sendMessageFrameData(parts[1])
			} else {
				s.sendFrame(OpContinuation, parts[1], fin(false))
			}
			s.continueLater(time.Second, func() {
				if !s.isOpen() {
					return
				}
				s.record(event{kind: "timeout", payload: "B"})
				if stream {
					s.sendMessageFrameData(parts[2])
					s.endMessage()
				} else {
					s.sendFrame(OpContinuation, parts[2])
				}
				s.killAfter(time.Second)
			})
		})
	}}
}

// Section 6.1 to 6.4: UTF-8 handling.
func cases6() []abCase {
	const msgDesc = "Send a valid UTF-8 text message in fragments of 1 octet, resulting in frames ending on positions which are not code point ends. MESSAGE: %s (%x)"
	partsA := [3]string{part641, part642, part643}
	partsB := [3]string{invalid64[:12], invalid64[12:13], invalid64[13:]}
	return []abCase{
		validEcho("6.1.1", "Send text message of length 0.", "", func(s *session) {
			s.sendFrame(OpText, "")
		}),
		validEcho("6.1.2", "Send fragmented text message, 3 fragments each of length 0.", "", func(s *session) {
			s.sendFrame(OpText, "", fin(false))
			s.sendFrame(OpContinuation, "", fin(false))
			s.sendFrame(OpContinuation, "")
		}),
		validEcho("6.1.3", "Send fragmented text message, 3 fragments, first and last of length 0, middle non-empty.", "middle frame payload", func(s *session) {
			s.sendFrame(OpText, "", fin(false))
			s.sendFrame(OpContinuation, "middle frame payload", fin(false))
			s.sendFrame(OpContinuation, "")
		}),
		validEcho("6.2.1", fmt.Sprintf("Send a valid UTF-8 text message in one fragment. MESSAGE: %s (%x)", utf8Hello, utf8Hello), utf8Hello, func(s *session) {
			s.sendMessage(utf8Hello, false, 0)
		}),
		validEcho("6.2.2", fmt.Sprintf("Send a valid UTF-8 text message in two fragments, fragmented on UTF-8 code point boundary. MESSAGE FRAGMENT 1: %s (%x) MESSAGE FRAGMENT 2: %s (%x)",
			utf8Hello[:15], utf8Hello[:15], utf8Hello[15:], utf8Hello[15:]), utf8Hello, func(s *session) {
			s.sendFrame(OpText, utf8Hello[:15], fin(false))
			s.sendFrame(OpContinuation, utf8Hello[15:])
		}),
		validEcho("6.2.3", fmt.Sprintf(msgDesc, utf8Hello, utf8Hello), utf8Hello, func(s *session) {
			s.sendMessage(utf8Hello, false, 1)
		}),
		validEcho("6.2.4", fmt.Sprintf(msgDesc, kosme, kosme), kosme, func(s *session) {
			s.sendMessage(kosme, false, 1)
		}),
		{"6.3.1", "Send invalid UTF-8 text message unfragmented. MESSAGE: " + hex.EncodeToString([]byte(invalid63)), func(s *session) {
			s.expect(OutcomeOK)
			expectUTF8Failure(s)
			s.sendMessage(invalid63, false, 0)
			s.killAfter(time.Second)
		}},
		{"6.3.2", "Send invalid UTF-8 text message in fragments of 1 octet, resulting in frames ending on positions which are not code point ends. MESSAGE: " + hex.EncodeToString([]byte(invalid63)), func(s *session) {
			s.expect(OutcomeOK)
			expectUTF8Failure(s)
			s.sendMessage(invalid63, false, 1)
			s.killAfter(time.Second)
		}},
		failFast("6.4.1", fmt.Sprintf("Send invalid UTF-8 text message in 3 fragments (frames). First frame payload is valid, then wait, then 2nd frame which contains the payload making the sequence invalid, then wait, then 3rd frame with rest. Note that PART1 and PART3 are valid UTF-8 in themselves, PART2 is a 0x110000 encoded as in the UTF-8 integer encoding scheme, but the codepoint is invalid (out of range). MESSAGE PARTS: PART1 = %x PART2 = %x PART3 = %x", partsA[0], partsA[1], partsA[2]), false, partsA),
		failFast("6.4.2", fmt.Sprintf("Same as Case 6.4.1, but in 2nd frame, we send only up to and including the octet making the complete payload invalid. MESSAGE PARTS: PART1 = %x PART2 = %x PART3 = %x", partsB[0], partsB[1], partsB[2]), false, partsB),
		failFast("6.4.3", fmt.Sprintf("Same as Case 6.4.1, but we send message not in 3 frames, but in 3 chops of the same message frame. MESSAGE PARTS: PART1 = %x PART2 = %x PART3 = %x", partsA[0], partsA[1], partsA[2]), true, partsA),
		failFast("6.4.4", fmt.Sprintf("Same as Case 6.4.2, but we send message not in 3 frames, but in 3 chops of the same message frame. MESSAGE PARTS: PART1 = %x PART2 = %x PART3 = %x", partsB[0], partsB[1], partsB[2]), true, partsB),
	}
}
