package natsbroker

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/engine"
)

// Three nodes, one NATS server: a publish on A reaches the room's members
// on A, B and C exactly once, in order, byte for byte; a node with no
// member of the room gets nothing of it from NATS; Broadcast reaches every
// connection of every node; SendToKey finds the node holding the key.
func TestClusterPublish(t *testing.T) {
	ns := runNATS(t, -1)
	url := ns.ClientURL()
	a, b, c, d := startNode(t, url, nil), startNode(t, url, nil), startNode(t, url, nil), startNode(t, url, nil)

	// Room "stream" has members on A (2), B (3) and C (1); D serves only
	// "other". Room names that are not NATS tokens work the same.
	odd := "live room/ü.*>" + strings.Repeat("x", 300)
	q := "room=stream&room=" + escape(odd)
	members := []*client{dial(t, a, q), dial(t, a, q), dial(t, b, q), dial(t, b, q), dial(t, b, q), dial(t, c, q)}
	other := dial(t, d, "room=other&key=dora")
	for _, r := range []string{"stream", odd} {
		waitFor(t, "interest of A, B and C in "+r, func() bool { return natsInterest(ns, roomSubject(r)) == 3 })
	}
	waitFor(t, "RoomLen counting every node", func() bool {
		return a.srv.RoomLen("stream") == 6 && d.srv.RoomLen("stream") == 6 && c.srv.RoomLen(odd) == 6
	})
	if n := a.srv.Local().RoomLen("stream"); n != 2 {
		t.Fatalf("A's local count %d, want 2", n)
	}

	dBefore := d.b.NATS().Stats().InMsgs - d.b.presIn.Load()
	const N = 500
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // one publisher: order must hold on every node
		defer wg.Done()
		for i := range N {
			room := "stream"
			if i%2 == 1 {
				room = odd
			}
			if err := a.srv.Publish(room, ws.OpBinary, payload(i)); err != nil {
				t.Errorf("publish %d: %v", i, err)
				return
			}
		}
	}()
	for k, m := range members {
		for i := range N {
			if p := m.next(t); !bytes.Equal(p, payload(i)) {
				t.Fatalf("member %d, message %d: got %.12q", k, i, p)
			}
		}
	}
	wg.Wait()
	for _, m := range members {
		m.quiet(t, 100*time.Millisecond) // exactly once: nothing more
	}
	other.quiet(t, 0)
	if got := d.b.NATS().Stats().InMsgs - d.b.presIn.Load() - dBefore; got != 0 {
		t.Fatalf("D, with no member of the rooms, received %d messages from NATS", got)
	}
	if st := a.srv.Stats().Broker; st.Sent != N || st.Failed != 0 || !st.Connected || st.Nodes != 3 {
		t.Fatalf("A's broker stats %+v", st)
	}
	if st := b.srv.Stats().Broker; st.Received != N || st.Dropped != 0 {
		t.Fatalf("B's broker stats %+v", st)
	}

	// Broadcast from D reaches every connection, D's own once.
	if err := d.srv.Broadcast(ws.OpText, []byte("all")); err != nil {
		t.Fatal(err)
	}
	for _, m := range append(members, other) {
		if p := m.next(t); string(p) != "all" {
			t.Fatalf("broadcast: %q", p)
		}
	}

	// SendToKey: held on D, sent from A.
	waitFor(t, "interest in key dora", func() bool { return natsInterest(ns, "wsloop.k.dora") == 1 })
	if err := a.srv.SendToKey("dora", ws.OpText, []byte("psst")); !errors.Is(err, engine.ErrForwarded) {
		t.Fatalf("SendToKey to another node: %v, want ErrForwarded", err)
	}
	if p := other.next(t); string(p) != "psst" {
		t.Fatalf("key message: %q", p)
	}
	if err := d.srv.SendToKey("dora", ws.OpText, []byte("local")); err != nil {
		t.Fatalf("SendToKey on the node holding it: %v", err)
	}
	if p := other.next(t); string(p) != "local" {
		t.Fatalf("key message: %q", p)
	}
	for _, m := range members {
		m.quiet(t, 50*time.Millisecond)
	}
}

func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
		}
	}
	return b.String()
}

// The last member leaving unsubscribes the node (after the linger); a
// churn of joins and leaves inside the linger costs no subscription.
func TestClusterInterest(t *testing.T) {
	ns := runNATS(t, -1)
	url := ns.ClientURL()
	a, b := startNode(t, url, nil), startNode(t, url, []Option{WithLinger(500 * time.Millisecond)})
	subj := roomSubject("r")

	first := dial(t, b, "room=r")
	waitFor(t, "B's interest", func() bool { return natsInterest(ns, subj) == 1 })
	base := b.b.subscribes.Load()
	// Churn: 50 members come and go, one at a time, while first stays.
	for range 50 {
		cl := dial(t, b, "room=r")
		cl.c.Close()
	}
	first.c.Close()
	// Members come and go within the linger: still one subscription.
	for range 20 {
		cl := dial(t, b, "room=r")
		cl.c.Close()
	}
	if got := b.b.subscribes.Load() - base; got != 0 {
		t.Fatalf("churn made %d new subscriptions", got)
	}
	waitFor(t, "B unsubscribed after its last member left", func() bool { return natsInterest(ns, subj) == 0 })
	waitFor(t, "B's subscription count", func() bool { return b.srv.Stats().Broker.Subscriptions == 0 })
	before := b.b.NATS().Stats().InMsgs - b.b.presIn.Load()
	for i := range 20 {
		_ = a.srv.Publish("r", ws.OpText, payload(i))
	}
	time.Sleep(200 * time.Millisecond)
	if got := b.b.NATS().Stats().InMsgs - b.b.presIn.Load() - before; got != 0 {
		t.Fatalf("B received %d messages for a room it left", got)
	}
	if st := a.srv.Stats().Broker; st.Sent != 20 {
		t.Fatalf("A sent %d", st.Sent) // on the bus once each, to no one
	}
}

// Presence: RoomLen counts every node's members within the report
// interval's bound, and forgets a node that stopped.
func TestClusterPresence(t *testing.T) {
	ns := runNATS(t, -1)
	url := ns.ClientURL()
	a, b, c := startNode(t, url, nil), startNode(t, url, nil), startNode(t, url, nil)
	var bs []*client
	for range 5 {
		bs = append(bs, dial(t, b, "room=show"))
	}
	for range 3 {
		dial(t, c, "room=show")
	}
	dial(t, a, "room=show")
	// Reports every 200 ms: each count is current within 400 ms; allow
	// for a loaded machine.
	start := time.Now()
	waitFor(t, "RoomLen 9 on every node", func() bool {
		return a.srv.RoomLen("show") == 9 && b.srv.RoomLen("show") == 9 && c.srv.RoomLen("show") == 9
	})
	t.Logf("counts current after %v", time.Since(start))
	for _, cl := range bs[:2] {
		cl.c.Close()
	}
	waitFor(t, "RoomLen 7 after two left", func() bool { return a.srv.RoomLen("show") == 7 && c.srv.RoomLen("show") == 7 })
	c.stop()
	// C's members are gone with it: its last report said 3, its broker
	// closed; the others forget it after three silent intervals.
	waitFor(t, "RoomLen 4 after C stopped", func() bool { return a.srv.RoomLen("show") == 4 && b.srv.RoomLen("show") == 4 })
	// C's goodbye takes its members and itself out at once; a report C
	// sent as it closed may reach A after it and bring C back as a node
	// with no members, until three silent intervals pass (CI saw "A knows
	// 2 nodes" once).
	waitFor(t, "A to know 1 node", func() bool { return a.srv.Stats().Broker.Nodes == 1 })
	// A node that starts late learns the counts.
	e := startNode(t, url, nil)
	waitFor(t, "a late node's RoomLen", func() bool { return e.srv.RoomLen("show") == 4 })
}

// A node that shuts down says so: the others stop counting its members at
// once, not after three silent report intervals (15 s here).
func TestClusterBye(t *testing.T) {
	ns := runNATS(t, -1)
	slow := []Option{WithReportInterval(5 * time.Second)}
	a, c := startNode(t, ns.ClientURL(), slow), startNode(t, ns.ClientURL(), slow)
	for range 3 {
		dial(t, c, "room=show")
	}
	waitFor(t, "A counting C's members", func() bool { return a.srv.RoomLen("show") == 3 })
	c.stop()
	waitFor(t, "A forgetting C", func() bool { return a.srv.RoomLen("show") == 0 && a.srv.Stats().Broker.Nodes == 0 })
}

// A leave that turns out to change nothing (by a connection that never
// joined) is counted by RoomLen while it is queued; the broker that read
// the count then must read it again once the leave is applied, or the
// node stays unsubscribed from a room that still has a member here.
func TestClusterNoOpLeave(t *testing.T) {
	ns := runNATS(t, -1)
	a, b := startNode(t, ns.ClientURL(), nil), startNode(t, ns.ClientURL(), nil)
	// Connections go to the least loaded of A's two loops: x and z share
	// one, y has the other.
	x := dial(t, a, "room=r")
	y := dial(t, a, "")
	z := dial(t, a, "")
	waitFor(t, "A's interest", func() bool { return natsInterest(ns, roomSubject("r")) == 1 })
	// y leaves r (it never joined) and stalls its loop with the leave
	// queued: RoomLen("r") on A is 0 meanwhile. z joins and leaves, so
	// that the broker reads that 0, and lets the subscription go after
	// its linger (100 ms).
	if err := y.c.WriteMessage(websocket.TextMessage, []byte("leave r 600ms")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_ = z.c.WriteMessage(websocket.TextMessage, []byte("join r"))
	_ = z.c.WriteMessage(websocket.TextMessage, []byte("leave r"))
	// Once the leave is applied, x is still a member: A must be
	// subscribed again, and x must get what B publishes.
	time.Sleep(700 * time.Millisecond)
	waitFor(t, "A subscribed again", func() bool { return natsInterest(ns, roomSubject("r")) == 1 })
	waitFor(t, "B counting x", func() bool { return b.srv.RoomLen("r") == 1 })
	if err := b.srv.Publish("r", ws.OpText, []byte("still here?")); err != nil {
		t.Fatal(err)
	}
	if p := x.next(t); string(p) != "still here?" {
		t.Fatalf("x got %q", p)
	}
}

// What is queued for the bus when the broker closes is sent, not lost
// uncounted (a node's last messages, such as the leave notices its
// handlers publish as Shutdown closes their connections).
func TestClusterCloseSendsQueued(t *testing.T) {
	ns := runNATS(t, -1)
	a := startNode(t, ns.ClientURL(), []Option{WithSendBuffer(64 << 20)})
	b := startNode(t, ns.ClientURL(), nil)
	remote := dial(t, b, "room=r")
	waitFor(t, "B's interest", func() bool { return natsInterest(ns, roomSubject("r")) == 1 })
	// 2000 messages of 16 KiB: the broker is still sending when it closes.
	const N = 2000
	big := func(i int) []byte { return append(payload(i), make([]byte, 16<<10)...) }
	for i := range N {
		if err := a.srv.Publish("r", ws.OpBinary, big(i)); err != nil {
			t.Fatal(err)
		}
	}
	_ = a.b.Close()
	if st := a.b.Stats(); st.Sent != N || st.Failed != 0 {
		t.Fatalf("after Close: sent %d, failed %d; want %d sent", st.Sent, st.Failed, N)
	}
	// All of them reached B, which delivered them or, its loop's queue
	// full of 16 KiB messages, dropped some and counted them.
	waitFor(t, "B to take all of them", func() bool { st := b.srv.Stats().Broker; return st.Received+st.Dropped == N })
	if p := remote.next(t); !bytes.Equal(p, big(0)) {
		t.Fatalf("first message: %.10q", p)
	}
}
