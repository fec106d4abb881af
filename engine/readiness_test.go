package engine

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestBurstLargerThanReadBuffer sends, in one write, far more than one
// read call takes (500 frames, about 53 KB, against a 1 KiB read buffer)
// and then stays silent until every echo is back. The loop is
// edge-triggered and reads once per event, so it only gets the rest
// because a read that fills the buffer queues another one: if it did
// not, no new edge would come and the echoes would stop after the first
// kilobyte. The close handshake and the FIN come after the echoes, so
// that the FIN's own event cannot rescue the reads.
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
