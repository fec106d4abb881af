package engine

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// roomHandler joins each connection to the room named by its path
// ("/room/3") and binds the key in its query ("?user=alice").
type roomHandler struct {
	*recorder
}

func (h roomHandler) OnOpen(c *Conn) {
	h.recorder.OnOpen(c)
	if v, ok := c.Value().(upgradeInfo); ok {
		if v.room != "" {
			_ = c.Join(v.room)
		}
		if v.user != "" {
			_ = c.Bind(v.user)
		}
	}
}

type upgradeInfo struct{ room, user string }

// roomHook copies the room and user out of the request (which is only
// valid during the hook).
func roomHook(r *Request) (any, error) {
	var info upgradeInfo
	if p := string(r.Path()); len(p) > len("/room/") && p[:len("/room/")] == "/room/" {
		info.room = p[len("/room/"):]
	}
	if q := string(r.Query()); len(q) > len("user=") && q[:len("user=")] == "user=" {
		info.user = q[len("user="):]
	}
	return info, nil
}

// dialPath upgrades a raw connection on path from local address ip and
// returns a reader positioned after the 101.
func dialPath(t testing.TB, addr, path string, ip net.IP) (net.Conn, *bufio.Reader) {
	t.Helper()
	return dialPathTLS(t, addr, path, ip, nil)
}

// dialPathTLS is dialPath over TLS with cfg (plain TCP when cfg is nil).
func dialPathTLS(t testing.TB, addr, path string, ip net.IP, cfg *tls.Config) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		c = tls.Client(c, cfg)
	}
	t.Cleanup(func() { c.Close() })
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReaderSize(c, 64<<10)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for line := ""; line != "\r\n"; {
		if line, err = br.ReadString('\n'); err != nil {
			t.Fatalf("upgrade: %v", err)
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, br
}

// readMessage reads one unfragmented server frame, skipping pings.
func readMessage(br *bufio.Reader) (ws.OpCode, []byte, error) {
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			return 0, nil, err
		}
		p := make([]byte, h.Length)
		if _, err = io.ReadFull(br, p); err != nil || h.OpCode != ws.OpPing {
			return h.OpCode, p, err
		}
	}
}

// TestPublishRooms: 5,000 clients in 10 rooms; each room gets 100 messages
// from 5 publishers at once. Every member receives exactly its room's
// messages, each publisher's in order.
func TestPublishRooms(t *testing.T) {
	const rooms, perRoom, publishers, perPublisher = 10, 500, 5, 20
	srv, addr := startServer(t, roomHandler{newRecorder()}, WithUpgradeHook(roomHook), WithHandshakeTimeout(time.Minute))
	type client struct {
		room int
		br   *bufio.Reader
	}
	clients := make([]client, 0, rooms*perRoom)
	for i := range rooms * perRoom {
		room := i % rooms
		_, br := dialPath(t, addr, fmt.Sprintf("/room/%d", room), clientIPs[i%len(clientIPs)])
		clients = append(clients, client{room, br})
	}
	waitFor(t, 10*time.Second, "every join", func() bool {
		for r := range rooms {
			if srv.RoomLen(fmt.Sprint(r)) != perRoom {
				return false
			}
		}
		return true
	})

	// Readers check what arrives: 8 bytes room, publisher, sequence.
	var wg sync.WaitGroup
	var bad atomic.Value
	for _, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := make([]int, publishers)
			for range publishers * perPublisher {
				op, p, err := readMessage(cl.br)
				if err != nil || op != ws.OpBinary || len(p) != 8 {
					bad.CompareAndSwap(nil, fmt.Errorf("read %v len %d: %v", op, len(p), err))
					return
				}
				room, pub, seq := int(p[0]), int(p[1]), int(binary.BigEndian.Uint32(p[4:]))
				if room != cl.room {
					bad.CompareAndSwap(nil, fmt.Errorf("member of room %d got room %d's message", cl.room, room))
					return
				}
				if seq != next[pub] {
					bad.CompareAndSwap(nil, fmt.Errorf("publisher %d: got seq %d, want %d", pub, seq, next[pub]))
					return
				}
				next[pub]++
			}
		}()
	}
	var pubs sync.WaitGroup
	for r := range rooms {
		for p := range publishers {
			pubs.Add(1)
			go func() {
				defer pubs.Done()
				for seq := range perPublisher {
					msg := []byte{byte(r), byte(p), 0, 0, 0, 0, 0, 0}
					binary.BigEndian.PutUint32(msg[4:], uint32(seq))
					if err := srv.Publish(fmt.Sprint(r), ws.OpBinary, msg); err != nil {
						bad.CompareAndSwap(nil, err)
					}
				}
			}()
		}
	}
	pubs.Wait()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("members did not receive every message within 60s")
	}
	if err := bad.Load(); err != nil {
		t.Fatal(err)
	}
	// Nobody received anything more (such as another room's message).
	for i, cl := range clients[:50] {
		if cl.br.Buffered() > 0 {
			t.Fatalf("client %d has %d extra bytes", i, cl.br.Buffered())
		}
	}
	if st := srv.Stats(); st.MessagesOut < rooms*perRoom*publishers*perPublisher {
		t.Fatalf("Stats.MessagesOut = %d", st.MessagesOut)
	}
}

// TestSlowConsumer: a member that stops reading while its room receives
// 100 MiB stays under the outbound cap, the policy fires, and the other
// members receive everything.
func TestSlowConsumer(t *testing.T) {
	for _, policy := range []SlowConsumerPolicy{DropMessage, ClosePolicyViolation} {
		t.Run(fmt.Sprint(policy), func(t *testing.T) { testSlowConsumer(t, policy) })
	}
}

func testSlowConsumer(t *testing.T, policy SlowConsumerPolicy) {
	const capBytes = 1 << 20
	const msgSize, total = 64 << 10, 100 << 20
	rec := newRecorder()
	srv, addr := startServer(t, roomHandler{rec}, WithUpgradeHook(roomHook),
		WithMaxOutboundBytes(capBytes), WithSlowConsumerPolicy(policy))
	slow, _ := dialPath(t, addr, "/room/r", clientIPs[0])
	_ = slow.(*net.TCPConn).SetReadBuffer(4096) // and never read
	const fast = 4
	var received [fast]atomic.Int64
	var readerFailed atomic.Bool
	var wg sync.WaitGroup
	for i := range fast {
		_, br := dialPath(t, addr, "/room/r", clientIPs[1])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < total/msgSize; n++ {
				if op, p, err := readMessage(br); err != nil || op != ws.OpBinary || len(p) != msgSize || p[0] != byte(n) {
					first := -1
					if len(p) > 0 {
						first = int(p[0])
					}
					t.Errorf("fast reader %d: message %d: %v len %d first byte %d, err %v", i, n, op, len(p), first, err)
					readerFailed.Store(true)
					return
				}
				received[i].Add(1)
			}
		}()
	}
	waitFor(t, 5*time.Second, "joins", func() bool { return srv.RoomLen("r") == fast+1 })
	var slowConn *Conn
	for _, c := range srv.RoomMembers("r") {
		if c.RemoteAddr().(*net.TCPAddr).IP.Equal(clientIPs[0]) {
			slowConn = c
		}
	}
	maxBuffered := 0
	msg := make([]byte, msgSize)
	for n := 0; n < total/msgSize && !readerFailed.Load(); n++ {
		for !readerFailed.Load() { // keep the fast readers within 8 messages (512 KiB, half the cap) of the publisher
			lag := false
			for i := range fast {
				if int64(n)-received[i].Load() > 8 {
					lag = true
				}
			}
			if !lag {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
		msg[0] = byte(n)
		if err := srv.Publish("r", ws.OpBinary, msg); err != nil {
			t.Fatal(err)
		}
		maxBuffered = max(maxBuffered, slowConn.BufferedAmount())
	}
	wg.Wait()
	t.Logf("slow consumer's outbound bytes peaked at %d (cap %d)", maxBuffered, capBytes)
	if maxBuffered > capBytes {
		t.Fatalf("outbound bytes for the slow consumer reached %d, over the cap %d", maxBuffered, capBytes)
	}
	st := srv.Stats()
	switch policy {
	case DropMessage:
		if st.Dropped == 0 {
			t.Fatal("no message was dropped for the slow consumer")
		}
		t.Logf("dropped %d messages", st.Dropped)
	case ClosePolicyViolation:
		ce := rec.nextClose(t) // at the close timeout: the slow peer cannot read the close frame
		if ce.Code != 1008 || !errors.Is(ce, ErrSlowConsumer) {
			t.Fatalf("OnClose got %+v, want 1008 slow consumer", ce)
		}
	}
}

func TestSendToKey(t *testing.T) {
	rec := newRecorder()
	srv, addr := startServer(t, roomHandler{rec}, WithUpgradeHook(roomHook))
	alice, abr := dialPath(t, addr, "/?user=alice", clientIPs[0])
	_, bbr := dialPath(t, addr, "/?user=bob", clientIPs[0])
	waitFor(t, 5*time.Second, "binds", func() bool {
		_, a := srv.ConnByKey("alice")
		_, b := srv.ConnByKey("bob")
		return a && b
	})
	if err := srv.SendToKey("bob", ws.OpText, []byte("hi bob")); err != nil {
		t.Fatal(err)
	}
	if err := srv.SendToKey("alice", ws.OpText, []byte("hi alice")); err != nil {
		t.Fatal(err)
	}
	if _, p, _ := readMessage(abr); string(p) != "hi alice" {
		t.Fatalf("alice got %q", p)
	}
	if _, p, _ := readMessage(bbr); string(p) != "hi bob" {
		t.Fatalf("bob got %q", p)
	}
	if err := srv.SendToKey("carol", ws.OpText, []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("SendToKey to nobody: %v", err)
	}
	alice.Close()
	rec.nextClose(t)
	if err := srv.SendToKey("alice", ws.OpText, []byte("x")); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("SendToKey after close: %v, want ErrNotConnected", err)
	}
	if _, ok := srv.ConnByKey("alice"); ok {
		t.Fatal("closed connection still bound")
	}
	// By id, and broadcast.
	bob, _ := srv.ConnByKey("bob")
	if c, ok := srv.Conn(bob.ID()); !ok || c != bob {
		t.Fatal("lookup by id failed")
	}
	if n, err := srv.SendTo([]uint64{bob.ID(), 999999}, ws.OpText, []byte("by id")); err != nil || n != 1 {
		t.Fatalf("SendTo: %d %v", n, err)
	}
	if _, p, _ := readMessage(bbr); string(p) != "by id" {
		t.Fatalf("bob got %q", p)
	}
	if err := srv.Broadcast(ws.OpText, []byte("everyone")); err != nil {
		t.Fatal(err)
	}
	if _, p, _ := readMessage(bbr); string(p) != "everyone" {
		t.Fatalf("bob got %q", p)
	}
}

// TestPublishAllocs: a publish costs a few allocations (the shared frame,
// and gnet's EventLoop.Execute, which allocates a closure and a queue node
// for each loop it reaches), whatever the number of members: the loop's walk
// writes to every member without allocating.
func TestPublishAllocs(t *testing.T) {
	per := map[int]float64{}
	for _, members := range []int{10, 500} {
		// A long tick keeps the wheel's own hand-offs out of the count.
		srv, addr := startServer(t, roomHandler{newRecorder()}, WithUpgradeHook(roomHook), WithTick(time.Second))
		room := fmt.Sprintf("allocs%d", members)
		readers := make([]*bufio.Reader, members)
		for i := range readers {
			_, readers[i] = dialPath(t, addr, "/room/"+room, net.IPv4(127, 0, 0, 1))
		}
		waitFor(t, 5*time.Second, "members", func() bool { return srv.RoomLen(room) == members })
		msg := make([]byte, 64)
		buf := make([]byte, 2+len(msg))
		round := func() {
			if err := srv.Publish(room, ws.OpBinary, msg); err != nil {
				t.Fatal(err)
			}
			for _, r := range readers {
				if _, err := io.ReadFull(r, buf); err != nil {
					t.Fatal(err)
				}
			}
		}
		for range 100 {
			round()
		}
		per[members] = testing.AllocsPerRun(500, round)
		t.Logf("%d members: %.2f allocations per publish", members, per[members])
	}
	// 1 frame + at most 4 per loop hand-off (2 loops); one per member would be 500.
	if limit := 1.0 + 4*2; per[10] > limit || per[500] > limit {
		t.Fatalf("allocations per publish: %v with 10 members, %v with 500; want at most %v", per[10], per[500], limit)
	}
}

// TestBindEmptyKey: the empty key is refused, so that no closed
// connection stays bound to it (it once stayed in the key registry for the
// server's life: ConnByKey("") returned a closed connection).
func TestBindEmptyKey(t *testing.T) {
	h := &connGrab{ch: make(chan *Conn, 1)}
	srv, addr := startServer(t, h)
	c := upgradeRaw(t, addr)
	sc := <-h.ch
	if err := sc.Bind(""); !errors.Is(err, ErrEmptyKey) {
		t.Fatalf("Bind(\"\"): %v, want ErrEmptyKey", err)
	}
	if err := sc.Bind("k"); err != nil {
		t.Fatal(err)
	}
	_ = sc.Bind("") // refused: the connection keeps "k"
	if got, ok := srv.ConnByKey("k"); !ok || got != sc || sc.Key() != "k" {
		t.Fatalf("after a refused Bind(\"\"): ConnByKey(k) = %v %v, Key %q", got, ok, sc.Key())
	}
	c.Close()
	waitFor(t, 5*time.Second, "the connection closed", func() bool { return srv.Connections() == 0 })
	for _, key := range []string{"", "k"} {
		if got, ok := srv.ConnByKey(key); ok {
			t.Fatalf("ConnByKey(%q) returns connection %d after it closed", key, got.ID())
		}
	}
}
