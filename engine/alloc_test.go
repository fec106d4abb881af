package engine

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/gobwas/ws"
)

// echoRoundTrip sends frame and reads the echo into buf; it allocates
// nothing itself, so allocations measured around it are the server's.
func echoRoundTrip(tb testing.TB, c net.Conn, frame, buf []byte) {
	if _, err := c.Write(frame); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		tb.Fatal(err)
	}
}

// TestEchoAllocs: in steady state the server echoes a small message, and
// answers a ping, without allocating.
func TestEchoAllocs(t *testing.T) {
	_, addr := startServer(t, echoHandler{})
	c := upgradeRaw(t, addr)
	msg := bytes.Repeat([]byte("x"), 64)
	cases := []struct {
		name  string
		frame []byte
	}{
		{"text64", clientFrame(ws.OpText, true, msg)},
		{"binary64", clientFrame(ws.OpBinary, true, msg)},
		{"ping", clientFrame(ws.OpPing, true, msg[:16])},
	}
	for _, tc := range cases {
		reply := make([]byte, 2+len(tc.frame)-6)
		for range 200 { // warm up pools and buffers
			echoRoundTrip(t, c, tc.frame, reply)
		}
		allocs := testing.AllocsPerRun(2000, func() { echoRoundTrip(t, c, tc.frame, reply) })
		if allocs != 0 {
			t.Errorf("%s: %v allocations per echoed message, want 0", tc.name, allocs)
		}
	}
}

// TestEchoFragmentedAllocs: reassembly uses pooled buffers, so a fragmented
// message does not allocate in steady state either.
func TestEchoFragmentedAllocs(t *testing.T) {
	_, addr := startServer(t, echoHandler{})
	c := upgradeRaw(t, addr)
	part := bytes.Repeat([]byte("y"), 1000)
	var frame []byte
	frame = append(frame, clientFrame(ws.OpBinary, false, part)...)
	frame = append(frame, clientFrame(ws.OpContinuation, false, part)...)
	frame = append(frame, clientFrame(ws.OpContinuation, true, part)...)
	reply := make([]byte, 4+3*len(part))
	for range 200 {
		echoRoundTrip(t, c, frame, reply)
	}
	if allocs := testing.AllocsPerRun(2000, func() { echoRoundTrip(t, c, frame, reply) }); allocs != 0 {
		t.Errorf("%v allocations per fragmented echo, want 0", allocs)
	}
}

func benchmarkEcho(b *testing.B, size, burst int) {
	_, addr := startServer(b, echoHandler{}, WithEventLoops(1))
	c := upgradeRaw(b, addr)
	one := clientFrame(ws.OpBinary, true, bytes.Repeat([]byte("z"), size))
	frame := bytes.Repeat(one, burst)
	reply := make([]byte, burst*(len(one)-4))
	b.SetBytes(int64(size * burst))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		echoRoundTrip(b, c, frame, reply)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*burst), "ns/msg")
}

// BenchmarkEcho is one connection, one message in flight, over loopback:
// client and server share the machine, so ns/op is mostly the kernel.
func BenchmarkEcho(b *testing.B) {
	b.Run("64B", func(b *testing.B) { benchmarkEcho(b, 64, 1) })
	b.Run("4KiB", func(b *testing.B) { benchmarkEcho(b, 4096, 1) })
}

// BenchmarkEchoPipelined writes 16 frames at once and reads 16 echoes:
// the server answers the whole burst with one write.
func BenchmarkEchoPipelined(b *testing.B) {
	b.Run("64Bx16", func(b *testing.B) { benchmarkEcho(b, 64, 16) })
}
