package natsbroker

import (
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/wsloop/wsloop/engine"
)

// Flood tests: each buffer of the broker that traffic from others can
// grow is driven past its bound by real traffic (WebSocket clients whose
// messages a handler publishes, through a real NATS server), while the
// process's live heap is watched and other deliveries are checked.

// relay publishes every message it gets to room "r", as a chat's handler
// does.
type relay struct{ member }

func (relay) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) { _ = c.Server().Publish("r", op, p) }

// heapInUse is the live heap, after collecting garbage.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// floodPayload is client k's message in a flood: random bytes, of an
// alphabet of 256 letters (deflate cannot shrink them, and gives up on
// them quickly) or of fewer (deflate at level 9 then spends about 3 ms
// on 60 KiB of 8 letters, searching among the many short matches).
func floodPayload(k, size, letters int) []byte {
	p := make([]byte, size)
	_, _ = rand.NewChaCha8([32]byte{byte(k)}).Read(p)
	for i := range p {
		p[i] = byte(int(p[i]) % letters)
	}
	binary.LittleEndian.PutUint64(p, uint64(k))
	return p
}

// flood sends total bytes of size-byte messages from n clients of node a
// (each client repeats floodPayload), and returns once they are written.
func flood(t *testing.T, a *node, n, size, total, letters int) {
	t.Helper()
	var wg sync.WaitGroup
	for k := range n {
		c, _, err := websocket.DefaultDialer.Dial("ws://"+a.addr+"/", http.Header{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		p := floodPayload(k, size, letters)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range total / n / size {
				if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
					t.Errorf("flood: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// sink is a client that reads and discards everything, counting it.
type sink struct {
	c    *websocket.Conn
	msgs atomic.Int64
}

func dialSink(t *testing.T, n *node, query string, compress bool) *sink {
	t.Helper()
	d := websocket.Dialer{EnableCompression: compress}
	c, _, err := d.Dial("ws://"+n.addr+"/?"+query, http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s := &sink{c: c}
	go func() {
		for {
			_, r, err := c.NextReader()
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				return
			}
			s.msgs.Add(1)
		}
	}()
	return s
}

// The broker inbound: messages from the bus that wait to be delivered on
// a node. B's member negotiated compression, and B compresses each message
// from the bus (at level 9, bytes that make it work) before its loops get
// it, slower than NATS brings them: B falls behind, as a node short of CPU
// does, and what passes WithPendingBytes is dropped and counted. The process's live heap stays within the bound's sum; B
// keeps serving its own connections meanwhile, and the bus's once it has
// caught up.
func TestFloodBrokerInbound(t *testing.T) {
	const (
		size      = 60 << 10 // each message, under the bus's max_payload
		pendBytes = 8 << 20
		limit     = 48 << 20 // the heap's growth allowed: see below
	)
	// B compresses 8 letters at about 300 messages a second, A puts
	// several times as many on the bus. (Under the race detector B is
	// slow enough with any bytes.)
	total, letters := 384<<20, 8
	if raceEnabled {
		total, letters = 64<<20, 256
	}
	ns := runNATSWith(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, MaxPayload: 64 << 10})
	// A's send buffer is small, to keep this to B's side: A floods the bus
	// faster than B takes it in whatever the size.
	a := startNodeWith(t, relay{}, ns.ClientURL(), []Option{WithSendBuffer(2 << 20)})
	b := startNode(t, ns.ClientURL(), []Option{WithPendingBytes(pendBytes)},
		engine.WithCompression(true), engine.WithCompressionLevel(9))
	m := dialSink(t, b, "room=r", true)
	local := dial(t, b, "room=local")
	waitFor(t, "B's interest", func() bool { return natsInterest(ns, roomSubject("r")) == 1 })

	before := heapInUse()
	start := time.Now()
	flood(t, a, 4, size, total, letters)
	sent := time.Since(start)
	// B is still behind: what it holds now is at its peak. The bound:
	// WithPendingBytes (8 MiB) on B, the few messages that arrive while B
	// compresses one, and what B's loops hold for its member (its outbound
	// cap, 4 MiB); A's send buffer (2 MiB, and as much in flight); 48 MiB
	// leaves room for the NATS server's buffers (about 16 MiB measured) and
	// the clients'. Measured here: 14 to 28 MiB; without the bound, 104 to
	// 130 MiB (B delivers about one message in ten meanwhile).
	grew := int64(heapInUse()) - int64(before)
	st := b.srv.Stats().Broker
	t.Logf("flooded %d MiB in %v; A put %d messages on the bus (%d failed); B delivered %d, dropped %d (its loops refused %d), its member has read %d; live heap grew %.1f MiB",
		total>>20, sent.Round(time.Millisecond), a.srv.Stats().Broker.Sent, a.srv.Stats().Broker.Failed,
		st.Received, st.Dropped, b.srv.Stats().QueueFull, m.msgs.Load(), float64(grew)/(1<<20))
	if grew > limit {
		t.Errorf("live heap grew by %d MiB under the flood, over %d MiB", grew>>20, limit>>20)
	}
	if st.Dropped == 0 {
		t.Fatalf("B dropped nothing: the flood did not pass its bound (%+v)", st)
	}
	// B serves its own connections meanwhile, new ones too.
	late := dial(t, b, "room=local")
	waitFor(t, "the late member's join", func() bool { return b.srv.Local().RoomLen("local") == 2 })
	if err := b.srv.Publish("local", ws.OpText, []byte("here")); err != nil {
		t.Fatal(err)
	}
	for _, cl := range []*client{local, late} {
		if p := cl.next(t); string(p) != "here" {
			t.Fatalf("B's local member got %q", p)
		}
	}
	// Once B has caught up with what A put on the bus, messages from the
	// bus reach it again.
	waitFor(t, "B to catch up", func() bool {
		st := b.srv.Stats().Broker
		return st.Received+st.Dropped+st.Partial >= a.srv.Stats().Broker.Sent
	})
	got := m.msgs.Load()
	if err := a.srv.Publish("r", ws.OpText, []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the member to get a message after the flood", func() bool { return m.msgs.Load() > got })
}

// stallProxy forwards TCP connections to target until it is stalled: then
// it stops reading from either side, without closing anything, as a NATS
// server that hangs does.
type stallProxy struct {
	ln      net.Listener
	target  string
	stalled atomic.Bool
}

func startStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	var conns sync.WaitGroup
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		p.stalled.Store(false)
		conns.Wait()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			conns.Add(2)
			go func() { defer conns.Done(); p.pipe(s, c, done) }()
			go func() { defer conns.Done(); p.pipe(c, s, done) }()
		}
	}()
	return p
}

func (p *stallProxy) pipe(dst, src net.Conn, done <-chan struct{}) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		for p.stalled.Load() {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		_ = src.SetReadDeadline(time.Now().Add(50 * time.Millisecond)) // notice a stall while waiting
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			continue
		}
		if err != nil {
			return
		}
	}
}

// relayCounting is relay, counting the publishes the broker refused
// because its send buffer was full.
type relayCounting struct {
	member
	full *atomic.Int64
}

func (r relayCounting) OnMessage(c *engine.Conn, op ws.OpCode, p []byte) {
	if err := c.Server().Publish("r", op, p); errors.Is(err, errFull) {
		r.full.Add(1)
	}
}

// The broker outbound: messages waiting to go on the bus. A's NATS server
// hangs (a proxy stops reading) while A's clients flood it, and A's
// broker waits for it (a long FlusherTimeout; by default it would give up
// after 2 s and fail the rest as disconnected). A's send buffer fills to
// WithSendBuffer and every publish after that fails at once with an error
// the caller sees; nothing blocks, the process's live heap stays within
// the bound's sum, A's own members get the messages, and once NATS answers
// again the other node gets A's messages.
func TestFloodBrokerOutbound(t *testing.T) {
	const (
		size    = 60 << 10
		sendBuf = 8 << 20
		limit   = 48 << 20
	)
	total := 256 << 20
	if raceEnabled {
		total = 64 << 20
	}
	ns := runNATS(t, -1)
	proxy := startStallProxy(t, strings.TrimPrefix(ns.ClientURL(), "nats://"))
	var full atomic.Int64
	a := startNodeWith(t, relayCounting{full: &full}, "nats://"+proxy.ln.Addr().String(),
		[]Option{WithSendBuffer(sendBuf), WithNATSOptions(nats.FlusherTimeout(time.Minute), nats.PingInterval(time.Minute))})
	b := startNode(t, ns.ClientURL(), nil)
	local := dialSink(t, a, "room=r", false)
	remote := dialSink(t, b, "room=r", false)
	waitFor(t, "A's and B's interest", func() bool { return natsInterest(ns, roomSubject("r")) == 2 })
	waitFor(t, "A connected", func() bool { return a.srv.Stats().Broker.Connected })

	before := heapInUse()
	proxy.stalled.Store(true)
	floodDone := make(chan struct{})
	go func() { defer close(floodDone); flood(t, a, 4, size, total, 256) }()
	select {
	case <-floodDone:
	case <-time.After(2 * time.Minute):
		t.Fatal("the flood did not end: A's handlers blocked on its broker")
	}
	// NATS still hangs: A's send buffer is full now. The bound: the send
	// buffer (8 MiB, up to a quarter more as it grows) and the batch being
	// written (as much), the NATS client's write buffer, A's loops' queues
	// and its local member's outbound cap (4 MiB); 48 MiB leaves room for
	// the clients' buffers. Measured here: 12 to 15 MiB; without the
	// bound, 282 MiB.
	grew := int64(heapInUse()) - int64(before)
	st := a.srv.Stats().Broker
	t.Logf("flooded %d MiB with NATS hung: A's broker sent %d, failed %d (%d with a full buffer); A's local member got %d; live heap grew %.1f MiB",
		total>>20, st.Sent, st.Failed, full.Load(), local.msgs.Load(), float64(grew)/(1<<20))
	if grew > limit {
		t.Errorf("live heap grew by %d MiB under the flood, over %d MiB", grew>>20, limit>>20)
	}
	if full.Load() == 0 {
		t.Fatalf("no publish failed for a full send buffer: the flood did not pass its bound (%+v)", st)
	}
	if local.msgs.Load() == 0 {
		t.Fatal("A's local member got nothing while NATS hung")
	}
	// NATS answers again: what A had queued goes out, and new messages
	// reach B.
	proxy.stalled.Store(false)
	got := remote.msgs.Load()
	waitFor(t, "B to get A's messages", func() bool {
		_ = a.srv.Publish("r", ws.OpText, []byte("after"))
		time.Sleep(20 * time.Millisecond)
		return remote.msgs.Load() > got
	})
}
