package natsbroker

import (
	"bytes"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/engine"
)

// A message from the bus that one of a node's two loops refuses (its
// queue full: the loop is stalled) reaches the members on the other loop,
// and the node counts it as partly delivered, not as dropped.
func TestClusterPartialDelivery(t *testing.T) {
	ns := runNATS(t, -1)
	a := startNode(t, ns.ClientURL(), nil)
	b := startNode(t, ns.ClientURL(), nil, engine.WithMaxQueuedBytes(64<<10))
	// Two members on B: one on each of its two loops.
	stuck, free := dial(t, b, "room=r"), dial(t, b, "room=r")
	if per := b.srv.Stats().ConnsPerLoop; len(per) != 2 || per[0] != 1 || per[1] != 1 {
		t.Fatalf("B's connections per loop %v, want one on each", per)
	}
	waitFor(t, "B's interest", func() bool { return natsInterest(ns, roomSubject("r")) == 1 })
	if err := stuck.c.WriteMessage(websocket.TextMessage, []byte("2s")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the stuck member's loop is asleep now
	stallEnds := time.Now().Add(2 * time.Second)

	// 1 KiB messages, one at a time: the free loop drains each before the
	// next, the stalled one fills up after about 60.
	msg := func(i int) []byte { return append(payload(i), make([]byte, 1024)...) }
	const N = 150
	for i := range N {
		if err := a.srv.Publish("r", ws.OpBinary, msg(i)); err != nil {
			t.Fatal(err)
		}
		if p := free.next(t); !bytes.Equal(p, msg(i)) {
			t.Fatalf("the free loop's member got %.10q as message %d", p, i)
		}
	}
	if time.Now().After(stallEnds) {
		t.Skip("the machine was too slow: the stall ended while publishing")
	}
	st := b.srv.Stats().Broker
	t.Logf("B: received %d, partly delivered %d, dropped %d", st.Received, st.Partial, st.Dropped)
	if st.Received+st.Partial != N || st.Dropped != 0 || st.Received == 0 || st.Partial == 0 {
		t.Fatalf("B's counts %+v: want Received+Partial = %d, both non-zero, none dropped", st, N)
	}
	// The stalled loop's member gets the messages it queued: the first
	// Received ones (once full, its queue stayed full), then nothing.
	for i := range int(st.Received) {
		if p := stuck.next(t); !bytes.Equal(p, msg(i)) {
			t.Fatalf("the stalled loop's member got %.10q as message %d", p, i)
		}
	}
	stuck.quiet(t, 200*time.Millisecond)
	if es := b.srv.Stats(); es.QueueFull != st.Partial {
		t.Fatalf("B's Stats.QueueFull %d, want one per partly delivered message (%d)", es.QueueFull, st.Partial)
	}
}
