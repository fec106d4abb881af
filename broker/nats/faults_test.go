package natsbroker

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/wsloop/wsloop/engine"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// seq reads the number a payload starts with.
func seq(t *testing.T, p []byte) int {
	t.Helper()
	n, err := strconv.Atoi(string(p[:6]))
	if err != nil {
		t.Fatalf("bad payload %q", p)
	}
	return n
}

// NATS stops mid-stream: local members keep receiving everything, the
// publishes the other node misses are counted as failed and reported to
// the caller, nothing blocks; NATS comes back on the same address and
// cross-node delivery resumes without restarting either node.
func TestClusterNATSDown(t *testing.T) {
	port := freePort(t)
	ns := runNATS(t, port)
	url := ns.ClientURL()
	a, b := startNode(t, url, nil), startNode(t, url, nil)
	local, remote := dial(t, a, "room=r"), dial(t, b, "room=r")
	waitFor(t, "interest", func() bool { return natsInterest(ns, roomSubject("r")) == 2 })

	i := 0
	publish := func() error {
		err := a.srv.Publish("r", ws.OpBinary, payload(i))
		i++
		return err
	}
	for range 50 {
		if err := publish(); err != nil {
			t.Fatal(err)
		}
	}
	for k := range 50 {
		if p := remote.next(t); seq(t, p) != k {
			t.Fatalf("remote got %d, want %d", seq(t, p), k)
		}
	}

	ns.Shutdown()
	waitFor(t, "A to notice", func() bool { return !a.srv.Stats().Broker.Connected })
	failedBefore := a.srv.Stats().Broker.Failed
	down := 0
	for range 100 {
		start := time.Now()
		err := publish()
		if time.Since(start) > time.Second {
			t.Fatal("Publish blocked while NATS was down")
		}
		if errors.Is(err, engine.ErrBrokerUnavailable) {
			down++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if st := a.srv.Stats().Broker; st.Failed-failedBefore != uint64(down) || down != 100 {
		t.Fatalf("while down: %d calls failed, Stats.Broker.Failed grew by %d; want 100 each", down, st.Failed-failedBefore)
	}
	// The local member got every message, outage or not.
	for k := range 150 {
		if p := local.next(t); seq(t, p) != k {
			t.Fatalf("local got %d, want %d", seq(t, p), k)
		}
	}
	remote.quiet(t, 100*time.Millisecond)

	ns2 := runNATS(t, port)
	waitFor(t, "both brokers reconnected", func() bool {
		return a.srv.Stats().Broker.Connected && b.srv.Stats().Broker.Connected
	})
	waitFor(t, "B's subscription restored", func() bool { return natsInterest(ns2, roomSubject("r")) == 2 })
	// Messages before B's resubscription reached NATS may go to no one:
	// publish until one arrives, then check order and completeness.
	first := -1
	deadline := time.Now().Add(10 * time.Second)
	for first < 0 && time.Now().Before(deadline) {
		_ = publish()
		select {
		case p := <-remote.msgs:
			first = seq(t, p)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if first < 150 {
		t.Fatalf("cross-node delivery did not resume (first %d)", first)
	}
	last := i
	for range 50 {
		if err := publish(); err != nil {
			t.Fatalf("after reconnect: %v", err)
		}
	}
	for k := first + 1; k < last+50; k++ {
		if p := remote.next(t); seq(t, p) != k {
			t.Fatalf("after reconnect remote got %d, want %d", seq(t, p), k)
		}
	}
	if st := a.srv.Stats().Broker; st.Reconnects < 1 {
		t.Fatalf("reconnects %d", st.Reconnects)
	}
	t.Logf("outage: %d publishes failed and were counted; delivery resumed at message %d", down, first)
}

// A node whose event loop is stalled falls behind: it drops (and counts)
// what does not fit its bounded buffers, and neither the publisher nor
// the other nodes wait for it. It serves again afterwards.
func TestClusterSlowNode(t *testing.T) {
	ns := runNATS(t, -1)
	url := ns.ClientURL()
	a := startNode(t, url, nil)
	slow := startNode(t, url, []Option{WithPendingMessages(64)}, engine.WithEventLoops(1), engine.WithMaxQueuedBytes(64<<10))
	c := startNode(t, url, nil)
	stuck, healthy := dial(t, slow, "room=r"), dial(t, c, "room=r")
	t.Cleanup(func() {
		if t.Failed() { // where the healthy node lost messages: NATS's queue (Dropped) or a loop's (Partial)?
			t.Logf("the healthy node's broker: %+v", c.srv.Stats().Broker)
		}
	})
	waitFor(t, "interest", func() bool { return natsInterest(ns, roomSubject("r")) == 2 })

	if err := stuck.c.WriteMessage(websocket.TextMessage, []byte("1500ms")); err != nil {
		t.Fatal(err)
	}
	stalled := time.Now()
	time.Sleep(50 * time.Millisecond) // the slow node's loop is asleep now
	const N = 5000
	var published atomic.Int64
	start := time.Now()
	for i := range N {
		if err := a.srv.Publish("r", ws.OpBinary, payload(i)); err != nil {
			t.Fatal(err)
		}
		published.Add(1)
	}
	took := time.Since(start)
	for i := range N {
		if p := healthy.next(t); !bytes.Equal(p, payload(i)) {
			t.Fatalf("the healthy node's member got %.10q as message %d", p, i)
		}
	}
	if took > time.Second {
		t.Fatalf("publishing took %v: the publisher waited for the slow node", took)
	}
	// Every one of the N reached the node; each was delivered or dropped
	// (presence reports that did not fit count as dropped too).
	var last engine.BrokerStats
	deadline := time.Now().Add(10 * time.Second)
	for last = slow.srv.Stats().Broker; last.Dropped == 0 || last.Dropped+last.Partial+last.Received < N; last = slow.srv.Stats().Broker {
		if time.Now().After(deadline) {
			t.Fatalf("the slow node's counts do not add up: %+v; NATS gave it %d", last, slow.b.NATS().Stats().InMsgs-slow.b.presIn.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	st := slow.srv.Stats().Broker
	time.Sleep(time.Until(stalled.Add(1600 * time.Millisecond))) // the loop is awake again
	// The slow node's member got an ordered subset.
	got, prev := 0, -1
	for done := false; !done; {
		select {
		case p := <-stuck.msgs:
			k := seq(t, p)
			if k <= prev {
				t.Fatalf("out of order: %d after %d", k, prev)
			}
			prev = k
			got++
		case <-time.After(300 * time.Millisecond):
			done = true
		}
	}
	if uint64(got) > st.Received {
		t.Fatalf("member got %d, node received %d", got, st.Received)
	}
	// And it serves again.
	_ = a.srv.Publish("r", ws.OpText, []byte("after"))
	if p := stuck.next(t); string(p) != "after" {
		t.Fatalf("after the stall: %q", p)
	}
	// A counter does not go back when the node stops.
	slow.stop()
	if after := slow.srv.Stats().Broker; after.Dropped < st.Dropped {
		t.Fatalf("Dropped went from %d to %d when the node stopped", st.Dropped, after.Dropped)
	}
	t.Logf("published %d in %v; the stalled node delivered %d and dropped %d (counted); its member got %d", N, took, st.Received, st.Dropped, got)
}

// A message larger than the NATS server takes fails for the other nodes
// with an error the caller sees, and still reaches this node's members.
func TestClusterTooBig(t *testing.T) {
	ns := runNATSWith(t, &server.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true, MaxPayload: 1024})
	a := startNode(t, ns.ClientURL(), nil)
	local := dial(t, a, "room=r")
	waitFor(t, "A connected", func() bool { return a.srv.Stats().Broker.Connected })
	big := bytes.Repeat([]byte("x"), 2000)
	if err := a.srv.Publish("r", ws.OpText, big); !errors.Is(err, engine.ErrBrokerUnavailable) {
		t.Fatalf("Publish of 2000 bytes over a 1024-byte bus: %v", err)
	}
	if p := local.next(t); !bytes.Equal(p, big) {
		t.Fatal("the local member did not get the big message")
	}
	if st := a.srv.Stats().Broker; st.Failed != 1 {
		t.Fatalf("Failed = %d, want 1", st.Failed)
	}
}

// Stats and RoomLen are safe while the server starts its broker (a
// metrics scrape may come at any time), and SendToKey refuses a control
// opcode rather than forwarding it.
func TestClusterStatsDuringStart(t *testing.T) {
	ns := runNATS(t, -1)
	b := New(ns.ClientURL())
	srv, err := engine.New(member{}, engine.WithBroker(b))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			default:
				_ = srv.Stats()
				_ = srv.RoomLen("r")
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- srv.ListenAndServe(context.Background(), "127.0.0.1:0") }()
	<-srv.Ready()
	time.Sleep(20 * time.Millisecond)
	close(stop)
	<-polled
	if err := srv.SendToKey("nobody", ws.OpPing, nil); err == nil || errors.Is(err, engine.ErrForwarded) {
		t.Fatalf("SendToKey with a ping: %v", err)
	}
	if st := srv.Stats().Broker; st.Sent != 0 || st.Failed != 0 {
		t.Fatalf("a ping went to the broker: %+v", st)
	}
	_ = srv.Shutdown(context.Background())
	<-done
}
