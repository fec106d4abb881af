package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// partialHandler joins every connection to room "r" and hands it to the
// test; "stall N" blocks the connection's loop for N ms, after saying so.
type partialHandler struct {
	BaseHandler
	opened  chan *Conn
	stalled chan struct{}
}

func (h *partialHandler) OnOpen(c *Conn) {
	_ = c.Join("r")
	h.opened <- c
}

func (h *partialHandler) OnMessage(c *Conn, op ws.OpCode, p []byte) {
	if ms, ok := bytes.CutPrefix(p, []byte("stall ")); ok {
		n, _ := strconv.Atoi(string(ms))
		h.stalled <- struct{}{}
		time.Sleep(time.Duration(n) * time.Millisecond)
	}
}

// partialMember is a raw client whose messages are collected.
type partialMember struct {
	nc   net.Conn
	conn *Conn // its server side
	msgs chan []byte
}

func (m *partialMember) next(t *testing.T) string {
	t.Helper()
	select {
	case p, ok := <-m.msgs:
		if !ok {
			t.Fatal("connection ended")
		}
		return string(p)
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10 s")
	}
	return ""
}

// TestPublishPartial: with two event loops and members of a room on both,
// one loop stalled until its queue is full, Publish, Broadcast and SendTo
// still reach the other loop's connections, and their error says so: a
// *QueueFullError (errors.Is ErrQueueFull) naming one refusing loop of
// two and the targets that missed the message. The stalled loop's members
// get exactly the messages it queued, in order.
func TestPublishPartial(t *testing.T) {
	h := &partialHandler{opened: make(chan *Conn, 1), stalled: make(chan struct{}, 1)}
	srv, addr := startServer(t, h, WithEventLoops(2), WithMaxQueuedBytes(64<<10))
	var members []*partialMember
	for range 6 {
		m := &partialMember{nc: upgradeRaw(t, addr), msgs: make(chan []byte, 1024)}
		select {
		case m.conn = <-h.opened:
		case <-time.After(5 * time.Second):
			t.Fatal("no OnOpen")
		}
		go func(br *bufio.Reader) {
			defer close(m.msgs)
			for {
				op, p, err := readMessage(br)
				if err != nil || op == ws.OpClose {
					return
				}
				m.msgs <- p
			}
		}(bufio.NewReader(m.nc))
		members = append(members, m)
	}
	waitFor(t, 5*time.Second, "the joins", func() bool { return len(srv.RoomMembers("r")) == len(members) })
	// The loop that comes first is stalled: a fan-out that stopped at the
	// first refusal would skip the other.
	var first *loop
	srv.eachLoop(func(l *loop) {
		if first == nil {
			first = l
		}
	})
	var stuck, free []*partialMember
	for _, m := range members {
		if m.conn.loop == first {
			stuck = append(stuck, m)
		} else {
			free = append(free, m)
		}
	}
	if len(stuck) == 0 || len(free) == 0 {
		t.Fatalf("members: %d on the first loop, %d on the other; want some on both", len(stuck), len(free))
	}
	if _, err := stuck[0].nc.Write(clientFrame(ws.OpText, true, []byte("stall 1500"))); err != nil {
		t.Fatal(err)
	}
	<-h.stalled
	stallEnds := time.Now().Add(1500 * time.Millisecond)

	// Publish until the stalled loop's queue is full, and a few more.
	msg := func(i int) []byte { return fmt.Appendf(bytes.Repeat([]byte{'.'}, 1000), "%d", i) }
	checkPartial := func(what string, err error, missed int) {
		t.Helper()
		var qf *QueueFullError
		if !errors.Is(err, ErrQueueFull) || !errors.As(err, &qf) {
			t.Fatalf("%s: %v, want a *QueueFullError", what, err)
		}
		if qf.Loops != 1 || qf.Queued != 1 || qf.Missed != missed {
			t.Fatalf("%s: %+v, want 1 loop refusing, 1 queueing, %d missed", what, *qf, missed)
		}
	}
	// The free loop drains each message before the next comes, so that
	// only the stalled one fills up however slow the machine.
	drained := func() {
		waitFor(t, 5*time.Second, "the free loop to drain", func() bool { return !free[0].conn.loop.pub.active.Load() })
	}
	var queued []int // messages both loops took
	total, partial := 0, 0
	for i := 0; partial < 10 && i < 1000; i++ {
		drained()
		err := srv.Publish("r", ws.OpBinary, msg(i))
		total++
		if err == nil {
			queued = append(queued, i)
			continue
		}
		checkPartial(fmt.Sprintf("publish %d", i), err, len(stuck))
		partial++
	}
	if partial == 0 || len(queued) == 0 {
		t.Fatalf("%d publishes queued everywhere, %d partly: want both", len(queued), partial)
	}
	// As large as the publishes: a small one could fit in what is left.
	bcast, sendTo := msg(-1), msg(-2)
	drained()
	checkPartial("Broadcast", srv.Broadcast(ws.OpBinary, bcast), len(stuck))
	var ids []uint64
	for _, m := range members {
		ids = append(ids, m.conn.ID())
	}
	drained()
	n, err := srv.SendTo(ids, ws.OpBinary, sendTo)
	if n != len(members) {
		t.Fatalf("SendTo targeted %d, want %d", n, len(members))
	}
	checkPartial("SendTo", err, len(stuck))
	if time.Now().After(stallEnds) {
		t.Skip("the machine was too slow: the stall ended while publishing")
	}
	if got := srv.Stats().QueueFull; got != uint64(partial+2) {
		t.Errorf("Stats.QueueFull %d, want %d", got, partial+2)
	}

	// The other loop's members got everything, in order.
	for k, m := range free {
		for i := range total {
			if p := m.next(t); p != string(msg(i)) {
				t.Fatalf("member %d on the free loop, message %d: got %.20q", k, i, p)
			}
		}
		if p := m.next(t); p != string(bcast) {
			t.Fatalf("member %d on the free loop: %q, want the broadcast", k, p)
		}
		if p := m.next(t); p != string(sendTo) {
			t.Fatalf("member %d on the free loop: %q, want SendTo's", k, p)
		}
	}
	// The stalled loop's members get what it queued, and nothing else.
	for k, m := range stuck {
		for _, i := range queued {
			if p := m.next(t); p != string(msg(i)) {
				t.Fatalf("member %d on the stalled loop: got %.20q, want message %d", k, p, i)
			}
		}
	}
	if err := srv.Publish("r", ws.OpText, []byte("after")); err != nil {
		t.Fatalf("after the stall: %v", err)
	}
	for k, m := range members {
		if p := m.next(t); p != "after" {
			t.Fatalf("member %d after the stall: %q", k, p)
		}
	}
	t.Logf("%d publishes: %d queued on both loops, %d on one; %d members on the stalled loop, %d on the other",
		total, len(queued), partial, len(stuck), len(free))
}
