package engine

import (
	"bufio"

	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Compression end to end over loopback, against the same run without it.
//
//	go test ./engine -run XXX -bench 'Deflate' -benchtime 20000x

// BenchmarkEchoDeflate echoes a 1 KiB JSON text message on one connection:
// plain, and compressed both ways (the server inflates the request and
// deflates the echo). wire-B/msg counts both frames.
func BenchmarkEchoDeflate(b *testing.B) {
	msg := jsonLike(1024, 9)
	for _, compressed := range []bool{false, true} {
		name := "plain"
		if compressed {
			name = "deflate"
		}
		b.Run(name, func(b *testing.B) {
			_, addr := startServer(b, echoHandler{}, WithEventLoops(1))
			var c net.Conn
			frame := clientFrame(ws.OpText, true, msg)
			if compressed {
				c = upgradeDeflate(b, addr)
				frame = rsv1Frame(ws.OpText, true, deflated(msg))
			} else {
				c = upgradeRaw(b, addr)
			}
			if _, err := c.Write(frame); err != nil {
				b.Fatal(err)
			}
			first := readServerFrame(b, c)
			reply := make([]byte, 4+len(first.Payload))
			if len(first.Payload) <= 125 {
				reply = reply[:2+len(first.Payload)]
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				echoRoundTrip(b, c, frame, reply)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/msg")
			b.ReportMetric(float64(len(frame)+len(reply)), "wire-B/msg")
		})
	}
}

// BenchmarkPublishDeflate publishes a 1 KiB JSON message to 500 members
// that negotiated compression, and to 500 that did not, reading every
// copy: what compressing once per publish costs per delivery.
func BenchmarkPublishDeflate(b *testing.B) {
	const members = 500
	msg := jsonLike(1024, 11)
	for _, compressed := range []bool{false, true} {
		name := "plain"
		if compressed {
			name = "deflate"
		}
		b.Run(name, func(b *testing.B) {
			srv, addr := startServer(b, roomHandler{newRecorder()}, WithUpgradeHook(roomHook), WithTick(time.Second), WithEventLoops(1))
			offer := ""
			if compressed {
				offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
			}
			readers := make([]*bufio.Reader, members)
			for i := range readers {
				c := dialTCP(b, addr)
				req := "GET /room/r HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
					"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + offer + "\r\n"
				if _, err := c.Write([]byte(req)); err != nil {
					b.Fatal(err)
				}
				readHTTPHead(b, c)
				readers[i] = bufio.NewReaderSize(c, 16<<10)
			}
			waitFor(b, 5*time.Second, "members", func() bool { return srv.RoomLen("r") == members })
			if err := srv.Publish("r", ws.OpText, msg); err != nil {
				b.Fatal(err)
			}
			var n int
			for _, r := range readers {
				f, err := ws.ReadFrame(r)
				if err != nil {
					b.Fatal(err)
				}
				n = len(f.Payload) + 4
				if len(f.Payload) <= 125 {
					n -= 2
				}
			}
			buf := make([]byte, n)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := srv.Publish("r", ws.OpText, msg); err != nil {
					b.Fatal(err)
				}
				for _, r := range readers {
					if _, err := io.ReadFull(r, buf); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/delivery")
			b.ReportMetric(float64(n), "wire-B/delivery")
		})
	}
}

// BenchmarkIdleDeflate measures the heap an idle upgraded connection holds
// after 40 messages of 1 KiB each way (enough to fill a 32 KiB window):
// plain, compressed without context takeover (the default), and with the
// client's context kept, whose window the server holds per connection. The
// client's side is in the same heap; it is the same in every case, so the
// differences between cases are the server's.
func BenchmarkIdleDeflate(b *testing.B) {
	const conns = 1000
	msg := jsonLike(1024, 13)
	for _, tc := range []struct {
		name  string
		opts  []Option
		offer string
	}{
		{"plain", nil, ""},
		{"deflate", nil, "permessage-deflate; client_max_window_bits"},
		{"deflate-client-takeover-15", []Option{WithContextTakeover(true, 15)}, "permessage-deflate; client_max_window_bits"},
		{"deflate-client-takeover-10", []Option{WithContextTakeover(true, 10)}, "permessage-deflate; client_max_window_bits"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				_, addr := startServer(b, echoHandler{}, append(tc.opts, WithEventLoops(1))...)
				frame := clientFrame(ws.OpText, true, msg)
				if tc.offer != "" {
					frame = rsv1Frame(ws.OpText, true, deflated(msg))
				}
				// Warm up the loop's pools on a first connection.
				warm := dialWith(b, addr, tc.offer)
				roundTrip(b, warm, frame)
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				cs := make([]net.Conn, conns)
				for i := range cs {
					cs[i] = dialWith(b, addr, tc.offer)
					for range 40 {
						roundTrip(b, cs[i], frame)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(int64(after.HeapInuse)-int64(before.HeapInuse))/conns, "heap-B/conn")
				for _, c := range cs {
					c.Close()
				}
			}
		})
	}
}

// dialWith upgrades with the extension offer (none when empty).
func dialWith(b *testing.B, addr, offer string) net.Conn {
	extra := ""
	if offer != "" {
		extra = "Sec-WebSocket-Extensions: " + offer + "\r\n"
	}
	c, head := upgradeWith(b, addr, extra)
	if len(head) < 12 || head[9:12] != "101" {
		b.Fatalf("upgrade: %s", head)
	}
	return c
}

// roundTrip sends frame and reads one frame back.
func roundTrip(b *testing.B, c net.Conn, frame []byte) {
	if _, err := c.Write(frame); err != nil {
		b.Fatal(err)
	}
	readServerFrame(b, c)
}
