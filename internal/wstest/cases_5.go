package wstest

import "time"

// fragmentedEcho is 5.3 to 5.8: a text message in two fragments, optionally
// with a ping between them, echoed whole.
func fragmentedEcho(id, desc string, withPing bool, opt frameOpt) abCase {
	return abCase{id, desc, func(s *session) {
		if withPing {
			s.expect(OutcomeOK, pong("ping payload"), msg("fragment1fragment2", false))
		} else {
			s.expect(OutcomeOK, msg("fragment1fragment2", false))
		}
		s.expectClose(true, true, CloseNormal)
		s.sendFrame(OpText, "fragment1", fin(false), opt)
		if withPing {
			s.sendFrame(OpPing, "ping payload", opt)
		}
		s.sendFrame(OpContinuation, "fragment2", opt)
		s.closeAfter(time.Second)
	}}
}

// strayContinuation is 5.9 to 5.14: a continuation frame with nothing to
// continue, then a text message.
func strayContinuation(id, desc string, finFirst bool, opt frameOpt) abCase {
	return failCase(id, desc, CloseProtocolError, func(s *session) {
		s.sendFrame(OpContinuation, "non-continuation payload", fin(finFirst), opt)
		s.sendFrame(OpText, hello, opt)
	})
}

// fragmentsWithPings is 5.19 and 5.20.
func fragmentsWithPings(id, desc string, sync bool) abCase {
	return abCase{id, desc, func(s *session) {
		frag := []string{"fragment1", "fragment2", "fragment3", "fragment4", "fragment5"}
		pings := []string{"pongme 1!", "pongme 2!"}
		s.expect(OutcomeOK, pong(pings[0]), pong(pings[1]), msg("fragment1fragment2fragment3fragment4fragment5", false))
		s.expectClose(true, true, CloseNormal)
		s.sendFrame(OpText, frag[0], fin(false), synced(sync))
		s.sendFrame(OpContinuation, frag[1], fin(false), synced(sync))
		s.sendFrame(OpPing, pings[0], synced(sync))
		s.continueLater(time.Second, func() {
			s.sendFrame(OpContinuation, frag[2], fin(false), synced(sync))
			s.sendFrame(OpContinuation, frag[3], fin(false), synced(sync))
			s.sendFrame(OpPing, pings[1], synced(sync))
			s.sendFrame(OpContinuation, frag[4], synced(sync))
			s.closeAfter(time.Second)
		})
	}}
}

// Section 5: fragmentation.
func cases5() []abCase {
	none := chopsize(0)
	return []abCase{
		failCase("5.1", "Send Ping fragmented into 2 fragments.", CloseProtocolError, func(s *session) {
			s.sendFrame(OpPing, "fragment1", fin(false))
			s.sendFrame(OpContinuation, "fragment2")
		}),
		failCase("5.2", "Send Pong fragmented into 2 fragments.", CloseProtocolError, func(s *session) {
			s.sendFrame(OpPong, "fragment1", fin(false))
			s.sendFrame(OpContinuation, "fragment2")
		}),
		fragmentedEcho("5.3", "Send text Message fragmented into 2 fragments.", false, none),
		fragmentedEcho("5.4", "Send text Message fragmented into 2 fragments, octets are sent in frame-wise chops.", false, synced(true)),
		fragmentedEcho("5.5", "Send text Message fragmented into 2 fragments, octets are sent in octet-wise chops.", false, chopsize(1)),
		fragmentedEcho("5.6", "Send text Message fragmented into 2 fragments, one ping with payload in-between.", true, none),
		fragmentedEcho("5.7", "Send text Message fragmented into 2 fragments, one ping with payload in-between. Octets are sent in frame-wise chops.", true, synced(true)),
		fragmentedEcho("5.8", "Send text Message fragmented into 2 fragments, one ping with payload in-between. Octets are sent in octet-wise chops.", true, chopsize(1)),
		strayContinuation("5.9", "Send unfragmented Text Message after Continuation Frame with FIN = true, where there is nothing to continue, sent in one chop.", true, none),
		strayContinuation("5.10", "Send unfragmented Text Message after Continuation Frame with FIN = true, where there is nothing to continue, sent in per-frame chops.", true, synced(true)),
		strayContinuation("5.11", "Send unfragmented Text Message after Continuation Frame with FIN = true, where there is nothing to continue, sent in octet-wise chops.", true, chopsize(1)),
		strayContinuation("5.12", "Send unfragmented Text Message after Continuation Frame with FIN = false, where there is nothing to continue, sent in one chop.", false, none),
		strayContinuation("5.13", "Send unfragmented Text Message after Continuation Frame with FIN = false, where there is nothing to continue, sent in per-frame chops.", false, synced(true)),
		strayContinuation("5.14", "Send unfragmented Text Message after Continuation Frame with FIN = false, where there is nothing to continue, sent in octet-wise chops.", false, chopsize(1)),
		{"5.15", "Send text Message fragmented into 2 fragments, then Continuation Frame with FIN = false where there is nothing to continue, then unfragmented Text Message, all sent in one chop.", func(s *session) {
			s.expect(OutcomeOK, msg("fragment1fragment2", false))
			s.expect(OutcomeNonStrict)
			s.expectClose(false, false, CloseProtocolError)
			s.sendFrame(OpText, "fragment1", fin(false))
			s.sendFrame(OpContinuation, "fragment2")
			s.sendFrame(OpContinuation, "fragment3", fin(false))
			s.sendFrame(OpText, "fragment4")
			s.killAfter(time.Second)
		}},
		failCase("5.16", "Repeated 2x: Continuation Frame with FIN = false (where there is nothing to continue), then text Message fragmented into 2 fragments.", CloseProtocolError, func(s *session) {
			for range 2 {
				s.sendFrame(OpContinuation, "fragment1", fin(false))
				s.sendFrame(OpText, "fragment2", fin(false))
				s.sendFrame(OpContinuation, "fragment3")
			}
		}),
		failCase("5.17", "Repeated 2x: Continuation Frame with FIN = true (where there is nothing to continue), then text Message fragmented into 2 fragments.", CloseProtocolError, func(s *session) {
			for range 2 {
				s.sendFrame(OpContinuation, "fragment1")
				s.sendFrame(OpText, "fragment2", fin(false))
				s.sendFrame(OpContinuation, "fragment3")
			}
		}),
		failCase("5.18", "Send text Message fragmented into 2 fragments, with both frame opcodes set to text, sent in one chop.", CloseProtocolError, func(s *session) {
			s.sendFrame(OpText, "fragment1", fin(false))
			s.sendFrame(OpText, "fragment2")
		}),
		fragmentsWithPings("5.19", "A fragmented text message is sent in multiple frames. After sending the first 2 frames of the text message, a Ping is sent. Then we wait 1s, then we send 2 more text fragments, another Ping and then the final text fragment. Everything is legal.", false),
		fragmentsWithPings("5.20", "Same as Case 5.19, but send all frames with SYNC = True. Note, this does not change the octets sent in any way, only how the stream is chopped up on the wire.", true),
	}
}
