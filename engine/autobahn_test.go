package engine

import (
	"crypto/tls"
	"testing"

	"github.com/wsloop/wsloop/internal/wstest"
)

// TestAutobahn runs the Go port of the Autobahn TestSuite's server cases 1
// to 10, and the compression cases 12 and 13 (20 messages a case instead of
// the suite's 1,000; 4 under the race detector, which makes DEFLATE 20 times
// slower), against an echo server configured like examples/echo.
// Every case must be OK: NON-STRICT, UNCLEAN, UNIMPLEMENTED, a wrong close
// code, or a TCP connection left for the client to drop all fail it.
func TestAutobahn(t *testing.T) {
	_, addr := startServer(t, echoHandler{}, WithMaxMessageSize(64<<20), WithCheckOrigin(AnyOrigin))
	count := 20
	if raceEnabled {
		count = 4
	}
	wstest.RunAutobahn(t, addr, wstest.WithCompressionCases(count))
}

// The same cases over wss: TLS on the event loops behaves as plain TCP.
func TestAutobahnTLS(t *testing.T) {
	_, addr := tlsServer(t, echoHandler{}, WithMaxMessageSize(64<<20), WithCheckOrigin(AnyOrigin))
	count := 20
	if raceEnabled {
		count = 4
	}
	wstest.RunAutobahn(t, addr, wstest.WithCompressionCases(count),
		wstest.WithDialOptions(wstest.WithTLS(clientTLS(tls.VersionTLS13))))
}
