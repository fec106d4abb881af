package wstest

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// perfWait is a section 9 closeAfter delay, capped at half the case limit.
func (s *session) perfWait(secs float64) time.Duration {
	return min(sec(secs), s.cfg.caseLimit/2)
}

// checkEcho sets the verdict of a section 9 case on the echo it received.
// The suite checks type and length only; this port compares the payload
// too.
func (s *session) checkEcho(p []byte, binary bool, want []byte, wantBinary bool) {
	kind, other := "text", "binary"
	if wantBinary {
		kind, other = "binary", "text"
	}
	switch {
	case binary != wantBinary:
		s.result = fmt.Sprintf("Expected %s message with payload, but got %s.", kind, other)
	case len(p) != len(want):
		s.result = fmt.Sprintf("Expected %s message with payload of length %d, but got %d.", kind, len(want), len(p))
	case !bytes.Equal(p, want):
		i := 0
		for i < len(p) && p[i] == want[i] {
			i++
		}
		s.result = fmt.Sprintf("Echo of %s message differs from what was sent at offset %d.", kind, i)
	default:
		s.behavior = OutcomeOK
		s.result = fmt.Sprintf("Received %s message of length %d.", kind, len(p))
	}
}

// largeMessage is 9.1.*, 9.2.* (one frame), 9.5.* and 9.6.* (one frame
// written in chops): payload_len bytes of a repeated pattern, echoed once.
func largeMessage(id, desc string, binary bool, pattern string, size, chop int, wait float64) abCase {
	return abCase{id, desc, func(s *session) {
		op := OpText
		if binary {
			op = OpBinary
		}
		want := repeatTo([]byte(pattern), size)
		s.expectClose(true, true, CloseNormal)
		s.result = fmt.Sprintf("Did not receive message within %v seconds.", wait)
		s.onMessage = func(p []byte, isBinary bool) {
			s.checkEcho(p, isBinary, want, binary)
			s.sendCloseFrame(CloseNormal, "", false)
		}
		s.sendFrame(op, pattern, payloadLen(size), chopsize(chop))
		s.closeAfter(s.perfWait(wait))
	}}
}

// fragmentedMessage is 9.3.* and 9.4.*: 4 MiB sent with sendMessage in
// fragments of fragSize.
func fragmentedMessage(id, desc string, binary bool, fragSize int) abCase {
	return abCase{id, desc, func(s *session) {
		fill := "*"
		if binary {
			fill = "\xfe"
		}
		payload := strings.Repeat(fill, 4<<20)
		s.expectClose(true, true, CloseNormal)
		s.result = "Did not receive message within 100 seconds."
		s.onMessage = func(p []byte, isBinary bool) {
			s.checkEcho(p, isBinary, []byte(payload), binary)
			s.sendCloseFrame(CloseNormal, "", false)
		}
		s.sendMessage(payload, binary, fragSize)
		s.closeAfter(s.perfWait(100))
	}}
}

// roundTrips is 9.7.* and 9.8.*: count messages of size bytes, each sent
// when the previous echo arrived.
func roundTrips(id, desc string, binary bool, size, count int, wait float64) abCase {
	return abCase{id, desc, func(s *session) {
		op, fill := OpText, "*"
		if binary {
			op, fill = OpBinary, "\xfe"
		}
		want := repeatTo([]byte(fill), size)
		sent := 0
		sendOne := func() {
			s.sendFrame(op, fill, payloadLen(size))
			sent++
		}
		s.expectClose(true, true, CloseNormal)
		s.result = fmt.Sprintf("Case did not finish within %v seconds.", wait)
		s.closeAfter(s.perfWait(wait))
		s.onMessage = func(p []byte, isBinary bool) {
			switch {
			case isBinary != binary || !bytes.Equal(p, want):
				s.behavior = OutcomeFailed
				s.result = fmt.Sprintf("Echo'ed message type or length differs from what I sent (got binary = %t, payload length = %d).", isBinary, len(p))
				s.sendCloseFrame(CloseNormal, "", false)
			case sent < count:
				sendOne()
			default:
				s.behavior = OutcomeOK
				s.result = "Ok, received all echo'ed messages in time."
				s.sendCloseFrame(CloseNormal, "", false)
			}
		}
		sendOne()
	}}
}

// Section 9: limits and performance.
func cases9() []abCase {
	var cs []abCase
	type size struct {
		n    int
		name string
		wait float64
	}
	large := []size{{64 << 10, "64 * 2**10 (64k)", 10}, {256 << 10, "256 * 2**10 (256k)", 10}, {1 << 20, "1 * 2**20 (1M)", 100},
		{4 << 20, "4 * 2**20 (4M)", 100}, {8 << 20, "8 * 2**20 (8M)", 100}, {16 << 20, "16 * 2**20 (16M)", 100}}
	for i, sz := range large {
		cs = append(cs, largeMessage(fmt.Sprintf("9.1.%d", i+1),
			"Send text message message with payload of length "+sz.name+".", false, "BAsd7&jh23", sz.n, 0, sz.wait))
	}
	for i, sz := range large {
		cs = append(cs, largeMessage(fmt.Sprintf("9.2.%d", i+1),
			"Send binary message message with payload of length "+sz.name+".", true, "\x00\xfe\x23\xfa\xf0", sz.n, 0, sz.wait))
	}
	frags := []size{{64, "64", 0}, {256, "256", 0}, {1 << 10, "1k", 0}, {4 << 10, "4k", 0}, {16 << 10, "16k", 0},
		{64 << 10, "64k", 0}, {256 << 10, "256k", 0}, {1 << 20, "1M", 0}, {4 << 20, "4M", 0}}
	for k, kind := range []string{"text", "binary"} {
		for i, f := range frags {
			total := "(4M)"
			if i == len(frags)-1 {
				total = "(8M)" // sic
			}
			cs = append(cs, fragmentedMessage(fmt.Sprintf("9.%d.%d", 3+k, i+1),
				fmt.Sprintf("Send fragmented %s message message with message payload of length 4 * 2**20 %s. Sent out in fragments of %s.", kind, total, f.name),
				kind == "binary", f.n))
		}
	}
	for k, kind := range []string{"text", "binary"} {
		pattern := "BAsd7&jh23"
		if kind == "binary" {
			pattern = "\x00\xfe\x23\xfa\xf0"
		}
		for i, chop := range []int{64, 128, 256, 512, 1024, 2048} {
			cs = append(cs, largeMessage(fmt.Sprintf("9.%d.%d", 5+k, i+1),
				fmt.Sprintf("Send %s message message with payload of length 1 * 2**20 (1M). Sent out data in chops of %d octets.", kind, chop),
				kind == "binary", pattern, 1<<20, chop, 1000))
		}
	}
	for k, kind := range []string{"text", "binary"} {
		for i, t := range []struct {
			n    int
			wait float64
		}{{0, 60}, {16, 60}, {64, 60}, {256, 120}, {1024, 240}, {4096, 480}} {
			cs = append(cs, roundTrips(fmt.Sprintf("9.%d.%d", 7+k, i+1),
				fmt.Sprintf("Send 1000 %s messages of payload size %d to measure implementation/network RTT (round trip time) / latency.", kind, t.n),
				kind == "binary", t.n, 1000, t.wait))
		}
	}
	return cs
}

// Section 10: miscellaneous.
func cases10() []abCase {
	return []abCase{{"10.1.1", "Send text message with payload of length 65536 auto-fragmented with autoFragmentSize = 1300.", func(s *session) {
		payload := strings.Repeat("*", 65536)
		s.autoFragmentSize = 1300
		s.expect(OutcomeOK, msg(payload, false))
		s.expectClose(true, true, CloseNormal)
		s.onLost = func() {
			want := [2]int{len(payload) / s.autoFragmentSize, 0}
			if len(payload)%s.autoFragmentSize > 0 {
				want[1] = 1
			}
			if got := [2]int{s.txFrames[OpContinuation], s.txFrames[OpText]}; got != want {
				s.behavior = OutcomeFailed
				s.result = fmt.Sprintf("Frames transmitted %v does not match what we expected %v.", got, want)
			}
		}
		s.sendMessage(payload, false, 0)
		s.killAfter(10 * time.Second)
	}}}
}
