package codec

import (
	"testing"

	"github.com/gobwas/ws"
)

// The hot paths must not allocate: these tests fail when one starts to.

func assertNoAllocs(t *testing.T, name string, f func()) {
	t.Helper()
	if n := testing.AllocsPerRun(100, f); n != 0 {
		t.Errorf("%s: %v allocations per run, want 0", name, n)
	}
}

func TestNoAllocs(t *testing.T) {
	block := []byte(reqChromium)
	var r Request
	var sink error
	assertNoAllocs(t, "FindHeaderEnd", func() { FindHeaderEnd(block, 0) })
	assertNoAllocs(t, "ParseRequest", func() { sink = ParseRequest(block, &r) })
	if sink != nil {
		t.Fatal(sink)
	}
	bad := []byte(build(get, with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")...))
	assertNoAllocs(t, "ParseRequest failing", func() { sink = ParseRequest(bad, &r) })
	assertNoAllocs(t, "VisitProtocols", func() {
		r.VisitProtocols(func(p []byte) bool { return string(p) != "chat" })
	})

	out := make([]byte, 0, 512)
	extra := []HeaderField{{"X-Server", "wsloop"}}
	assertNoAllocs(t, "AppendSwitchingProtocols", func() {
		out = AppendSwitchingProtocols(out[:0], r.Key, "chat", []byte("permessage-deflate"), extra)
	})
	assertNoAllocs(t, "AppendErrorResponse", func() { out = AppendErrorResponse(out[:0], 426, "unsupported", extra) })
	assertNoAllocs(t, "AppendResponse", func() { out = AppendResponse(out[:0], 200, extra, []byte("ok")) })

	frame := []byte{0x81, 0xFE, 0x01, 0x00, 1, 2, 3, 4}
	h := ws.Header{Fin: true, OpCode: ws.OpText, Masked: true, Mask: [4]byte{1, 2, 3, 4}, Length: 1 << 20}
	hdr := make([]byte, 0, MaxHeaderSize)
	assertNoAllocs(t, "ParseHeader", func() { h, _, sink = ParseHeader(frame) })
	assertNoAllocs(t, "CheckHeader", func() { sink = CheckHeader(h, 0) })
	assertNoAllocs(t, "AppendHeader", func() { hdr = AppendHeader(hdr[:0], h) })
	payload := make([]byte, 64)
	assertNoAllocs(t, "AppendFrame", func() { out = AppendFrame(out[:0], ws.OpBinary, true, payload) })
	assertNoAllocs(t, "AppendCloseFrame", func() { out = AppendCloseFrame(out[:0], 1001, "going away") })
	closeBody := []byte{0x03, 0xE8, 'o', 'k'}
	assertNoAllocs(t, "ParseClosePayload", func() { _, _, sink = ParseClosePayload(closeBody) })

	var v UTF8Validator
	text := []byte("Hello, κόσμε! Ünïcödé text with some ASCII padding to take the fast path...\xe2\x82")
	assertNoAllocs(t, "UTF8Validator.Write", func() { v.Reset(); v.Write(text); v.Write([]byte{0xac}) })
}
