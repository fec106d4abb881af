package engine

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// BenchmarkPublish publishes a 64-byte message to a room of members raw
// clients and reads every copy: the cost of one publish end to end.
//
//	go test ./engine -run XXX -bench Publish -benchtime 2000x
func BenchmarkPublish(b *testing.B) { benchmarkPublish(b, false) }

// BenchmarkPublishTLS is BenchmarkPublish over TLS 1.3: the frame is
// encoded once, and every member's copy is encrypted on its own (and,
// here, decrypted by the client in the same process).
//
//	go test ./engine -run XXX -bench 'Publish(TLS)?$' -benchtime 2000x
func BenchmarkPublishTLS(b *testing.B) { benchmarkPublish(b, true) }

func benchmarkPublish(b *testing.B, useTLS bool) {
	for _, members := range []int{10, 500} {
		b.Run(fmt.Sprint(members), func(b *testing.B) {
			opts := []Option{WithUpgradeHook(roomHook), WithTick(time.Second)}
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
				if err := srv.Publish(room, ws.OpBinary, msg); err != nil {
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
