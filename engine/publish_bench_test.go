package engine

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// BenchmarkPublish publishes a 64-byte message to a room of members raw
// clients and reads every copy: the cost of one publish end to end.
//
//	go test ./engine -run XXX -bench Publish -benchtime 2000x
func BenchmarkPublish(b *testing.B) { benchmarkPublish(b, false, false) }

// BenchmarkPublishHistory is BenchmarkPublish to a room that keeps its
// last 1,000 messages (WithHistory, no envelope: the same bytes go out),
// published with PublishPos.
//
//	go test ./engine -run XXX -bench 'Publish(History)?$' -benchtime 2000x
func BenchmarkPublishHistory(b *testing.B) { benchmarkPublish(b, false, true) }

// BenchmarkPublishTLS is BenchmarkPublish over TLS 1.3: the frame is
// encoded once, and every member's copy is encrypted on its own (and,
// here, decrypted by the client in the same process).
//
//	go test ./engine -run XXX -bench 'Publish(TLS)?$' -benchtime 2000x
func BenchmarkPublishTLS(b *testing.B) { benchmarkPublish(b, true, false) }

func benchmarkPublish(b *testing.B, useTLS, history bool) {
	for _, members := range []int{10, 500} {
		b.Run(fmt.Sprint(members), func(b *testing.B) {
			opts := []Option{WithUpgradeHook(roomHook), WithTick(time.Second)}
			if history {
				opts = append(opts, WithHistory(func(string) History { return History{Size: 1000} }, nil))
			}
			var cfg *tls.Config
			if useTLS {
				scfg, _ := testPKI()
				opts = append(opts, WithTLS(scfg))
				cfg = clientTLS(tls.VersionTLS13)
			}
			srv, addr := startServer(b, roomHandler{newRecorder()}, opts...)
			room := fmt.Sprintf("bench%d", members)
			readers := make([]*bufio.Reader, members)
			for i := range readers {
				_, readers[i] = dialPathTLS(b, addr, "/room/"+room, net.IPv4(127, 0, 0, 1), cfg)
			}
			waitFor(b, 5*time.Second, "members", func() bool { return srv.RoomLen(room) == members })
			msg := make([]byte, 64)
			buf := make([]byte, 2+len(msg))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := srv.PublishPos(room, ws.OpBinary, msg); err != nil {
					b.Fatal(err)
				}
				for _, r := range readers {
					if _, err := io.ReadFull(r, buf); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkPublishCost is the publisher's side of a publish alone, to a
// room with no members on either of two loops: encoding the frame and
// queueing it on each loop, and with history (1,000 kept) also giving it
// a position and keeping it, and with an envelope building the payload
// first. The loops drain the queues meanwhile.
//
//	go test ./engine -run XXX -bench PublishCost -benchmem
func BenchmarkPublishCost(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"plain", nil},
		{"history", []Option{WithHistory(func(string) History { return History{Size: 1000} }, nil)}},
		{"history+envelope", []Option{WithHistory(func(string) History { return History{Size: 1000} },
			func(dst []byte, _ string, pos Position, p []byte) []byte {
				dst = strconv.AppendUint(append(dst, pos.Epoch...), pos.Offset, 10)
				return append(dst, p...)
			})}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv, _ := startServer(b, roomHandler{newRecorder()}, append([]Option{WithEventLoops(2)}, tc.opts...)...)
			msg := make([]byte, 200)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := srv.PublishPos("r", ws.OpBinary, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
