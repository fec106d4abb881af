package natsbroker

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/wsloop/wsloop/engine"
)

// runJetStream starts an in-process NATS server with JetStream, storing in
// dir (a temporary directory of the test's unless given).
func runJetStream(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	return runNATSWith(t, &server.Options{Host: "127.0.0.1", Port: port, NoSigs: true, NoLog: true, JetStream: true, StoreDir: dir})
}

// histEnv is the tests' envelope: "epoch offset payload" ("-" for no
// epoch).
func histEnv(dst []byte, _ string, pos engine.Position, p []byte) []byte {
	e := pos.Epoch
	if e == "" {
		e = "-"
	}
	dst = append(dst, e...)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, pos.Offset, 10)
	dst = append(dst, ' ')
	return append(dst, p...)
}

// recoverer recovers each connection into the room its request names
// from the position it gives (?room=r&epoch=e&offset=n), then sends
// "R recovered missed epoch top".
type recoverer struct{ engine.BaseHandler }

type histReq struct {
	room  string
	since engine.Position
}

// OnMessage: "leave ROOM" leaves it.
func (recoverer) OnMessage(c *engine.Conn, _ ws.OpCode, p []byte) {
	if room, ok := strings.CutPrefix(string(p), "leave "); ok {
		_ = c.Leave(room)
		_ = c.WriteMessage(ws.OpText, []byte("R 0 0 - 0")) // done (a recovery line, as readHist knows it)
	}
}

func histHook(r *engine.Request) (any, error) {
	off, _ := strconv.ParseUint(r.QueryValue("offset"), 10, 64)
	return histReq{room: r.QueryValue("room"), since: engine.Position{Epoch: r.QueryValue("epoch"), Offset: off}}, nil
}

func (recoverer) OnOpen(c *engine.Conn) {
	req := c.Value().(histReq)
	rec, err := c.Recover(req.room, req.since)
	if err != nil {
		_ = c.Close(ws.StatusInternalServerError, err.Error())
		return
	}
	b := 0
	if rec.Recovered {
		b = 1
	}
	e := rec.Top.Epoch
	if e == "" {
		e = "-"
	}
	_ = c.WriteMessage(ws.OpText, fmt.Appendf(nil, "R %d %d %s %d", b, rec.Missed, e, rec.Top.Offset))
}

// publishSeen publishes payload to room through the stream (PublishPos)
// and waits until node n has taken it back from the stream.
func publishSeen(t *testing.T, n *node, room, payload string) engine.Position {
	t.Helper()
	pos, err := n.srv.PublishPos(room, ws.OpText, []byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, payload+" taken back from the stream", func() bool { hz, _ := n.b.HistoryHorizon(); return hz.Offset >= pos.Offset })
	return pos
}

// startHistNode runs a node whose rooms keep history, with a broker
// keeping it in JetStream.
func startHistNode(t *testing.T, natsURL string, size int, opts ...Option) *node {
	t.Helper()
	opts = append([]Option{WithHistory(HistoryConfig{MaxPerRoom: 100000})}, opts...)
	n := startNodeWith(t, recoverer{}, natsURL, opts,
		engine.WithHistory(func(string) engine.History { return engine.History{Size: size} }, histEnv),
		engine.WithUpgradeHook(histHook))
	waitFor(t, "the node to catch up with the stream", func() bool { _, ok := n.b.HistoryHorizon(); return ok })
	return n
}

type histMsg struct {
	pos       engine.Position
	payload   string
	recovery  bool
	recovered bool
	missed    int
	top       engine.Position
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
		return histMsg{recovery: true, recovered: f[1] == "1", missed: missed, top: engine.Position{Epoch: f[3], Offset: top}}, nil
	}
	if len(f) != 3 {
		return histMsg{}, fmt.Errorf("malformed message %q", b)
	}
	off, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return histMsg{}, fmt.Errorf("malformed message %q", b)
	}
	if f[0] == "-" {
		f[0] = ""
	}
	return histMsg{pos: engine.Position{Epoch: f[0], Offset: off}, payload: f[2]}, nil
}

func dialHist(t testing.TB, addr, room string, since engine.Position) *websocket.Conn {
	t.Helper()
	q := url.Values{"room": {room}, "epoch": {since.Epoch}, "offset": {strconv.FormatUint(since.Offset, 10)}}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	conn, _, err := d.Dial("ws://"+addr+"/?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	return conn
}

// nextRecovery reads the recovery line, which comes after the missed
// messages: those are returned with it.
func nextRecovery(t *testing.T, conn *websocket.Conn) (histMsg, []histMsg) {
	t.Helper()
	var missed []histMsg
	for {
		m, err := readHist(conn)
		if err != nil {
			t.Fatal(err)
		}
		if m.recovery {
			return m, missed
		}
		missed = append(missed, m)
	}
}

// TestHistoryClusterRecoverUnderPublishing: three nodes keep one room's
// history in JetStream while two publishers on two nodes publish a
// continuous stream (Server.Publish, which does not wait). Clients read a
// random number of messages, drop their TCP connection without a close
// frame, and come back, to a node picked at random, with the position of
// the last message they got. Every recovery must say it recovered, and
// every client must see, over all its connections, exactly the room's
// messages from its first one to the last, in the stream's order (as an
// observer that never left saw them), each once.
func TestHistoryClusterRecoverUnderPublishing(t *testing.T) {
	const (
		clients = 12
		perPub  = 1500
	)
	ns := runJetStream(t, -1, "")
	var nodes []*node
	for range 3 {
		nodes = append(nodes, startHistNode(t, ns.ClientURL(), 10000))
	}
	observer := dialHist(t, nodes[0].addr, "live", engine.Position{})
	if r, _ := nextRecovery(t, observer); r.recovered || r.top.Epoch == "" {
		t.Fatalf("a first connection: %+v, want not recovered with the stream's epoch", r)
	}

	var (
		pubWG sync.WaitGroup
		done  = make(chan struct{})
		errs  = make(chan error, clients+2)
	)
	for p := range 2 {
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			for i := range perPub {
				if err := nodes[p].srv.Publish("live", ws.OpText, fmt.Appendf(nil, "p%d-%d", p, i)); err != nil {
					errs <- err
					return
				}
				if i%50 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	go func() { pubWG.Wait(); close(done) }()

	type seen struct{ offs []uint64 }
	results := make([]seen, clients)
	var wg sync.WaitGroup
	for ci := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(ci), 7))
			var since engine.Position
			first := true
			for {
				n := nodes[rng.IntN(len(nodes))]
				conn := dialHist(t, n.addr, "live", since)
				r, missed := nextRecovery(t, conn)
				if !first && !r.recovered {
					errs <- fmt.Errorf("client %d: not recovered from %+v on a node at %+v", ci, since, r.top)
					conn.Close()
					return
				}
				if first {
					since = r.top
					first = false
				}
				if len(missed) != r.missed {
					errs <- fmt.Errorf("client %d: %d missed messages delivered, recovery says %d", ci, len(missed), r.missed)
				}
				msgs := missed
				stopAt := rng.IntN(300)
				finished := false
				select {
				case <-done:
					finished = true
				default:
				}
				for i := 0; finished || i < stopAt; i++ {
					if len(msgs) == 0 {
						if finished {
							_ = conn.SetReadDeadline(time.Now().Add(time.Second))
						}
						m, err := readHist(conn)
						if err != nil {
							if finished {
								break // quiet for a second after the publishers ended: the end
							}
							errs <- fmt.Errorf("client %d: %v", ci, err)
							return
						}
						msgs = append(msgs, m)
					}
					m := msgs[0]
					msgs = msgs[1:]
					if m.pos.Epoch != since.Epoch || m.pos.Offset <= since.Offset {
						errs <- fmt.Errorf("client %d: got %+v after %+v", ci, m.pos, since)
						return
					}
					results[ci].offs = append(results[ci].offs, m.pos.Offset)
					since = m.pos
				}
				conn.UnderlyingConn().Close() // no close frame
				if finished {
					return
				}
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	// The observer's view: every message of the room, in stream order.
	var all []uint64
	_ = observer.SetReadDeadline(time.Now().Add(10 * time.Second))
	for len(all) < 2*perPub {
		m, err := readHist(observer)
		if err != nil {
			for i, n := range nodes {
				t.Logf("node %d: %+v", i, n.srv.Stats().Broker)
			}
			jsz, _ := ns.Jsz(&server.JSzOptions{Streams: true})
			t.Logf("jetstream: %d messages", jsz.Messages)
			t.Fatalf("observer after %d messages: %v", len(all), err)
		}
		all = append(all, m.pos.Offset)
	}
	index := make(map[uint64]int, len(all))
	for i, o := range all {
		index[o] = i
	}
	for ci, r := range results {
		if len(r.offs) == 0 {
			t.Errorf("client %d got nothing", ci)
			continue
		}
		start, ok := index[r.offs[0]]
		if !ok {
			t.Fatalf("client %d got offset %d, which the observer did not", ci, r.offs[0])
		}
		want := all[start:]
		if len(r.offs) != len(want) {
			t.Errorf("client %d got %d messages from offset %d, want %d", ci, len(r.offs), r.offs[0], len(want))
			continue
		}
		for i := range want {
			if r.offs[i] != want[i] {
				t.Errorf("client %d: message %d is offset %d, want %d", ci, i, r.offs[i], want[i])
				break
			}
		}
	}
}

// TestHistoryClusterNewNodeReplays: a node started after messages were
// published replays the stream and recovers a client from a position
// another node gave, with the same positions; PublishPos waits for the
// stream's position, which every node delivers.
func TestHistoryClusterNewNodeReplays(t *testing.T) {
	ns := runJetStream(t, -1, "")
	a := startHistNode(t, ns.ClientURL(), 100)
	c := dialHist(t, a.addr, "r", engine.Position{})
	r, _ := nextRecovery(t, c)
	var last engine.Position
	for i := range 5 {
		pos, err := a.srv.PublishPos("r", ws.OpText, fmt.Appendf(nil, "m%d", i))
		if err != nil {
			t.Fatal(err)
		}
		m, err := readHist(c)
		if err != nil {
			t.Fatal(err)
		}
		if m.pos != pos || m.payload != fmt.Sprintf("m%d", i) {
			t.Fatalf("got %+v %q, PublishPos said %+v", m.pos, m.payload, pos)
		}
		if pos.Epoch != r.top.Epoch || pos.Offset <= last.Offset {
			t.Fatalf("position %+v after %+v (epoch %q)", pos, last, r.top.Epoch)
		}
		if i == 1 {
			last = pos // the client leaves after m1
		}
	}
	b := startHistNode(t, ns.ClientURL(), 100)
	c2 := dialHist(t, b.addr, "r", last)
	r2, missed := nextRecovery(t, c2)
	if !r2.recovered || r2.missed != 3 || len(missed) != 3 {
		t.Fatalf("on a new node: %+v with %d messages, want 3 recovered", r2, len(missed))
	}
	for i, m := range missed {
		if m.payload != fmt.Sprintf("m%d", i+2) {
			t.Fatalf("missed message %d is %q", i, m.payload)
		}
	}
	// Edges: another epoch; a position ahead of the node (as one that
	// another node, ahead of this one, gave), which joins once the node
	// has caught up with it and gets what follows it; one older than the
	// room's history on a node that keeps 2 messages.
	other := dialHist(t, b.addr, "r", engine.Position{Epoch: "other", Offset: 1})
	if r, missed := nextRecovery(t, other); r.recovered || len(missed) != 0 || r.top != r2.top {
		t.Fatalf("from another epoch: %+v with %d messages, want not recovered at %+v", r, len(missed), r2.top)
	}
	ahead := engine.Position{Epoch: last.Epoch, Offset: r2.top.Offset + 3}
	ca := dialHist(t, b.addr, "r", ahead)
	if r, missed := nextRecovery(t, ca); !r.recovered || len(missed) != 0 || r.top != ahead {
		t.Fatalf("from ahead of the node: %+v with %d messages, want recovered, waiting at %+v", r, len(missed), ahead)
	}
	for i := range 5 {
		if _, err := a.srv.PublishPos("r", ws.OpText, fmt.Appendf(nil, "n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"n3", "n4"} {
		if m, err := readHist(ca); err != nil || m.payload != want || m.pos.Offset <= ahead.Offset {
			t.Fatalf("the connection that waited got %+v, %v; want %s after %+v", m, err, want, ahead)
		}
	}
	if m, err := readHist(other); err != nil || m.payload != "n0" {
		t.Fatalf("the connection not recovered got %+v, %v; want the live n0", m, err)
	}
	small := startHistNode(t, ns.ClientURL(), 2)
	c3 := dialHist(t, small.addr, "r", last)
	if r, missed := nextRecovery(t, c3); r.recovered || len(missed) != 0 {
		t.Fatalf("from %+v on a node keeping 2: %+v with %d messages, want not recovered", last, r, len(missed))
	}
	top, _ := small.srv.RoomPosition("r")
	c4 := dialHist(t, small.addr, "r", engine.Position{Epoch: last.Epoch, Offset: top.Offset - 1})
	if r, missed := nextRecovery(t, c4); !r.recovered || len(missed) != 1 {
		t.Fatalf("from one before the top on a node keeping 2: %+v with %d messages, want 1 recovered", r, len(missed))
	}
}

// TestHistoryClusterWithoutNATS: while NATS is down, a publish to a room
// with history still reaches the node's members (with no position) and
// fails with ErrBrokerUnavailable, and a reconnecting client is told it
// did not recover; once NATS is back (with its stream on disk), the
// node's consumer resumes, and a client recovers from a position given
// before the outage.
func TestHistoryClusterWithoutNATS(t *testing.T) {
	dir := t.TempDir()
	ns := runJetStream(t, -1, dir)
	port := ns.Addr().(interface{ String() string }).String()
	_, p, _ := strings.Cut(port, "127.0.0.1:")
	portN, _ := strconv.Atoi(p)
	a := startHistNode(t, ns.ClientURL(), 100, WithNATSOptions())
	c := dialHist(t, a.addr, "r", engine.Position{})
	nextRecovery(t, c)
	before, err := a.srv.PublishPos("r", ws.OpText, []byte("before"))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := readHist(c); m.pos != before {
		t.Fatalf("got %+v, want %+v", m.pos, before)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	waitFor(t, "the broker to see NATS gone", func() bool { return !a.srv.Stats().Broker.Connected })
	if err := a.srv.Publish("r", ws.OpText, []byte("during")); !errors.Is(err, engine.ErrBrokerUnavailable) {
		t.Fatalf("Publish without NATS: %v", err)
	}
	if m, err := readHist(c); err != nil || m.payload != "during" || m.pos != (engine.Position{}) {
		t.Fatalf("without NATS the member got %+v, %v; want \"during\" with no position", m, err)
	}
	c2 := dialHist(t, a.addr, "r", before)
	if r, missed := nextRecovery(t, c2); r.recovered || len(missed) != 0 {
		t.Fatalf("a recovery without NATS: %+v with %d messages, want not recovered", r, len(missed))
	}
	c2.Close()

	runJetStream(t, portN, dir)
	waitFor(t, "the node to reconnect and catch up", func() bool { _, ok := a.b.HistoryHorizon(); return ok })
	var after engine.Position
	waitFor(t, "a publish through the stream", func() bool {
		after, err = a.srv.PublishPos("r", ws.OpText, []byte("after"))
		return err == nil
	})
	if after.Epoch != before.Epoch || after.Offset <= before.Offset {
		t.Fatalf("after the outage %+v, before %+v: want the same epoch, later", after, before)
	}
	// The node delivers "after" when the stream gives it back, maybe
	// after this recovery: then live, right behind the recovery line.
	c3 := dialHist(t, a.addr, "r", before)
	r, missed := nextRecovery(t, c3)
	if !r.recovered || len(missed) > 1 {
		t.Fatalf("a recovery after the outage: %+v with %+v, want recovered", r, missed)
	}
	if len(missed) == 0 {
		m, err := readHist(c3)
		if err != nil {
			t.Fatal(err)
		}
		missed = append(missed, m)
	}
	if missed[0].payload != "after" || missed[0].pos != after {
		t.Fatalf("after the outage the client got %+v, want \"after\" at %+v", missed[0], after)
	}
}

// holeMsg is a message of the stream as the ordered consumer hands it,
// with the sequence the test gives (the stream is real; only the hole in
// its sequence is made up, as the stream's limits would make one).
type holeMsg struct {
	jetstream.Msg
	seq  uint64
	data []byte
}

func (m holeMsg) Data() []byte { return m.data }
func (m holeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.seq}, Timestamp: time.Now()}, nil
}

// TestHistoryClusterHole: a hole in the stream's sequence after the
// replay (messages the stream dropped before this node took them) means
// any room may have lost messages: a recovery from before it is not
// recovered, while one from after it is.
func TestHistoryClusterHole(t *testing.T) {
	ns := runJetStream(t, -1, "")
	a := startHistNode(t, ns.ClientURL(), 100)
	c := dialHist(t, a.addr, "r", engine.Position{})
	nextRecovery(t, c)
	before, err := a.srv.PublishPos("r", ws.OpText, []byte("m1"))
	if err != nil {
		t.Fatal(err)
	}
	if m, err := readHist(c); err != nil || m.pos != before {
		t.Fatalf("got %+v, %v", m, err)
	}
	// A node-local publish to the room gets no position and takes none
	// from the bus: the next message of the stream is still delivered.
	if err := a.srv.Local().Publish("r", ws.OpText, []byte("local")); err != nil {
		t.Fatal(err)
	}
	if m, err := readHist(c); err != nil || m.payload != "local" || m.pos != (engine.Position{}) {
		t.Fatalf("a local publish: got %+v, %v; want \"local\" with no position", m, err)
	}
	if next, err := a.srv.PublishPos("r", ws.OpText, []byte("m2")); err != nil {
		t.Fatal(err)
	} else if m, err := readHist(c); err != nil || m.pos != next || m.payload != "m2" {
		t.Fatalf("after a local publish: got %+v, %v; want m2 at %+v", m, err, next)
	} else {
		before = next
	}
	waitFor(t, "the node to take m2", func() bool { hz, _ := a.b.HistoryHorizon(); return hz.Offset == before.Offset })
	h := &a.b.hist
	data := append([]byte{byte(ws.OpText), 1, 'q'}, "m3"...) // room "q": not the client's
	h.deliver(holeMsg{seq: before.Offset + 2, data: data}, h.gen.Load(), before.Epoch, 0)
	c2 := dialHist(t, a.addr, "r", before)
	if r, missed := nextRecovery(t, c2); r.recovered || len(missed) != 0 || r.top.Offset != before.Offset+1 {
		t.Fatalf("from before a hole: %+v with %d messages, want not recovered at %d", r, len(missed), before.Offset+1)
	}
	c3 := dialHist(t, a.addr, "r", engine.Position{Epoch: before.Epoch, Offset: before.Offset + 1})
	if r, missed := nextRecovery(t, c3); !r.recovered || len(missed) != 0 {
		t.Fatalf("from the hole: %+v with %d messages, want recovered", r, len(missed))
	}
}

// TestHistoryClusterReplayKeptNotDelivered: what the broker replays when
// it starts (messages up to the stream's last at that time) is kept for
// recoveries and not delivered to the members, who joined after it was
// published.
func TestHistoryClusterReplayKeptNotDelivered(t *testing.T) {
	ns := runJetStream(t, -1, "")
	a := startHistNode(t, ns.ClientURL(), 100)
	c := dialHist(t, a.addr, "r", engine.Position{})
	r, _ := nextRecovery(t, c)
	h := &a.b.hist
	seq := r.top.Offset + 1
	data := append([]byte{byte(ws.OpText), 1, 'r'}, "old"...)
	h.deliver(holeMsg{seq: seq, data: data}, h.gen.Load(), r.top.Epoch, seq) // seq <= end: a replay
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if m, err := readHist(c); err == nil {
		t.Fatalf("a member got the replayed %+v", m)
	}
	c2 := dialHist(t, a.addr, "r", r.top)
	if r2, missed := nextRecovery(t, c2); !r2.recovered || len(missed) != 1 || missed[0].payload != "old" || missed[0].pos.Offset != seq {
		t.Fatalf("a recovery over the replayed message: %+v with %+v, want it", r2, missed)
	}
}

// TestHistoryClusterOldEpoch: once the bus's epoch is another than a
// room's (the stream was lost and made again), a position of the room's
// old epoch does not recover, though the room still holds it.
func TestHistoryClusterOldEpoch(t *testing.T) {
	ns := runJetStream(t, -1, "")
	a := startHistNode(t, ns.ClientURL(), 100)
	c0 := dialHist(t, a.addr, "r", engine.Position{})
	nextRecovery(t, c0)
	p1 := publishSeen(t, a, "r", "m1")
	publishSeen(t, a, "r", "m2")
	e2 := "recreated"
	a.b.hist.epoch.Store(&e2) // as setup does for a stream lost and made again
	c := dialHist(t, a.addr, "r", p1)
	if r, missed := nextRecovery(t, c); r.recovered || len(missed) != 0 || r.top.Epoch != e2 {
		t.Fatalf("from the old epoch's %+v: %+v with %d messages, want not recovered, in epoch %q", p1, r, len(missed), e2)
	}
}

// TestHistoryClusterWaitTimesOut: a recovery from a position ahead of
// its node that the node does not reach is closed with 1013 after 5 s,
// for the client to come back, rather than joined with a gap; one that
// the node has seen the bus up to recovers at once.
func TestHistoryClusterWaitTimesOut(t *testing.T) {
	ns := runJetStream(t, -1, "")
	a := startHistNode(t, ns.ClientURL(), 100)
	c0 := dialHist(t, a.addr, "r", engine.Position{})
	nextRecovery(t, c0)
	p1, err := a.srv.PublishPos("r", ws.OpText, []byte("m1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.srv.PublishPos("other", ws.OpText, []byte("o1")); err != nil {
		t.Fatal(err)
	}
	hz, _ := a.b.HistoryHorizon()
	waitFor(t, "o1", func() bool { hz, _ = a.b.HistoryHorizon(); return hz.Offset == p1.Offset+1 })
	// Seen up to it: the room had nothing after m1.
	seen := engine.Position{Epoch: p1.Epoch, Offset: hz.Offset}
	cs := dialHist(t, a.addr, "r", seen)
	if r, missed := nextRecovery(t, cs); !r.recovered || len(missed) != 0 || r.top != seen {
		t.Fatalf("from %+v, which the node has seen: %+v with %d messages, want recovered at once", seen, r, len(missed))
	}
	ahead := engine.Position{Epoch: p1.Epoch, Offset: hz.Offset + 2}
	c := dialHist(t, a.addr, "r", ahead)
	if r, _ := nextRecovery(t, c); !r.recovered || r.top != ahead {
		t.Fatalf("from ahead %+v: %+v, want recovered, waiting", ahead, r)
	}
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != 1013 {
		t.Fatalf("the waiting connection: %v, want a 1013 close", err)
	}
	// 5 s, found by the sweep of every second; more on a loaded machine.
	if d := time.Since(start); d < 4*time.Second || d > 15*time.Second {
		t.Fatalf("closed after %v, want 5 to 6 s", d)
	}
	// The connection recovered at once is a member: it gets the next one.
	if _, err := a.srv.PublishPos("r", ws.OpText, []byte("m2")); err != nil {
		t.Fatal(err)
	}
	if m, err := readHist(cs); err != nil || m.payload != "m2" {
		t.Fatalf("the connection recovered at once got %+v, %v; want m2", m, err)
	}
}

// TestHistoryClusterHoleRoomWithoutHistory: a hole in the stream whose
// next message is of a room without history on this node still cuts
// every room's history.
func TestHistoryClusterHoleRoomWithoutHistory(t *testing.T) {
	ns := runJetStream(t, -1, "")
	rule := func(room string) engine.History {
		if room == "x" {
			return engine.History{}
		}
		return engine.History{Size: 100}
	}
	a := startNodeWith(t, recoverer{}, ns.ClientURL(), []Option{WithHistory(HistoryConfig{MaxPerRoom: 100000})},
		engine.WithHistory(rule, histEnv), engine.WithUpgradeHook(histHook))
	waitFor(t, "catch up", func() bool { _, ok := a.b.HistoryHorizon(); return ok })
	c0 := dialHist(t, a.addr, "r", engine.Position{})
	nextRecovery(t, c0)
	p1 := publishSeen(t, a, "r", "m1")
	h := &a.b.hist
	data := append([]byte{byte(ws.OpText), 1, 'x'}, "mx"...)
	h.deliver(holeMsg{seq: p1.Offset + 2, data: data}, h.gen.Load(), p1.Epoch, 0) // a hole at p1+1
	c := dialHist(t, a.addr, "r", p1)
	if r, missed := nextRecovery(t, c); r.recovered {
		t.Fatalf("from before a hole: %+v with %d messages, want not recovered", r, len(missed))
	}
}

// TestHistoryClusterMaxPayload: a message that fits NATS's max_payload
// but not with the room's name in front fails at once (and reaches this
// node's members without a position) instead of being lost in sending.
func TestHistoryClusterMaxPayload(t *testing.T) {
	ns := runNATSWith(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, JetStream: true, StoreDir: t.TempDir(), MaxPayload: 4096})
	a := startHistNode(t, ns.ClientURL(), 100)
	room := strings.Repeat("r", 60)
	c := dialHist(t, a.addr, room, engine.Position{})
	nextRecovery(t, c)
	waitFor(t, "max payload", func() bool { return a.b.maxPayload.Load() == 4096 })
	p := strings.Repeat("x", 4030)
	if err := a.srv.Publish(room, ws.OpText, []byte(p)); !errors.Is(err, engine.ErrBrokerUnavailable) {
		t.Fatalf("Publish: %v, want ErrBrokerUnavailable", err)
	}
	if m, err := readHist(c); err != nil || m.payload != p || m.pos != (engine.Position{}) {
		t.Fatalf("the member got %v, want the message with no position", err)
	}
}

// TestHistoryClusterLeaveWhileWaiting: a connection that leaves the room
// while its recovery waits for its node to catch up is not joined when the
// node does.
func TestHistoryClusterLeaveWhileWaiting(t *testing.T) {
	ns := runJetStream(t, -1, "")
	a := startHistNode(t, ns.ClientURL(), 100)
	p1 := publishSeen(t, a, "r", "m1")
	ahead := engine.Position{Epoch: p1.Epoch, Offset: p1.Offset + 1}
	c := dialHist(t, a.addr, "r", ahead)
	if r, _ := nextRecovery(t, c); !r.recovered {
		t.Fatalf("from ahead: %+v, want recovered, waiting", r)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("leave r")); err != nil {
		t.Fatal(err)
	}
	nextRecovery(t, c) // the leave is done
	for i := range 3 {
		if _, err := a.srv.PublishPos("r", ws.OpText, fmt.Appendf(nil, "n%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if m, err := readHist(c); err == nil {
		t.Fatalf("after leaving, the connection got %+v", m)
	}
}
