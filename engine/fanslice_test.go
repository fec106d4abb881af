package engine

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// gateTask holds its loop until released: the test queues work behind it
// in a known order.
type gateTask struct{ started, release chan struct{} }

func (g gateTask) Run(context.Context) error {
	close(g.started)
	<-g.release
	return nil
}

// probeHandler records, when a message arrives, how many deliveries its
// loop had made so far.
type probeHandler struct {
	roomHandler
	seen chan uint64
}

func (h probeHandler) OnMessage(c *Conn, _ ws.OpCode, _ []byte) {
	h.seen <- c.loop.stats.msgsOut.Load()
}

// TestFanoutSliceServesSockets: a publish to a room of 300 members on one
// loop, with slices of 16 deliveries, lets the loop read a message that
// waited on another socket after the first slice, not after all 300
// writes. The loop is held by a task while the publish and the message
// are queued, so the order is known: the test has no timing in it.
func TestFanoutSliceServesSockets(t *testing.T) {
	const members, slice = 300, 16
	h := probeHandler{roomHandler{newRecorder()}, make(chan uint64, 1)}
	srv, addr := startServer(t, h, WithEventLoops(1), WithFanoutSlice(slice), WithUpgradeHook(roomHook), WithHandshakeTimeout(time.Minute))
	readers := make([]*bufio.Reader, members)
	for i := range readers {
		_, readers[i] = dialPath(t, addr, "/room/a", clientIPs[i%len(clientIPs)])
	}
	other, _ := dialPath(t, addr, "/", clientIPs[0])
	waitFor(t, 10*time.Second, "every join", func() bool { return srv.RoomLen("a") == members })
	var l *loop
	srv.eachLoop(func(x *loop) { l = x })
	base := l.stats.msgsOut.Load()

	gate := gateTask{make(chan struct{}), make(chan struct{})}
	if err := l.el.Execute(context.Background(), gate); err != nil {
		t.Fatal(err)
	}
	<-gate.started
	if err := srv.Publish("a", ws.OpText, []byte("hello")); err != nil {
		close(gate.release)
		t.Fatal(err)
	}
	if _, err := other.Write(clientFrame(ws.OpText, true, []byte("echo?"))); err != nil {
		close(gate.release)
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // the bytes are in the loop's socket (loopback)
	close(gate.release)

	select {
	case n := <-h.seen:
		if n-base >= members {
			t.Fatalf("the loop read the other socket after %d deliveries: the whole fan-out held it (slice %d)", n-base, slice)
		}
		t.Logf("the loop read the other socket after %d of %d deliveries", n-base, members)
	case <-time.After(10 * time.Second):
		t.Fatal("the message was never read")
	}
	for i, br := range readers {
		if _, p, err := readMessage(br); err != nil || string(p) != "hello" {
			t.Fatalf("member %d: %q, %v", i, p, err)
		}
	}
}

// TestFanoutSliceOrder: with slices of 5 deliveries, room publishes from
// two goroutines and broadcasts from a third reach each of 400 members
// once and in each publisher's order, while 60 other members close in the
// middle of the fan-outs (their leaves and the broadcast's walk of the
// connection list change under paused drains).
func TestFanoutSliceOrder(t *testing.T) {
	const members, closers, per = 400, 60, 100
	srv, addr := startServer(t, roomHandler{newRecorder()}, WithEventLoops(1), WithFanoutSlice(5), WithUpgradeHook(roomHook), WithHandshakeTimeout(time.Minute))
	readers := make([]*bufio.Reader, members)
	var leaving []net.Conn
	for i := range members + closers {
		c, br := dialPath(t, addr, "/room/a", clientIPs[i%len(clientIPs)])
		if i%((members+closers)/closers) == 0 && len(leaving) < closers {
			leaving = append(leaving, c)
			continue
		}
		readers[i-len(leaving)] = br
	}
	waitFor(t, 10*time.Second, "every join", func() bool { return srv.RoomLen("a") == members+closers })

	var bad atomic.Value
	var wg sync.WaitGroup
	for i, br := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var next [3]uint32
			for range 3 * per {
				op, p, err := readMessage(br)
				if err != nil || op != ws.OpBinary || len(p) != 5 || p[0] > 2 {
					bad.CompareAndSwap(nil, fmt.Errorf("member %d: %v %x: %v", i, op, p, err))
					return
				}
				if seq := binary.BigEndian.Uint32(p[1:]); seq != next[p[0]] {
					bad.CompareAndSwap(nil, fmt.Errorf("member %d: publisher %d sent %d, want %d", i, p[0], seq, next[p[0]]))
					return
				} else {
					next[p[0]]++
				}
			}
		}()
	}
	var pubs sync.WaitGroup
	for pub := range 3 {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for seq := range per {
				msg := []byte{byte(pub), 0, 0, 0, 0}
				binary.BigEndian.PutUint32(msg[1:], uint32(seq))
				var err error
				for {
					if pub == 2 {
						err = srv.Broadcast(ws.OpBinary, msg)
					} else {
						err = srv.Publish("a", ws.OpBinary, msg)
					}
					if err != ErrQueueFull {
						break
					}
					time.Sleep(time.Millisecond)
				}
				if err != nil {
					bad.CompareAndSwap(nil, err)
				}
				if pub == 0 && seq%(per/closers+1) == 0 && len(leaving) > 0 {
					leaving[0].Close()
					leaving = leaving[1:]
				}
			}
		}()
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
	for i, br := range readers {
		if br.Buffered() > 0 {
			t.Fatalf("member %d has %d bytes more", i, br.Buffered())
		}
	}
	waitFor(t, 10*time.Second, "the closed members to leave", func() bool { return srv.RoomLen("a") == members+len(leaving) })
}
