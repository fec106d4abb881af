package engine

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// Rate limits (WithRateLimit), over real sockets with gorilla's client.
// The rates are slow enough (a message a second or less) that a test's
// quick sends all fall within one refill, however noisy the machine.

// rlHandler echoes, counts the messages delivered per request path
// (pathHook attaches it), exempts connections to /exempt from OnOpen and
// records OnClose.
type rlHandler struct {
	BaseHandler
	mu        sync.Mutex
	delivered map[string]int
	closed    chan error
}

func newRLHandler() *rlHandler {
	return &rlHandler{delivered: map[string]int{}, closed: make(chan error, 16)}
}

func (h *rlHandler) OnOpen(c *Conn) {
	if c.Value() == "/exempt" {
		c.SetRateLimited(false)
	}
}

func (h *rlHandler) OnMessage(c *Conn, op ws.OpCode, p []byte) {
	h.mu.Lock()
	h.delivered[fmt.Sprint(c.Value())]++
	h.mu.Unlock()
	_ = c.WriteMessage(op, p)
}

func (h *rlHandler) OnClose(_ *Conn, err error) { h.closed <- err }

func (h *rlHandler) count(path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.delivered[path]
}

// pathHook attaches the request's path to the connection.
func pathHook(r *Request) (any, error) { return string(r.Path()), nil }

// startRL starts an rlHandler server with pathHook and opts.
func startRL(t *testing.T, opts ...Option) (*rlHandler, *Server, string) {
	h := newRLHandler()
	srv, addr := startServer(t, h, append([]Option{WithUpgradeHook(pathHook)}, opts...)...)
	return h, srv, addr
}

// slowDown is an OnLimited that answers every dropped message with
// "slow down N RETRY_MS".
func slowDown(c *Conn, n int, retry time.Duration) {
	_ = c.SendText(fmt.Sprintf("slow down %d %d", n, retry.Milliseconds()))
}

func dialRL(t *testing.T, addr, path string, compress bool) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{EnableCompression: compress, HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("ws://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func sendText(t *testing.T, c *websocket.Conn, s string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func readText(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, p, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return string(p)
}

// expectReplies reads len(want) messages and compares them with want; a
// want ending in "*" matches a prefix.
func expectReplies(t *testing.T, c *websocket.Conn, want ...string) []string {
	t.Helper()
	got := make([]string, len(want))
	for i, w := range want {
		got[i] = readText(t, c)
		if p, ok := strings.CutSuffix(w, "*"); ok && strings.HasPrefix(got[i], p) || got[i] == w {
			continue
		}
		short := make([]string, i+1)
		for j, g := range got[:i+1] {
			short[j] = abbrev(g)
		}
		t.Fatalf("reply %d is %q, want %q (replies so far %q)", i, abbrev(got[i]), abbrev(w), short)
	}
	return got
}

// abbrev shortens a long message for an error.
func abbrev(s string) string {
	if len(s) <= 24 {
		return s
	}
	return fmt.Sprintf("%s... (%d bytes)", s[:16], len(s))
}

// TestRateLimitBurstThenDrop: a burst passes, the rest is dropped; OnLimited
// is told each drop with the run's length and when to retry, and answers
// "slow down"; Stats counts the drops and not in MessagesIn; a message that
// passes ends the run.
func TestRateLimitBurstThenDrop(t *testing.T) {
	_, srv, addr := startRL(t, WithRateLimit(RateLimit{Messages: 5, Per: 10 * time.Second, OnLimited: slowDown}))
	c := dialRL(t, addr, "/", false)
	for i := range 8 {
		sendText(t, c, fmt.Sprint("m", i))
	}
	got := expectReplies(t, c, "m0", "m1", "m2", "m3", "m4", "slow down 1 *", "slow down 2 *", "slow down 3 *")
	var n, ms int
	if _, err := fmt.Sscanf(got[5], "slow down %d %d", &n, &ms); err != nil || ms < 1000 || ms > 2100 {
		t.Errorf("first notice %q: retry should be about 2 s (a message's share of 10 s), at most 2 s and a tick", got[5])
	}
	st := srv.Stats()
	if st.RateLimited != 3 || st.MessagesIn != 5 || st.RateLimitCloses != 0 {
		t.Errorf("Stats: RateLimited %d, MessagesIn %d, RateLimitCloses %d; want 3, 5, 0", st.RateLimited, st.MessagesIn, st.RateLimitCloses)
	}
}

// TestRateLimitRefill: time pays the debt down; after the retry OnLimited
// gave, a message passes again, and a new run of drops starts at 1.
func TestRateLimitRefill(t *testing.T) {
	_, srv, addr := startRL(t, WithRateLimit(RateLimit{Messages: 2, Per: 2 * time.Second, OnLimited: slowDown}))
	c := dialRL(t, addr, "/", false)
	for _, m := range []string{"a", "b", "c"} {
		sendText(t, c, m)
	}
	got := expectReplies(t, c, "a", "b", "slow down 1 *")
	var n, ms int
	if _, err := fmt.Sscanf(got[2], "slow down %d %d", &n, &ms); err != nil || ms <= 0 || ms > 1100 {
		t.Fatalf("notice %q: want a retry of at most a second and a tick", got[2])
	}
	time.Sleep(time.Duration(ms)*time.Millisecond + 300*time.Millisecond) // the retry, and slack for a late tick
	sendText(t, c, "d")
	sendText(t, c, "e") // within a second of "d": its share is not earned yet
	expectReplies(t, c, "d", "slow down 1 *")
	time.Sleep(2500 * time.Millisecond) // more than the whole burst's worth: it refills to Burst, no more
	for _, m := range []string{"f", "g", "h"} {
		sendText(t, c, m)
	}
	expectReplies(t, c, "f", "g", "slow down 1 *")
	if st := srv.Stats(); st.RateLimited != 3 {
		t.Errorf("Stats.RateLimited %d, want 3", st.RateLimited)
	}
}

// TestRateLimitClose: with RateLimitClose the message over the limit fails
// the connection with 1008; OnClose gets ErrRateLimited.
func TestRateLimitClose(t *testing.T) {
	h, srv, addr := startRL(t, WithRateLimit(RateLimit{Messages: 3, Per: 10 * time.Second, Action: RateLimitClose}))
	c := dialRL(t, addr, "/", false)
	for i := range 5 {
		sendText(t, c, fmt.Sprint("m", i))
	}
	expectReplies(t, c, "m0", "m1", "m2")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err := c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.ClosePolicyViolation {
		t.Fatalf("after the burst the client read %v, want a 1008 close", err)
	}
	select {
	case err := <-h.closed:
		var sce *CloseError
		if !errors.As(err, &sce) || sce.Code != ws.StatusPolicyViolation || sce.Remote || !errors.Is(err, ErrRateLimited) {
			t.Fatalf("OnClose got %v, want a 1008 from the server wrapping ErrRateLimited", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnClose not called")
	}
	// m4, sent after m3, was discarded with the rest of the input.
	if st := srv.Stats(); st.RateLimited != 1 || st.RateLimitCloses != 1 || st.MessagesIn != 3 {
		t.Errorf("Stats: RateLimited %d, RateLimitCloses %d, MessagesIn %d; want 1, 1, 3", st.RateLimited, st.RateLimitCloses, st.MessagesIn)
	}
}

// TestRateLimitBytes: a byte limit counts payload bytes, after
// decompression; the message count is not limited then.
func TestRateLimitBytes(t *testing.T) {
	_, srv, addr := startRL(t, WithMaxMessageSize(1000),
		WithRateLimit(RateLimit{Bytes: 1000, Per: 10 * time.Second, OnLimited: slowDown}))
	t.Run("plain", func(t *testing.T) {
		c := dialRL(t, addr, "/", false)
		big := strings.Repeat("x", 400)
		sendText(t, c, big)
		sendText(t, c, big)
		sendText(t, c, big)                      // 1,200 bytes: over
		sendText(t, c, strings.Repeat("y", 200)) // 1,000: fits exactly
		sendText(t, c, strings.Repeat("z", 50))  // over: 50 bytes are half a second's worth
		for range 10 {                           // empty messages cost no bytes
			sendText(t, c, "")
		}
		expectReplies(t, c, big, big, "slow down 1 *", strings.Repeat("y", 200), "slow down 1 *") // 1 again: y passed
		for range 10 {
			if got := readText(t, c); got != "" {
				t.Fatalf("read %q, want the empty echo", got)
			}
		}
	})
	t.Run("compressed", func(t *testing.T) {
		c := dialRL(t, addr, "/", true)
		c.EnableWriteCompression(true)
		big := strings.Repeat("a", 900) // about 10 bytes on the wire
		sendText(t, c, big)
		sendText(t, c, big)
		expectReplies(t, c, big, "slow down 1 *")
	})
	if st := srv.Stats(); st.RateLimited != 3 || st.Inflated < 2 {
		t.Errorf("Stats: RateLimited %d, Inflated %d; want 3, at least 2", st.RateLimited, st.Inflated)
	}
}

// TestRateLimitExempt: SetRateLimited(false) from OnOpen exempts a
// connection; the others stay limited.
func TestRateLimitExempt(t *testing.T) {
	_, srv, addr := startRL(t, WithRateLimit(RateLimit{Messages: 2, Per: 10 * time.Second, OnLimited: slowDown}))
	mod := dialRL(t, addr, "/exempt", false)
	user := dialRL(t, addr, "/", false)
	var want []string
	for i := range 50 {
		sendText(t, mod, fmt.Sprint("mod", i))
		want = append(want, fmt.Sprint("mod", i))
	}
	expectReplies(t, mod, want...)
	for _, m := range []string{"u0", "u1", "u2"} {
		sendText(t, user, m)
	}
	expectReplies(t, user, "u0", "u1", "slow down 1 *")
	if st := srv.Stats(); st.RateLimited != 1 {
		t.Errorf("Stats.RateLimited %d, want 1", st.RateLimited)
	}
}

// TestRateLimitPerConnection: one connection's drops leave another's
// budget whole.
func TestRateLimitPerConnection(t *testing.T) {
	_, _, addr := startRL(t, WithRateLimit(RateLimit{Messages: 3, Per: 10 * time.Second, OnLimited: slowDown}))
	a := dialRL(t, addr, "/", false)
	b := dialRL(t, addr, "/", false)
	for i := range 6 {
		sendText(t, a, fmt.Sprint("a", i))
	}
	expectReplies(t, a, "a0", "a1", "a2", "slow down 1 *", "slow down 2 *", "slow down 3 *")
	for i := range 4 {
		sendText(t, b, fmt.Sprint("b", i))
	}
	expectReplies(t, b, "b0", "b1", "b2", "slow down 1 *")
}

// TestRateLimitFlood: a client that sends small messages as fast as it
// can from a real socket gets no more than the burst and the rate through
// (OnMessage runs no more often), the rest is counted and dropped, the heap
// stays flat, and another limited connection keeps getting its echoes
// (servingProbe, well under the limit).
func TestRateLimitFlood(t *testing.T) {
	const rate, burst = 200, 200 // per second; the probe sends fewer than 100
	h, srv, addr := startRL(t, WithRateLimit(RateLimit{Messages: rate, Burst: burst}))
	probe := startProbe(t, rawDialer(addr)) // path /raw
	flooder := dialRL(t, addr, "/flood", false)
	msg := bytes.Repeat([]byte("f"), 64)
	mem := startMemPeak(t)
	mark := probe.mark()
	start := time.Now()
	var sent int
	for time.Since(start) < 2*time.Second || probe.since(mark) < 3 {
		if err := flooder.WriteMessage(websocket.BinaryMessage, msg); err != nil {
			t.Fatal(err)
		}
		if sent++; time.Since(start) > 30*time.Second {
			t.Fatalf("the probe echoed %d times in 30 s of flood", probe.since(mark))
		}
	}
	elapsed := time.Since(start)
	var delivered int
	waitFor(t, 20*time.Second, "the server to read the whole flood", func() bool {
		delivered = h.count("/flood")
		return uint64(delivered)+srv.Stats().RateLimited >= uint64(sent)
	})
	probe.end(t)
	mem.check(t, 16<<20, "flood of small messages past a rate limit")
	limit := burst + int(rate*(time.Since(start)+time.Second).Seconds())
	t.Logf("sent %d messages in %v: %d delivered (bound %d), %d limited", sent, elapsed.Round(time.Millisecond), delivered, limit, srv.Stats().RateLimited)
	if delivered < burst || delivered > limit {
		t.Errorf("%d of the flood's messages reached OnMessage, want between the burst (%d) and the burst plus the rate over the flood (%d)", delivered, burst, limit)
	}
	if sent <= limit {
		t.Skipf("the client sent only %d messages: too slow to flood the limit", sent)
	}
}

// TestRateLimitAllocs: with a limit on, neither a message that passes nor
// one that is dropped (OnLimited answering) allocates in steady state.
func TestRateLimitAllocs(t *testing.T) {
	msg := bytes.Repeat([]byte("x"), 64)
	frame := clientFrame(ws.OpBinary, true, msg)
	t.Run("passing", func(t *testing.T) {
		_, addr := startServer(t, echoHandler{}, WithRateLimit(RateLimit{Messages: 1 << 29, Bytes: 1 << 29}))
		c := upgradeRaw(t, addr)
		reply := make([]byte, 2+len(msg))
		for range 200 {
			echoRoundTrip(t, c, frame, reply)
		}
		if allocs := testing.AllocsPerRun(2000, func() { echoRoundTrip(t, c, frame, reply) }); allocs != 0 {
			t.Errorf("%v allocations per message under a limit, want 0", allocs)
		}
		if !bytes.Equal(reply[2:], msg) {
			t.Fatalf("reply %q, want the echo", reply[2:])
		}
	})
	t.Run("dropped", func(t *testing.T) {
		notice := []byte("slow down")
		_, addr := startServer(t, echoHandler{}, WithRateLimit(RateLimit{
			Messages: 1, Bytes: 1 << 20, Per: time.Hour,
			OnLimited: func(c *Conn, n int, retry time.Duration) { _ = c.Send(notice) },
		}))
		c := upgradeRaw(t, addr)
		reply := make([]byte, 2+len(msg))
		echoRoundTrip(t, c, frame, reply) // the one message an hour
		if !bytes.Equal(reply[2:], msg) {
			t.Fatalf("first reply %q, want the echo", reply[2:])
		}
		reply = reply[:2+len(notice)]
		for range 200 {
			echoRoundTrip(t, c, frame, reply)
		}
		if !bytes.Equal(reply[2:], notice) {
			t.Fatalf("reply %q, want the notice", reply[2:])
		}
		if allocs := testing.AllocsPerRun(2000, func() { echoRoundTrip(t, c, frame, reply) }); allocs != 0 {
			t.Errorf("%v allocations per dropped message, want 0", allocs)
		}
	})
}

// TestRateLimitOptions: New refuses a limit that cannot work, naming
// WithRateLimit and the field.
func TestRateLimitOptions(t *testing.T) {
	cases := []struct {
		name string
		r    RateLimit
		opts []Option
		want string
	}{
		{"nothing limited", RateLimit{}, nil, "set Messages, Bytes or both"},
		{"negative", RateLimit{Messages: -1}, nil, "negative"},
		{"negative Per", RateLimit{Messages: 1, Per: -time.Second}, nil, "Per"},
		{"Burst without Messages", RateLimit{Bytes: 1 << 20, Burst: 3}, nil, "Burst 3 without Messages"},
		{"BurstBytes without Bytes", RateLimit{Messages: 1, BurstBytes: 3}, nil, "BurstBytes 3 without Bytes"},
		{"BurstBytes under the message size", RateLimit{Bytes: 1000}, nil, "WithMaxMessageSize"},
		{"faster than a nanosecond", RateLimit{Messages: 2, Per: time.Nanosecond}, nil, "nanosecond"},
		{"unknown action", RateLimit{Messages: 1, Action: 7}, nil, "Action"},
		{"OnLimited with close", RateLimit{Messages: 1, Action: RateLimitClose, OnLimited: slowDown}, nil, "OnLimited"},
		{"huge burst", RateLimit{Messages: 1, Burst: 1 << 31}, nil, "2^30"},
	}
	for _, tc := range cases {
		_, err := New(echoHandler{}, append(tc.opts, WithRateLimit(tc.r))...)
		if err == nil || !strings.Contains(err.Error(), "WithRateLimit") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New returned %v, want an error from WithRateLimit mentioning %q", tc.name, err, tc.want)
		}
	}
	if _, err := New(echoHandler{}, WithMaxMessageSize(1000), WithRateLimit(RateLimit{Bytes: 1000})); err != nil {
		t.Errorf("a byte limit whose burst holds the largest message: %v", err)
	}
}

// TestRateLimitBucket checks the compiled arithmetic: a burst takes
// Burst messages from nothing, a message's share of time pays one back,
// and a small tick-raised burst keeps the rate.
func TestRateLimitBucket(t *testing.T) {
	for _, tc := range []struct {
		rate, burst int
		per, tick   time.Duration
		wantBurst   uint64
	}{
		{1, 5, time.Second, 100 * time.Millisecond, 5},
		{5, 0, time.Minute, 100 * time.Millisecond, 5},
		{1000, 1, time.Second, 100 * time.Millisecond, 200}, // two ticks' worth
		{1 << 20, 0, time.Second, 100 * time.Millisecond, 1 << 20},
		{3, 1000, 24 * time.Hour, time.Millisecond, 1000},
	} {
		b, err := newBucket(tc.rate, tc.burst, tc.per, tc.tick)
		if err != nil || b.burst != tc.wantBurst {
			t.Fatalf("%+v: bucket %+v, %v; want burst %d", tc, b, err, tc.wantBurst)
		}
		var debt uint64
		n := 0
		for debt+b.cost(1) <= uint64(b.full) {
			debt += b.cost(1)
			n++
		}
		if uint64(n) != b.burst {
			t.Errorf("%+v: %d messages from nothing, want %d", tc, n, b.burst)
		}
		share := int64(tc.per) / int64(tc.rate)
		if got := b.excess(uint32(debt), b.cost(1)); got <= 0 || got > share {
			t.Errorf("%+v: a full bucket's excess is %d ns, want (0, %d]", tc, got, share)
		}
		if paid := b.pay(uint32(debt), share); uint64(paid)+b.cost(1) > uint64(b.full) {
			t.Errorf("%+v: a message's share of time (%d ns) did not make room for one", tc, share)
		}
	}
}

// TestRateLimitConnSize: the limiter's state (two debts, the run and the
// exemption) keeps Conn in its 288-byte allocation size class.
func TestRateLimitConnSize(t *testing.T) {
	size := unsafe.Sizeof(Conn{})
	t.Logf("Conn is %d bytes", size)
	if size > 288 {
		t.Errorf("Conn is %d bytes, past the 288-byte size class", size)
	}
}
