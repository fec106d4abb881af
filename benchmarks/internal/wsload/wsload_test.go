package wsload

import (
	"bufio"
	"io"
	"math"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// frame builds a server frame: masked when mask is non-nil.
func frame(op ws.OpCode, fin bool, p []byte, mask []byte) []byte {
	h := ws.Header{Fin: fin, OpCode: op, Length: int64(len(p))}
	var b strings.Builder
	if mask != nil {
		h.Masked = true
		copy(h.Mask[:], mask)
	}
	_ = ws.WriteHeader(&b, h)
	q := append([]byte(nil), p...)
	if mask != nil {
		ws.Cipher(q, h.Mask, 0)
	}
	return append([]byte(b.String()), q...)
}

func TestPayloadDiffers(t *testing.T) {
	p := NewPayload(64, 1)
	a, b, c := make([]byte, 64), make([]byte, 64), make([]byte, 64)
	p.Fill(a, 1, 1)
	p.Fill(b, 1, 2)
	p.Fill(c, 2, 1)
	if string(a) == string(b) || string(a) == string(c) {
		t.Fatal("payloads repeat")
	}
	if string(a[16:]) == string(b[16:]) {
		t.Fatal("random parts repeat")
	}
	for _, x := range a {
		if x < 0x21 || x > 0x7e {
			t.Fatalf("byte %#x is not printable ASCII", x)
		}
	}
	for off := 0; off < 64; off++ {
		if !p.Match(1, 1, off, a[off:]) || p.Match(1, 2, off, a[off:]) && off < 60 {
			t.Fatalf("Match at %d", off)
		}
	}
	small := NewPayload(3, 1)
	s := make([]byte, 3)
	small.Fill(s, 0, 0x1ff)
	if string(s) != "1ff" || !small.Match(0, 0x1ff, 1, s[1:]) {
		t.Fatalf("3-byte payload %q", s)
	}
}

// TestVerifierSplits feeds the same stream cut at every byte: unmasked,
// masked (as the floor echoes), fragmented with a ping inside.
func TestVerifierSplits(t *testing.T) {
	for _, size := range []int{0, 5, 64, 200, 70000} {
		p := NewPayload(size, 7)
		var stream []byte
		msg := func(seq uint64) []byte { b := make([]byte, size); p.Fill(b, 3, seq); return b }
		stream = append(stream, frame(ws.OpBinary, true, msg(0), nil)...)
		stream = append(stream, frame(ws.OpBinary, true, msg(1), []byte{1, 2, 3, 4})...)
		m := msg(2)
		h := size / 2
		stream = append(stream, frame(ws.OpBinary, false, m[:h], nil)...)
		stream = append(stream, frame(ws.OpPing, true, []byte("hi"), nil)...)
		stream = append(stream, frame(ws.OpContinuation, true, m[h:], []byte{9, 9, 9, 9})...)
		step := 1
		if len(stream) > 2000 {
			step = 997
		}
		for cut := 0; cut <= len(stream); cut += step {
			v := Verifier{P: p, Op: ws.OpBinary, ID: 3}
			s := append([]byte(nil), stream...)
			n1, err := v.Feed(s[:cut], 0, 3)
			if err != nil {
				t.Fatalf("size %d cut %d: %v", size, cut, err)
			}
			n2, err := v.Feed(s[cut:], uint64(n1), 3-n1)
			if err != nil || n1+n2 != 3 {
				t.Fatalf("size %d cut %d: %d+%d messages, %v", size, cut, n1, n2, err)
			}
		}
	}
}

func TestVerifierErrors(t *testing.T) {
	p := NewPayload(32, 7)
	good := make([]byte, 32)
	p.Fill(good, 0, 0)
	bad := append([]byte(nil), good...)
	bad[20] ^= 1
	cases := []struct {
		name, want string
		data       []byte
		limit      int
	}{
		{"flipped byte", "differs", frame(ws.OpBinary, true, bad, nil), 1},
		{"flipped masked", "differs", frame(ws.OpBinary, true, bad, []byte{5, 6, 7, 8}), 1},
		{"wrong opcode", "opcode", frame(ws.OpText, true, good, nil), 1},
		{"short", "has 31 bytes", frame(ws.OpBinary, true, good[:31], nil), 1},
		{"long", "longer", frame(ws.OpBinary, true, append(good, 'x'), nil), 1},
		{"unsolicited", "unsolicited", frame(ws.OpBinary, true, good, nil), 0},
		{"close", "close frame (code 1001)", frame(ws.OpClose, true, []byte{0x03, 0xe9}, nil), 1},
		{"rsv", "reserved bits", append([]byte{0xc2, 0}, good...), 1},
		{"stray continuation", "continuation", frame(ws.OpContinuation, true, good, nil), 1},
	}
	for _, c := range cases {
		v := Verifier{P: p, Op: ws.OpBinary}
		_, err := v.Feed(c.data, 0, c.limit)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want %q", c.name, err, c.want)
		}
	}
}

func TestCheckResponse(t *testing.T) {
	key := NewKey()
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + Accept(key) + "\r\n\r\n"
	if n, err := CheckResponse([]byte(ok+"xx"), key); err != nil || n != len(ok) {
		t.Fatalf("good response: %d, %v", n, err)
	}
	if _, err := CheckResponse([]byte(ok[:30]), key); err != ErrIncomplete {
		t.Fatalf("partial: %v", err)
	}
	for _, bad := range []string{
		strings.Replace(ok, "101", "400", 1),
		strings.Replace(ok, Accept(key), Accept(NewKey()), 1),
		strings.Replace(ok, "Upgrade: websocket\r\n", "", 1),
		strings.Replace(ok, "Connection: Upgrade", "Connection: keep-alive", 1),
		strings.Replace(ok, "\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n", 1),
	} {
		if _, err := CheckResponse([]byte(bad), key); err == nil || err == ErrIncomplete {
			t.Errorf("accepted %q", bad)
		}
	}
}

// server runs an in-process WebSocket server on 127.0.0.1 whose
// connections are upgraded by gobwas/ws and then given to serve.
func server(t *testing.T, serve func(c net.Conn, r *bufio.Reader)) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if _, err := ws.Upgrade(c); err != nil {
					return
				}
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return netip.MustParseAddrPort(l.Addr().String())
}

// echoFrames echoes every frame, unmasked, through edit (which may
// change the payload or the header, by index of the data frame).
func echoFrames(edit func(i int, h *ws.Header, p []byte) []byte) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, r *bufio.Reader) {
		for i := 0; ; i++ {
			h, err := ws.ReadHeader(r)
			if err != nil {
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(r, p); err != nil {
				return
			}
			ws.Cipher(p, h.Mask, 0)
			h.Masked = false
			out := edit(i, &h, p)
			if _, err := c.Write(out); err != nil {
				return
			}
		}
	}
}

func newEngine(t *testing.T, addr netip.AddrPort, depth int) *Engine {
	t.Helper()
	e, err := New(Config{Addr: addr, Size: 100, Depth: depth, DialConcurrency: 4, Timeout: 3 * time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

func TestEngineGood(t *testing.T) {
	servers := map[string]func(net.Conn, *bufio.Reader){
		// The floor: bytes back as they came, masked.
		"raw": func(c net.Conn, r *bufio.Reader) { _, _ = io.Copy(c, r) },
		// Unmasked, every message in two fragments with a ping between.
		"fragmenting": echoFrames(func(i int, h *ws.Header, p []byte) []byte {
			k := len(p) / 3
			out := frame(h.OpCode, false, p[:k], nil)
			out = append(out, frame(ws.OpPing, true, nil, nil)...)
			return append(out, frame(ws.OpContinuation, true, p[k:], nil)...)
		}),
	}
	for name, serve := range servers {
		for _, depth := range []int{1, 16} {
			e := newEngine(t, server(t, serve), depth)
			if r := e.Dial(8, false, false); r.Open != 8 {
				t.Fatalf("%s: %d open", name, r.Open)
			}
			if d := e.Run(200*time.Millisecond, true); d < 200*time.Millisecond {
				t.Fatalf("%s: ran %v", name, d)
			}
			if alive := e.Check(); alive != 8 {
				t.Fatalf("%s: %d alive", name, alive)
			}
			st := e.Stats()
			if e.Errors() != 0 || st.Messages < 100 {
				t.Fatalf("%s depth %d: %d messages, errors %v", name, depth, st.Messages, e.ErrorSamples())
			}
			if depth > 1 && st.PerMsg.Count() == 0 {
				t.Fatalf("%s: no per-message latencies", name)
			}
		}
	}
}

func TestEngineConnect(t *testing.T) {
	e := newEngine(t, server(t, func(c net.Conn, r *bufio.Reader) { _, _ = io.Copy(c, r) }), 1)
	r := e.Dial(50, true, true)
	if r.Upgrades != 50 || r.Alive != 50 || r.LastUpgrade <= 0 || e.Errors() != 0 {
		t.Fatalf("%+v errors %v", r, e.ErrorSamples())
	}
	if n := e.Stats().Batch.Count(); n != 50 {
		t.Fatalf("%d upgrade latencies", n)
	}
}

// TestEngineDetects proves that a wrong byte, a wrong opcode, a close or a
// bad handshake count as errors.
func TestEngineDetects(t *testing.T) {
	cases := map[string]struct {
		serve func(net.Conn, *bufio.Reader)
		want  string
	}{
		"flipped byte": {echoFrames(func(i int, h *ws.Header, p []byte) []byte {
			if i == 5 {
				p[40] ^= 0x01
			}
			return frame(h.OpCode, true, p, nil)
		}), "differs from what was sent at byte 40"},
		"wrong opcode": {echoFrames(func(i int, h *ws.Header, p []byte) []byte {
			return frame(ws.OpText, true, p, nil)
		}), "opcode"},
		"close": {echoFrames(func(i int, h *ws.Header, p []byte) []byte {
			if i == 3 {
				return frame(ws.OpClose, true, []byte{0x03, 0xe8}, nil)
			}
			return frame(h.OpCode, true, p, nil)
		}), "close frame"},
		"dropped connection": {echoFrames(func(i int, h *ws.Header, p []byte) []byte {
			if i == 3 {
				return nil
			}
			return frame(h.OpCode, true, p, nil)
		}), "no echo within"},
	}
	for name, c := range cases {
		e, err := New(Config{Addr: server(t, c.serve), Size: 100, Depth: 1, DialConcurrency: 4, Timeout: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		e.Dial(2, false, false)
		e.Run(300*time.Millisecond, true)
		errs := e.ErrorSamples()
		e.Close()
		if e.Errors() == 0 || !strings.Contains(strings.Join(errs, "\n"), c.want) {
			t.Errorf("%s: errors %d %q, want %q", name, e.Errors(), errs, c.want)
		}
	}

	// A server that answers the upgrade with a wrong accept value.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+Accept("x")+"\r\n\r\n")
				_, _ = c.Read(buf)
			}()
		}
	}()
	e, err := New(Config{Addr: netip.MustParseAddrPort(l.Addr().String()), Size: 10, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if r := e.Dial(3, false, false); r.Open != 0 || e.Errors() != 3 || !strings.Contains(e.ErrorSamples()[0], "Sec-WebSocket-Accept") {
		t.Fatalf("bad accept: %+v %v", r, e.ErrorSamples())
	}
}

func TestNotLoopback(t *testing.T) {
	if _, err := New(Config{Addr: netip.MustParseAddrPort("10.0.0.1:80")}); err == nil {
		t.Fatal("accepted 10.0.0.1")
	}
	if _, err := New(Config{Addr: netip.MustParseAddrPort("127.0.0.1:80"), Srcs: []netip.Addr{netip.MustParseAddr("192.168.1.1")}}); err == nil {
		t.Fatal("accepted source 192.168.1.1")
	}
}

// TestEngineSourceAddresses proves that connections are spread over the
// configured source addresses, round robin: this is how the suite opens
// more sockets than one address's ephemeral ports allow.
func TestEngineSourceAddresses(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	addr := server(t, func(c net.Conn, r *bufio.Reader) {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		mu.Lock()
		seen[host]++
		mu.Unlock()
		_, _ = io.Copy(c, r)
	})
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4")}
	e, err := New(Config{Addr: addr, Srcs: srcs, Size: 64, Depth: 1, DialConcurrency: 4, Timeout: 3 * time.Second, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if r := e.Dial(30, false, true); r.Open != 30 || e.Errors() != 0 {
		t.Fatalf("%+v errors %v", r, e.ErrorSamples())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range srcs {
		if seen[s.String()] != 10 {
			t.Fatalf("connections per source address: %v, want 10 from each of %v", seen, srcs)
		}
	}
}

// TestSpread checks the per-connection spread against figures worked by
// hand, and that merging two halves gives what one Spread over all gives.
func TestSpread(t *testing.T) {
	var all, a, b Spread
	for i, n := range []uint64{10, 10, 10, 10} {
		all.Add(n)
		if i < 2 {
			a.Add(n)
		} else {
			b.Add(n)
		}
	}
	if all.CV() != 0 || all.Mean() != 10 || all.Min != 10 || all.Max != 10 {
		t.Fatalf("equal counts: %+v cv %v", all, all.CV())
	}
	all, a, b = Spread{}, Spread{}, Spread{}
	for i, n := range []uint64{2, 4, 4, 4, 5, 5, 7, 9} { // mean 5, sd 2
		all.Add(n)
		if i%2 == 0 {
			a.Add(n)
		} else {
			b.Add(n)
		}
	}
	if math.Abs(all.CV()-0.4) > 1e-12 || all.Min != 2 || all.Max != 9 {
		t.Fatalf("cv %v min %d max %d, want 0.4 2 9", all.CV(), all.Min, all.Max)
	}
	a.Merge(&b)
	a.Merge(nil)
	if a != all {
		t.Fatalf("merged %+v, want %+v", a, all)
	}
}

// TestVerifierDeflate: compressed echoes (RSV1, whole or fragmented, cut at
// every byte) are inflated and checked; a wrong byte inside, RSV1 on a
// continuation, or compression without an Inflater are errors.
func TestVerifierDeflate(t *testing.T) {
	p := NewJSONPayload(1024, 7)
	var zb Deflater
	msg := func(seq uint64) []byte { b := make([]byte, 1024); p.Fill(b, 3, seq); return b }
	z0 := append([]byte(nil), zb.Deflate(msg(0))...)
	z1 := append([]byte(nil), zb.Deflate(msg(1))...)
	if len(z0) > 600 {
		t.Fatalf("1 KiB of JSON compressed to %d bytes", len(z0))
	}
	rsv1 := func(f []byte) []byte { f[0] |= 0x40; return f }
	var stream []byte
	stream = append(stream, rsv1(frame(ws.OpText, true, z0, nil))...)
	stream = append(stream, rsv1(frame(ws.OpText, false, z1[:10], nil))...)
	stream = append(stream, frame(ws.OpContinuation, true, z1[10:], nil)...)
	var inf Inflater
	for cut := 0; cut <= len(stream); cut++ {
		v := Verifier{P: p, Op: ws.OpText, ID: 3, Inf: &inf}
		s := append([]byte(nil), stream...)
		n1, err := v.Feed(s[:cut], 0, 2)
		if err != nil {
			t.Fatalf("cut %d: %v", cut, err)
		}
		n2, err := v.Feed(s[cut:], uint64(n1), 2-n1)
		if err != nil || n1+n2 != 2 {
			t.Fatalf("cut %d: %d+%d messages, %v", cut, n1, n2, err)
		}
	}
	bad := append([]byte(nil), msg(0)...)
	bad[500] ^= 1
	zbad := append([]byte(nil), zb.Deflate(bad)...)
	for name, data := range map[string][]byte{
		"differs":          rsv1(frame(ws.OpText, true, zbad, nil)),
		"reserved bits":    append(rsv1(frame(ws.OpText, false, z0[:10], nil)), rsv1(frame(ws.OpContinuation, true, z0[10:], nil))...),
		"does not inflate": rsv1(frame(ws.OpText, true, []byte{0xff, 0xff, 0xff}, nil)),
	} {
		v := Verifier{P: p, Op: ws.OpText, ID: 3, Inf: &inf}
		if _, err := v.Feed(data, 0, 1); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err %v", name, err)
		}
	}
	v := Verifier{P: p, Op: ws.OpText, ID: 3}
	if _, err := v.Feed(rsv1(frame(ws.OpText, true, z0, nil)), 0, 1); err == nil || !strings.Contains(err.Error(), "reserved bits") {
		t.Errorf("compressed echo without compression negotiated: %v", err)
	}
}

// dialViewers starts an engine of viewers (cfg, 4 dials in flight, 3 s
// bound) and upgrades 4 of them. A viewer sent a bad message may fail
// before the others are up: only the upgrades are certain here.
func dialViewers(t *testing.T, cfg Config) *Engine {
	t.Helper()
	cfg.DialConcurrency, cfg.Timeout, cfg.Logf = 4, 3*time.Second, t.Logf
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	if e.Dial(4, false, false); e.Upgraded() != 4 {
		t.Fatalf("%d upgraded, errors %v", e.Upgraded(), e.ErrorSamples())
	}
	return e
}

// TestEngineViewers: viewers answer a ping with a masked pong carrying its
// payload, then take a publisher's messages in sequence, each checked; a
// duplicate, a gap or a stranger's message is an error.
func TestEngineViewers(t *testing.T) {
	const size, seed, pub = 100, 42, 7
	pl := NewPayload(size, seed)
	msg := func(id uint32, seq uint64) []byte {
		p := make([]byte, size)
		pl.Fill(p, id, seq)
		return frame(ws.OpBinary, true, p, nil)
	}
	serve := func(frames ...[]byte) func(net.Conn, *bufio.Reader) {
		return func(c net.Conn, r *bufio.Reader) {
			if _, err := c.Write(frame(ws.OpPing, true, []byte("hb"), nil)); err != nil {
				return
			}
			h, err := ws.ReadHeader(r)
			if err != nil {
				return
			}
			p := make([]byte, h.Length)
			if _, err := io.ReadFull(r, p); err != nil {
				return
			}
			ws.Cipher(p, h.Mask, 0)
			if h.OpCode != ws.OpPong || !h.Masked || string(p) != "hb" {
				return // closing: the viewer fails
			}
			for _, f := range frames {
				if _, err := c.Write(f); err != nil {
					return
				}
			}
			_, _ = io.Copy(io.Discard, r)
		}
	}
	viewers := func(addr netip.AddrPort) *Engine {
		return dialViewers(t, Config{Addr: addr, Size: size, Seed: seed, Viewers: 3, ViewerID: pub})
	}

	e := viewers(server(t, serve(msg(pub, 0), msg(pub, 1), msg(pub, 2))))
	if n := e.Open(); n != 4 {
		t.Fatalf("%d open, errors %v", n, e.ErrorSamples())
	}
	for seq := range 3 {
		if a := e.Await(seq, 3*time.Second); len(a.Arrivals) != 4 || a.Open != 4 {
			t.Fatalf("message %d: %d arrivals, %d open, errors %v", seq, len(a.Arrivals), a.Open, e.ErrorSamples())
		}
	}
	if e.Pongs() != 4 || e.Errors() != 0 {
		t.Fatalf("%d pongs, errors %v", e.Pongs(), e.ErrorSamples())
	}

	for name, frames := range map[string][][]byte{
		"duplicate": {msg(pub, 0), msg(pub, 0)},
		"gap":       {msg(pub, 0), msg(pub, 2)},
		"stranger":  {msg(pub+1, 0)},
		"too many":  {msg(pub, 0), msg(pub, 1), msg(pub, 2), msg(pub, 3)},
	} {
		e := viewers(server(t, serve(frames...)))
		deadline := time.Now().Add(3 * time.Second)
		for e.Errors() < 4 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if e.Errors() != 4 {
			t.Fatalf("%s: %d errors for 4 viewers", name, e.Errors())
		}
	}
}

// TestEngineViewersReconnect: with Reconnect, viewers whose server ends
// their connection dial again after a backoff and may then skip ahead
// once (counted), but a message they had already is still an error; with
// SetGaps, viewers that stayed connected may skip ahead too.
func TestEngineViewersReconnect(t *testing.T) {
	const size, seed, pub = 64, 42, 7
	pl := NewPayload(size, seed)
	msg := func(seq uint64) []byte {
		p := make([]byte, size)
		pl.Fill(p, pub, seq)
		return frame(ws.OpBinary, true, p, nil)
	}
	// The first 4 connections get messages 0 and 1, then the server
	// closes them; the next 4 (the viewers back) get what second holds.
	serve := func(second ...[]byte) func(net.Conn, *bufio.Reader) {
		var n atomic.Int32
		return func(c net.Conn, r *bufio.Reader) {
			if n.Add(1) <= 4 {
				_, _ = c.Write(append(msg(0), msg(1)...))
				time.Sleep(100 * time.Millisecond)
				return // the helper closes c
			}
			for _, f := range second {
				_, _ = c.Write(f)
			}
			_, _ = io.Copy(io.Discard, r)
		}
	}
	viewers := func(addr netip.AddrPort, reconnect bool) *Engine {
		return dialViewers(t, Config{Addr: addr, Size: size, Seed: seed, Viewers: 5, ViewerID: pub,
			Reconnect: reconnect, ReconnectJitter: 200 * time.Millisecond})
	}
	wait := func(what string, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(end) {
				t.Fatalf("%s: not within 5 s", what)
			}
		}
	}

	e := viewers(server(t, serve(msg(3), msg(4))), true)
	wait("4 reconnects", func() bool { return e.Reconnects() == 4 })
	if a := e.Await(4, 3*time.Second); len(a.Arrivals) != 4 || a.Open != 4 || a.Fresh != 0 {
		t.Fatalf("message 4: %+v, errors %v", a, e.ErrorSamples())
	}
	if e.Drops() != 4 || e.Skips() != 4 || e.Errors() != 0 {
		t.Fatalf("drops %d, skips %d (want 4: message 2 each), errors %v", e.Drops(), e.Skips(), e.ErrorSamples())
	}

	// Back after a drop, a message it had already is a duplicate.
	e = viewers(server(t, serve(msg(1))), true)
	wait("4 errors", func() bool { return e.Errors() == 4 })

	// Without Reconnect a drop is an error.
	e = viewers(server(t, serve()), false)
	wait("4 errors", func() bool { return e.Errors() == 4 })
	if e.Drops() != 0 {
		t.Fatalf("drops %d without Reconnect", e.Drops())
	}

	// SetGaps: viewers that stay may skip ahead, never back.
	for _, c := range []struct {
		frames [][]byte
		skips  int64
		errs   int64
	}{
		{[][]byte{msg(0), msg(2), msg(4)}, 8, 0},
		{[][]byte{msg(0), msg(2), msg(1)}, 4, 4},
	} {
		e := viewers(server(t, func(conn net.Conn, r *bufio.Reader) {
			for _, f := range c.frames {
				_, _ = conn.Write(f)
				time.Sleep(20 * time.Millisecond)
			}
			_, _ = io.Copy(io.Discard, r)
		}), false)
		e.SetGaps(true)
		wait("the messages", func() bool { return e.Skips() == c.skips && e.Errors() == c.errs })
		time.Sleep(100 * time.Millisecond)
		if e.Skips() != c.skips || e.Errors() != c.errs {
			t.Fatalf("skips %d, errors %d %v", e.Skips(), e.Errors(), e.ErrorSamples())
		}
	}
}
