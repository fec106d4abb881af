package engine

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestBurstLargerThanReadBuffer sends, in one write, far more than one
// read call takes (500 frames, about 53 KB, against a 1 KiB read buffer)
// and then stays silent until every echo is back. The loop reads a socket
// once per round, so it gets the rest only because the socket is reported
// ready again while input waits (level-triggered; edge-triggered, a read
// that filled the buffer had to queue the next one, or no new edge would
// come and the echoes would stop after the first kilobyte). The close
// handshake and the FIN come after the echoes, so that the FIN's own
// event cannot rescue the reads.
func TestBurstLargerThanReadBuffer(t *testing.T) {
	_, addr := startServer(t, echoHandler{}, WithReadBufferCap(1024))
	c := upgradeRaw(t, addr)

	const n = 500
	var burst []byte
	payload := func(i int) []byte {
		p := make([]byte, 100)
		for j := range p {
			p[j] = byte(i + j)
		}
		binary.BigEndian.PutUint32(p, uint32(i))
		return p
	}
	for i := 0; i < n; i++ {
		burst = append(burst, clientFrame(ws.OpBinary, true, payload(i))...)
	}
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}

	for i := 0; i < n; i++ {
		f := readServerFrame(t, c)
		if f.Header.OpCode != ws.OpBinary || !f.Header.Fin || !bytes.Equal(f.Payload, payload(i)) {
			t.Fatalf("echo %d: op %v fin %v payload %x..., want binary %x...", i, f.Header.OpCode, f.Header.Fin, f.Payload[:min(8, len(f.Payload))], payload(i)[:8])
		}
	}
	if _, err := c.Write(clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusNormalClosure, "bye"))); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	f := readServerFrame(t, c)
	if f.Header.OpCode != ws.OpClose {
		t.Fatalf("after %d echoes got %v, want the close reply", n, f.Header.OpCode)
	}
	if code, _ := ws.ParseCloseFrameData(f.Payload); code != ws.StatusNormalClosure {
		t.Fatalf("close reply code %d, want 1000", code)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if k, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the close reply: read %d bytes, err %v; want EOF", k, err)
	}
}

// busyHandler does some work for every binary message (about 30 µs for
// 1 KiB) and echoes text ones.
type busyHandler struct{ BaseHandler }

func (busyHandler) OnMessage(c *Conn, op ws.OpCode, p []byte) {
	if op == ws.OpText {
		_ = c.WriteMessage(op, p)
		return
	}
	var h uint32
	for range 32 {
		for _, b := range p {
			h = h*31 + uint32(b)
		}
	}
	_ = h
}

// TestFloodingClientDoesNotStarveItsLoop: two clients send 1 KiB messages
// faster than their loop handles them, so every read fills the loop's
// buffer; another connection on the same loop (one loop) must still get
// 50 echoes, each within a second, and a new connection must still be
// upgraded. Edge-triggered, gnet queued the next read of a socket whose
// read filled the buffer among the tasks it runs before it polls again,
// and the loop read the flooder and nothing else for as long as it sent
// (seen: no echo within a second). The flooders' unread input waits in
// the kernel, not in the server: the heap's peak stays within 1 MiB of
// its start (the Bounds row), and a probe keeps getting echoes (every
// 10 ms, each within 20 s) throughout.
func TestFloodingClientDoesNotStarveItsLoop(t *testing.T) {
	srv, addr := startServer(t, busyHandler{}, WithEventLoops(1))
	probe := upgradeRaw(t, addr)
	flooders := []net.Conn{upgradeRaw(t, addr), upgradeRaw(t, addr)}
	serving := startProbe(t, rawDialer(addr))
	mem := startMemPeak(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, flooder := range flooders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := bytes.Repeat(clientFrame(ws.OpBinary, true, bytes.Repeat([]byte{'f'}, 1024)), 64)
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := flooder.Write(batch); err != nil {
					return
				}
			}
		}()
		defer flooder.Close()
	}
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, 5*time.Second, "the flood", func() bool { return srv.Stats().MessagesIn > 2000 })
	start := time.Now()
	for i := range 50 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d echoes in %v", i, time.Since(start))
		}
		_ = probe.SetDeadline(time.Now().Add(time.Second)) // the loop has two flooders to serve besides
		if _, err := probe.Write(clientFrame(ws.OpText, true, []byte("probe"))); err != nil {
			t.Fatal(err)
		}
		if f := readServerFrame(t, probe); string(f.Payload) != "probe" {
			t.Fatalf("echo %d: %q", i, f.Payload)
		}
	}
	c := upgradeRaw(t, addr) // a new connection is served too
	c.Close()
	t.Logf("50 echoes and an upgrade while the flooders sent %d messages", srv.Stats().MessagesIn)
	mem.check(t, 1<<20, "two flooders on one loop")
	serving.end(t)
}
