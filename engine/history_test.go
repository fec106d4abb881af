package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// histEnvelope is the tests' envelope: "epoch offset payload", text.
func histEnvelope(dst []byte, _ string, pos Position, p []byte) []byte {
	dst = append(dst, pos.Epoch...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	dst = append(dst, ' ')
	return append(dst, p...)
}

// histHandler recovers each connection into the room its request names
// from the position it gives (?room=r&epoch=e&offset=n), then sends
// "R recovered missed epoch top" (behind the missed messages).
type histHandler struct {
	*recorder
	recoveries chan Recovery
}

type histReq struct {
	room  string
	since Position
}

func histHook(r *Request) (any, error) {
	off, _ := strconv.ParseUint(r.QueryValue("offset"), 10, 64)
	return histReq{room: r.QueryValue("room"), since: Position{Epoch: r.QueryValue("epoch"), Offset: off}}, nil
}

func (h histHandler) OnOpen(c *Conn) {
	h.recorder.OnOpen(c)
	req, _ := c.Value().(histReq)
	rec, err := c.Recover(req.room, req.since)
	if err != nil {
		_ = c.Close(ws.StatusInternalServerError, err.Error())
		return
	}
	if h.recoveries != nil {
		h.recoveries <- rec
	}
	b := 0
	if rec.Recovered {
		b = 1
	}
	epoch := rec.Top.Epoch
	if epoch == "" {
		epoch = "-"
	}
	_ = c.WriteMessage(ws.OpText, fmt.Appendf(nil, "R %d %d %s %d", b, rec.Missed, epoch, rec.Top.Offset))
}

func histURL(addr, room string, since Position) string {
	q := url.Values{"room": {room}, "epoch": {since.Epoch}, "offset": {strconv.FormatUint(since.Offset, 10)}}
	return "ws://" + addr + "/?" + q.Encode()
}

// histMsg is one message as a client reads it: a data message
// (pos, payload) or the recovery line.
type histMsg struct {
	pos       Position
	payload   string
	recovery  bool
	recovered bool
	missed    int
	top       Position
}

func readHist(conn *websocket.Conn) (histMsg, error) {
	_, b, err := conn.ReadMessage()
	if err != nil {
		return histMsg{}, err
	}
	f := strings.Fields(string(b))
	if len(f) == 5 && f[0] == "R" {
		missed, _ := strconv.Atoi(f[2])
		top, _ := strconv.ParseUint(f[4], 10, 64)
		if f[3] == "-" {
			f[3] = ""
		}
		return histMsg{recovery: true, recovered: f[1] == "1", missed: missed, top: Position{Epoch: f[3], Offset: top}}, nil
	}
	if len(f) != 3 {
		return histMsg{}, fmt.Errorf("malformed message %q", b)
	}
	off, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return histMsg{}, fmt.Errorf("malformed message %q", b)
	}
	return histMsg{pos: Position{Epoch: f[0], Offset: off}, payload: f[2]}, nil
}

func dialHist(t testing.TB, addr, room string, since Position) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial(histURL(addr, room, since), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	return conn
}

// TestHistoryRecoverUnderPublishing: publishers publish a continuous
// stream to a room with history while clients read a random number of
// messages, drop their TCP connection without a close frame, and come back
// with the position of the last message they got. Every client must see
// every offset from its first to the end exactly once and in order, each
// with the payload its publisher gave it, and every recovery must say it
// recovered. Two publishers publish at once, so positions must follow the
// order the members get the messages in, whoever published them.
func TestHistoryRecoverUnderPublishing(t *testing.T) {
	const (
		clients    = 24
		publishers = 2
		perPub     = 1500
		total      = publishers * perPub
	)
	srv, addr := startServer(t, histHandler{recorder: newRecorder()},
		WithUpgradeHook(histHook), WithEventLoops(2),
		WithHistory(func(room string) History {
			if room == "live" {
				return History{Size: total}
			}
			return History{}
		}, histEnvelope))

	// The room starts before the publishing: every client's first
	// connection sees the epoch and its start.
	top, ok := srv.RoomPosition("live")
	if !ok || top.Offset != 0 || top.Epoch == "" {
		t.Fatalf("RoomPosition before any publish = %+v, %v; want the epoch's start", top, ok)
	}

	var published sync.Map // offset -> payload, as PublishPos returned it
	var stop atomic.Bool
	var pubWG sync.WaitGroup
	for p := range publishers {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for i := range perPub {
				payload := fmt.Sprintf("p%d-%d", p, i)
				for {
					pos, err := srv.PublishPos("live", ws.OpText, []byte(payload))
					if err == nil {
						published.Store(pos.Offset, payload)
						break
					}
					if _, full := err.(*QueueFullError); !full || stop.Load() {
						t.Errorf("PublishPos: %v", err)
						return
					}
					time.Sleep(time.Millisecond) // the loops are behind; nothing was kept either
				}
				if i%2 == 0 { // a stream that lasts while the clients come and go
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}

	type seen struct {
		pos     Position
		payload string
	}
	results := make([][]seen, clients)
	reconnects := make([]int, clients)
	var wg sync.WaitGroup
	for ci := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(ci), 7))
			since := Position{}
			var got []seen
			for first := true; ; first = false {
				conn := dialHistNoCleanup(t, addr, "live", since)
				if conn == nil {
					return
				}
				budget := 20 + rng.IntN(400)
				for budget > 0 {
					m, err := readHist(conn)
					if err != nil {
						t.Errorf("client %d: %v (after %d messages)", ci, err, len(got))
						conn.Close()
						return
					}
					if m.recovery {
						if !first && !m.recovered {
							t.Errorf("client %d: reconnect from %+v not recovered (top %+v)", ci, since, m.top)
						}
						if first {
							since = m.top
						}
						continue
					}
					if m.pos.Epoch != since.Epoch && since.Epoch != "" {
						t.Errorf("client %d: epoch %q, want %q", ci, m.pos.Epoch, since.Epoch)
					}
					if len(got) > 0 && m.pos.Offset != got[len(got)-1].pos.Offset+1 {
						t.Errorf("client %d: offset %d after %d", ci, m.pos.Offset, got[len(got)-1].pos.Offset)
						conn.Close()
						return
					}
					got = append(got, seen{m.pos, m.payload})
					since = m.pos
					if m.pos.Offset == total {
						conn.Close()
						results[ci] = got
						return
					}
					budget--
				}
				conn.Close() // no close frame: the TCP connection drops
				reconnects[ci]++
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	stop.Store(true)
	pubWG.Wait()
	if t.Failed() {
		return
	}
	n := 0
	for ci, got := range results {
		if len(got) == 0 {
			t.Fatalf("client %d got nothing", ci)
		}
		for _, s := range got {
			want, _ := published.Load(s.pos.Offset)
			if want != s.payload {
				t.Fatalf("client %d: offset %d carried %q, PublishPos gave it to %q", ci, s.pos.Offset, s.payload, want)
			}
		}
		n += reconnects[ci]
	}
	if n < clients*2 {
		t.Fatalf("only %d reconnects in all: the test did not exercise recovery", n)
	}
	t.Logf("%d clients, %d reconnects, %d messages published", clients, n, total)
}

// dialHistNoCleanup dials from a goroutine of the test (no t.Fatal there).
func dialHistNoCleanup(t testing.TB, addr, room string, since Position) *websocket.Conn {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial(histURL(addr, room, since), nil)
	if err != nil {
		t.Errorf("dial: %v", err)
		return nil
	}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	return conn
}

// nextData reads the next data message, failing on anything else.
func nextData(t *testing.T, conn *websocket.Conn) histMsg {
	t.Helper()
	m, err := readHist(conn)
	if err != nil {
		t.Fatal(err)
	}
	if m.recovery {
		t.Fatalf("got the recovery line %+v, want a message", m)
	}
	return m
}

// nextRecovery reads the recovery line, failing on anything else.
func nextRecovery(t *testing.T, conn *websocket.Conn) histMsg {
	t.Helper()
	m, err := readHist(conn)
	if err != nil {
		t.Fatal(err)
	}
	if !m.recovery {
		t.Fatalf("got message %+v, want the recovery line", m)
	}
	return m
}

// TestHistoryRecoverEdges: positions the history cannot serve are not
// recovered, deliver nothing from the history, and still join the live
// messages: one from the future, one from another epoch, one older than
// the history holds; and one at the oldest kept message's predecessor is
// served in full.
func TestHistoryRecoverEdges(t *testing.T) {
	const size = 10
	srv, addr := startServer(t, histHandler{recorder: newRecorder()}, WithUpgradeHook(histHook),
		WithHistory(func(string) History { return History{Size: size} }, histEnvelope))
	var last Position
	payloads := map[uint64]string{}
	for i := 1; i <= 25; i++ {
		payloads[uint64(i)] = "m" + strconv.Itoa(i)
		pos, err := srv.PublishPos("r", ws.OpText, []byte("m"+strconv.Itoa(i)))
		if err != nil || pos.Offset != uint64(i) {
			t.Fatalf("publish %d: %+v, %v", i, pos, err)
		}
		last = pos
	}
	epoch := last.Epoch
	// Each case publishes one live message: its positions are taken from
	// the room's top when it starts.
	cases := []struct {
		name      string
		since     func(top uint64) Position
		recovered bool
		missed    int
	}{
		{"future", func(top uint64) Position { return Position{epoch, top + 1} }, false, 0},
		{"other epoch", func(top uint64) Position { return Position{"0123456789abcdef", top - 2} }, false, 0},
		{"no position", func(uint64) Position { return Position{} }, false, 0},
		{"older than the history", func(top uint64) Position { return Position{epoch, top - size - 1} }, false, 0},
		{"the oldest kept's predecessor", func(top uint64) Position { return Position{epoch, top - size} }, true, size},
		{"mid-history", func(top uint64) Position { return Position{epoch, top - 3} }, true, 3},
		{"up to date", func(top uint64) Position { return Position{epoch, top} }, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			since := tc.since(last.Offset)
			conn := dialHist(t, addr, "r", since)
			for i := range tc.missed {
				m := nextData(t, conn)
				if want := since.Offset + 1 + uint64(i); m.pos.Offset != want || m.payload != payloads[want] {
					t.Fatalf("missed message %d: %+v, want offset %d", i, m, want)
				}
			}
			r := nextRecovery(t, conn)
			if r.recovered != tc.recovered || r.missed != tc.missed || r.top != last {
				t.Fatalf("recovery %+v; want recovered %v, missed %d, top %+v", r, tc.recovered, tc.missed, last)
			}
			// Joined the live messages either way.
			waitFor(t, 5*time.Second, "the join", func() bool { return srv.RoomLen("r") >= 1 })
			pos, err := srv.PublishPos("r", ws.OpText, []byte("live"))
			if err != nil {
				t.Fatal(err)
			}
			if m := nextData(t, conn); m.pos != pos || m.payload != "live" {
				t.Fatalf("live message %+v, want %+v", m, pos)
			}
			payloads[pos.Offset] = "live"
			last = pos
			conn.Close()
			waitFor(t, 5*time.Second, "the leave", func() bool { return srv.RoomLen("r") == 0 })
		})
	}
}

// TestHistoryTTL: messages older than the TTL are dropped, a position
// before them is not recovered, and a history empty for a TTL is
// forgotten: the room's epoch changes.
func TestHistoryTTL(t *testing.T) {
	const ttl = 300 * time.Millisecond
	srv, addr := startServer(t, histHandler{recorder: newRecorder()}, WithUpgradeHook(histHook),
		WithHistory(func(string) History { return History{Size: 100, TTL: ttl} }, histEnvelope))
	p1, _ := srv.PublishPos("r", ws.OpText, []byte("old"))
	time.Sleep(ttl + 50*time.Millisecond)
	p2, _ := srv.PublishPos("r", ws.OpText, []byte("new"))
	if p2.Epoch != p1.Epoch || p2.Offset != 2 {
		t.Fatalf("positions %+v then %+v", p1, p2)
	}
	// p1 expired: a client that saw nothing is not recovered; one that saw
	// p1 gets p2.
	conn := dialHist(t, addr, "r", Position{p1.Epoch, 0})
	if r := nextRecovery(t, conn); r.recovered || r.missed != 0 {
		t.Fatalf("recovery past the TTL: %+v", r)
	}
	conn = dialHist(t, addr, "r", p1)
	if m := nextData(t, conn); m.pos != p2 || m.payload != "new" {
		t.Fatalf("got %+v, want %+v", m, p2)
	}
	if r := nextRecovery(t, conn); !r.recovered || r.missed != 1 {
		t.Fatalf("recovery %+v", r)
	}
	// Once empty for a TTL (the sweep runs every second), it is forgotten.
	waitFor(t, 5*time.Second, "the history forgotten", func() bool {
		pos, ok := srv.RoomPosition("r")
		return ok && pos.Epoch != p1.Epoch && pos.Offset == 0
	})
	conn = dialHist(t, addr, "r", p2)
	if r := nextRecovery(t, conn); r.recovered {
		t.Fatalf("recovered across a forgotten history: %+v", r)
	}
}

// TestHistoryRecoverAfterSlowConsumerClose: a member that stops reading is
// closed as a slow consumer while the stream goes on; it comes back from
// the last message it read and recovers everything after it, in order.
func TestHistoryRecoverAfterSlowConsumerClose(t *testing.T) {
	const total = 4000
	srv, addr := startServer(t, histHandler{recorder: newRecorder()}, WithUpgradeHook(histHook),
		WithMaxOutboundBytes(16<<10), WithSlowConsumerPolicy(ClosePolicyViolation),
		WithHistory(func(string) History { return History{Size: 10 * total} }, histEnvelope))
	conn := dialHist(t, addr, "r", Position{})
	start := nextRecovery(t, conn).top
	_ = conn.UnderlyingConn().(*net.TCPConn).SetReadBuffer(4096)
	waitFor(t, 5*time.Second, "the join", func() bool { return srv.RoomLen("r") == 1 })
	payload := strings.Repeat("x", 200)
	for range total {
		if _, err := srv.PublishPos("r", ws.OpText, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		if srv.RoomLen("r") == 0 {
			break // closed as a slow consumer
		}
	}
	waitFor(t, 10*time.Second, "the slow consumer closed", func() bool { return srv.RoomLen("r") == 0 })
	for range 100 { // the stream goes on without it
		if _, err := srv.PublishPos("r", ws.OpText, []byte(payload)); err != nil {
			t.Fatal(err)
		}
	}
	top, _ := srv.RoomPosition("r")
	// Read what reached the client before the close.
	last := start
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != 1008 {
				t.Fatalf("read: %v, want close 1008", err)
			}
			break
		}
		f := strings.Fields(string(b))
		off, _ := strconv.ParseUint(f[1], 10, 64)
		if off != last.Offset+1 {
			t.Fatalf("offset %d after %d", off, last.Offset)
		}
		last = Position{f[0], off}
	}
	if last.Offset >= top.Offset {
		t.Fatalf("the slow consumer got everything (%d of %d): nothing to recover", last.Offset, top.Offset)
	}
	conn = dialHist(t, addr, "r", last)
	for want := last.Offset + 1; want <= top.Offset; want++ {
		if m := nextData(t, conn); m.pos.Offset != want {
			t.Fatalf("recovered offset %d, want %d", m.pos.Offset, want)
		}
	}
	if r := nextRecovery(t, conn); !r.recovered || r.missed != int(top.Offset-last.Offset) {
		t.Fatalf("recovery %+v, want %d missed", r, top.Offset-last.Offset)
	}
	t.Logf("closed after offset %d of %d; recovered %d", last.Offset, top.Offset, top.Offset-last.Offset)
}

// TestHistoryRoomsWithout: rooms the rule gives no history behave as
// before: no position, Recover joins without recovering.
func TestHistoryRoomsWithout(t *testing.T) {
	srv, addr := startServer(t, histHandler{recorder: newRecorder()}, WithUpgradeHook(histHook),
		WithHistory(func(room string) History { return History{} }, histEnvelope))
	if _, ok := srv.RoomPosition("r"); ok {
		t.Fatal("RoomPosition of a room without history reported one")
	}
	conn := dialHist(t, addr, "r", Position{"e", 3})
	if r := nextRecovery(t, conn); r.recovered || r.top != (Position{}) {
		t.Fatalf("recovery %+v", r)
	}
	waitFor(t, 5*time.Second, "the join", func() bool { return srv.RoomLen("r") == 1 })
	pos, err := srv.PublishPos("r", ws.OpText, []byte("a b c")) // no envelope either
	if err != nil || pos != (Position{}) {
		t.Fatalf("PublishPos = %+v, %v", pos, err)
	}
	if _, b, err := conn.ReadMessage(); err != nil || string(b) != "a b c" {
		t.Fatalf("read %q, %v", b, err)
	}
}

// TestHistoryMemory: a room keeping 1,000 messages of 200 bytes costs
// its frames (204 B each, in the allocator's 208 B class) and its ring (64
// B an entry), 272 B a message, once for the room whatever its
// number of members: a delivery and a recovery share the kept frame.
func TestHistoryMemory(t *testing.T) {
	const msgs, size = 1000, 200
	srv, _ := startServer(t, histHandler{recorder: newRecorder()}, WithUpgradeHook(histHook),
		WithHistory(func(room string) History {
			if room == "r" {
				return History{Size: msgs}
			}
			return History{}
		}, nil))
	payload := []byte(strings.Repeat("x", size))
	for range msgs { // the loops' queues grow to a burst's size, and stay
		if err := srv.Publish("warm", ws.OpBinary, payload); err != nil {
			t.Fatal(err)
		}
	}
	heapNow := func() uint64 {
		waitFor(t, 5*time.Second, "the queues drained", func() bool {
			done := true
			srv.eachLoop(func(l *loop) { done = done && !l.pub.active.Load() })
			return done
		})
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	if _, err := srv.PublishPos("r", ws.OpBinary, payload); err != nil { // the room's history exists
		t.Fatal(err)
	}
	before := heapNow()
	for range msgs - 1 {
		if _, err := srv.PublishPos("r", ws.OpBinary, payload); err != nil {
			t.Fatal(err)
		}
	}
	grew := int64(heapNow()) - int64(before)
	_, kept, frames := srv.historyStats()
	per := float64(grew) / (msgs - 1)
	t.Logf("a room keeping %d messages of %d B: the heap grew %d B for %d of them (%.0f B a message; frames %d B)", kept, size, grew, msgs-1, per, frames)
	if kept != msgs || frames != msgs*(size+4) {
		t.Fatalf("kept %d messages, %d B of frames", kept, frames)
	}
	// What it holds by construction: each frame (204 B, in the
	// allocator's 208 B class) and a ring entry.
	h, _ := srv.hist.rooms.Get("r")
	held := (208*msgs + cap(h.ring)*int(unsafe.Sizeof(histEntry{}))) / msgs
	t.Logf("held by construction: %d B a message (ring of %d entries of %d B)", held, cap(h.ring), unsafe.Sizeof(histEntry{}))
	if held > 280 || per > 600 { // the heap's figure moves with the GC's timing: a loose bound
		t.Fatalf("%.0f B a message kept (%d B by construction): more than its frame and entry", per, held)
	}
}

// historyFlooder publishes every binary message it gets to room "r" and
// echoes the rest (the probe's).
type historyFlooder struct{ BaseHandler }

func (historyFlooder) OnMessage(c *Conn, op ws.OpCode, p []byte) {
	if op == ws.OpBinary {
		_, _ = c.Server().PublishPos("r", op, p)
		return
	}
	_ = c.WriteMessage(op, p)
}

// TestBoundsHistoryFlood: peers whose every message is published to a
// room keeping a deep history (100,000 messages) fill it only to
// WithHistoryBytes: 32 MiB of 1 KiB messages from 4 sockets, bound 4
// MiB. The room then keeps its newest messages, about 4 MiB of them, and
// the heap stays near that, while another connection is served. (The
// flooders keep their sockets full faster than the loops publish: this
// test is also the one that found a loop reading such a socket and
// nothing else; see noteRead.)
func TestBoundsHistoryFlood(t *testing.T) {
	const bound = 4 << 20
	srv, addr := startServer(t, historyFlooder{}, WithHistoryBytes(bound), WithMaxQueuedBytes(4<<20),
		WithHistory(func(string) History { return History{Size: 100000} }, nil))
	probe := startProbe(t, rawDialer(addr))
	msg := clientFrame(ws.OpBinary, true, bytes.Repeat([]byte{'h'}, 1024))
	batch := bytes.Repeat(msg, 64)
	mem := startMemPeak(t)
	f := newFlood(probe, 32<<20)
	f.run(t, 4, func(int) {
		c := upgradeRaw(t, addr)
		go io.Copy(io.Discard, c)
		for f.more() {
			if _, err := c.Write(batch); err != nil {
				t.Errorf("write: %v", err)
				return
			}
			f.add(len(batch))
		}
	})
	waitFor(t, 20*time.Second, "the flood published", func() bool {
		pos, _ := srv.RoomPosition("r")
		return pos.Offset >= uint64(f.sent.Load()/int64(len(msg)))
	})
	rooms, kept, frames := srv.historyStats()
	t.Logf("%d MiB sent; %d room keeps %d messages, %s of frames", f.sent.Load()>>20, rooms, kept, mib(int64(frames)))
	if frames > bound || frames < bound-2048 || kept > bound/1024 {
		t.Errorf("the history keeps %d messages, %d bytes: want the newest, up to %d bytes", kept, frames, bound)
	}
	// The history's bound, and each loop's queue (4 MiB, and as much again
	// in the batch it applies) holding frames refused or not yet kept.
	mem.check(t, 6*bound, "a room's history flooded through its publishes")
	probe.end(t)
}
