package main

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/wsloop/wsloop/benchmarks/internal/cfroom"
)

// centrifugeServer is servers/centrifuge-room in the test process: the
// real library, an open channel.
func centrifugeServer(t *testing.T) string {
	node, ws, err := cfroom.New()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ws}
	go srv.Serve(l)
	t.Cleanup(func() {
		srv.Close()
		_ = node.Shutdown(context.Background())
	})
	return l.Addr().String()
}

func TestFanoutCentrifuge(t *testing.T) {
	addr := centrifugeServer(t)
	for _, args := range [][]string{
		{"-size", "64"},
		{"-size", "1024", "-json"},
	} {
		res, err, stderr := runFanout(t, append([]string{"-addr", addr, "-subs", "30", "-duration", "500ms",
			"-warmup", "100ms", "-inflight", "8", "-proto", "centrifuge", "-rbuf", "512", "-go"}, args...)...)
		if err != nil || res.Errors != 0 {
			t.Fatalf("%v: err %v, %d errors:\n%s", args, err, res.Errors, stderr)
		}
		if res.Publishes == 0 || res.Delivered != res.Publishes*30 {
			t.Fatalf("%v: publishes %d, delivered %d; want delivered = 30 x publishes", args, res.Publishes, res.Delivered)
		}
	}
}

// A plain WebSocket client against centrifuge sends data centrifuge does
// not understand: the run must fail, not count anything.
func TestFanoutCentrifugeNeedsItsProtocol(t *testing.T) {
	addr := centrifugeServer(t)
	res, err, _ := runFanout(t, "-addr", addr, "-subs", "5", "-duration", "300ms", "-warmup", "0",
		"-drain-timeout", "1s", "-go")
	if err == nil || res.Errors == 0 {
		t.Fatalf("a plain client against centrifuge went unnoticed: %+v", res)
	}
}

func TestJSONStringRoundTrip(t *testing.T) {
	var p []byte
	for c := range 128 {
		p = append(p, byte(c))
	}
	enc := appendJSONString([]byte{'"'}, p)
	enc = append(enc, '"', '}')
	got, rest, err := unescapeJSONString(nil, enc)
	if err != nil || string(got) != string(p) || string(rest) != "}" {
		t.Fatalf("got %q rest %q err %v", got, rest, err)
	}
	for _, bad := range []string{``, `x`, `"abc`, `"\x"`, `"\u00"`, `"\u0080"`, "\"\x01\"", `"\`} {
		if _, _, err := unescapeJSONString(nil, []byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	for _, s := range []string{`"\/\b\f\n\r\t\u0041"`} {
		got, _, err := unescapeJSONString(nil, []byte(s))
		if err != nil || string(got) != "/\b\f\n\r\tA" {
			t.Errorf("%q: got %q, %v", s, got, err)
		}
	}
}
