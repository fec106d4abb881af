package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/benchmarks/internal/benchcert"
)

// TestMain runs the command itself when the tests re-execute the binary.
func TestMain(m *testing.M) {
	if os.Getenv("FANOUT_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// fault is what the test room server does wrong, once, to one member.
type fault int

const (
	faultNone    fault = iota
	faultFlip          // flips a bit of one message's payload
	faultDrop          // leaves one message out
	faultReorder       // swaps two messages
)

// roomServer is a one-room server over gobwas/ws: every frame a member
// sends is written, unmasked, to every member (sender included). Like a
// hub, a connection joins the room only after its 101 has gone out. The
// fault hits the 3rd member to join, at its 20th message.
func roomServer(t *testing.T, f fault) string {
	return roomServerJoining(t, f, nil)
}

// roomServerJoining is roomServer; with joined set, it sends a message
// that arrived while more were already buffered, and those after it, as
// one message separated by newlines (as gorilla's chat example does with a
// client's queue) in two fragments (as gorilla's writer does when the
// message outgrows its buffer), and counts those messages in joined.
func roomServerJoining(t *testing.T, f fault, joined *atomic.Int64) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveRoom(t, l, f, joined)
}

// roomServerTLS is roomServer over TLS with a certificate made for the
// test; it returns the address and the certificate's file, for -tls-ca.
func roomServerTLS(t *testing.T, f fault) (addr, ca string) {
	cert, key, err := benchcert.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{kp}, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	return serveRoom(t, l, f, nil), cert
}

// serveRoom runs roomServerJoining's room on l.
func serveRoom(t *testing.T, l net.Listener, f fault, joined *atomic.Int64) string {
	t.Cleanup(func() { l.Close() })
	type member struct {
		c    net.Conn
		n    int
		held []byte // faultReorder: the frame held back
		bad  bool
	}
	var mu sync.Mutex
	var members []*member
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := ws.Upgrade(c); err != nil {
					return
				}
				mu.Lock()
				me := &member{c: c, bad: len(members) == 2}
				members = append(members, me)
				mu.Unlock()
				r := bufio.NewReader(c)
				for {
					fr, err := ws.ReadFrame(r)
					if err != nil {
						return
					}
					fr = ws.UnmaskFrameInPlace(fr)
					if fr.Header.OpCode.IsControl() {
						continue
					}
					if joined != nil && r.Buffered() > 0 {
						batch := bytes.Clone(fr.Payload)
						for r.Buffered() > 0 {
							next, err := ws.ReadFrame(r)
							if err != nil {
								return
							}
							next = ws.UnmaskFrameInPlace(next)
							batch = append(append(batch, '\n'), next.Payload...)
						}
						fr.Payload = batch
						joined.Add(1)
					}
					var plain bytes.Buffer
					if joined != nil && bytes.IndexByte(fr.Payload, '\n') > 0 {
						half := len(fr.Payload) / 2
						_ = ws.WriteFrame(&plain, ws.NewFrame(fr.Header.OpCode, false, fr.Payload[:half]))
						_ = ws.WriteFrame(&plain, ws.NewFrame(ws.OpContinuation, true, fr.Payload[half:]))
					} else {
						_ = ws.WriteFrame(&plain, ws.NewFrame(fr.Header.OpCode, true, fr.Payload))
					}
					mu.Lock()
					for _, m := range members {
						out := plain.Bytes()
						m.n++
						if m.bad && m.n == 20 {
							switch f {
							case faultFlip:
								out = bytes.Clone(out)
								out[len(out)-1] ^= 0x01
							case faultDrop:
								continue
							case faultReorder:
								m.held = bytes.Clone(out)
								continue
							}
						}
						_, _ = m.c.Write(out)
						if m.held != nil {
							_, _ = m.c.Write(m.held)
							m.held = nil
						}
					}
					mu.Unlock()
				}
			}()
		}
	}()
	return l.Addr().String()
}

func runFanout(t *testing.T, args ...string) (Result, error, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FANOUT_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var res Result
	got := false
	for _, l := range strings.Split(out.String(), "\n") {
		if js, ok := strings.CutPrefix(l, "RESULT "); ok {
			if e := json.Unmarshal([]byte(js), &res); e != nil {
				t.Fatalf("bad RESULT: %v", e)
			}
			got = true
		}
	}
	if !got {
		t.Fatalf("no RESULT line; stdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	return res, err, errb.String()
}

func TestFanoutCountsEveryDelivery(t *testing.T) {
	for _, reader := range []string{"epoll", "goroutine"} {
		t.Run(reader, func(t *testing.T) {
			addr := roomServer(t, faultNone)
			res, err, stderr := runFanout(t, "-addr", addr, "-subs", "40", "-size", "100", "-duration", "300ms",
				"-warmup", "100ms", "-inflight", "4", "-reader", reader, "-src", "127.0.0.3", "-go")
			if err != nil || res.Errors != 0 {
				t.Fatalf("err %v, %d errors:\n%s", err, res.Errors, stderr)
			}
			if res.Publishes == 0 || res.Delivered != res.Publishes*40 {
				t.Fatalf("publishes %d, delivered %d; want delivered = 40 x publishes", res.Publishes, res.Delivered)
			}
			if res.P50us <= 0 || res.P99us < res.P50us || res.DeliveredPerS <= 0 {
				t.Fatalf("implausible figures: %+v", res)
			}
		})
	}
}

func TestFanoutFailsOnWrongDelivery(t *testing.T) {
	for name, f := range map[string]fault{"flip": faultFlip, "drop": faultDrop, "reorder": faultReorder} {
		t.Run(name, func(t *testing.T) {
			addr := roomServer(t, f)
			res, err, stderr := runFanout(t, "-addr", addr, "-subs", "10", "-duration", "300ms", "-warmup", "0",
				"-inflight", "4", "-drain-timeout", "1s", "-go")
			if err == nil || res.Errors == 0 {
				t.Fatalf("a %s went unnoticed: err %v, %+v\n%s", name, err, res, stderr)
			}
			t.Logf("%s", stderr)
		})
	}
}

func TestFanoutRejectsAddressesOutsideLoopback(t *testing.T) {
	for _, args := range [][]string{
		{"-addr", "10.0.0.1:80"},
		{"-addr", "127.0.0.1:80", "-src", "10.0.0.1"},
	} {
		cmd := exec.Command(os.Args[0], append(args, "-go")...)
		cmd.Env = append(os.Environ(), "FANOUT_TEST_MAIN=1")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("%v: err %v, want exit 2:\n%s", args, err, out)
		}
	}
}

func TestFanoutSplitsJoinedMessages(t *testing.T) {
	for _, size := range []string{"64", "1024"} {
		t.Run(size, func(t *testing.T) {
			var joined atomic.Int64
			addr := roomServerJoining(t, faultNone, &joined)
			res, err, stderr := runFanout(t, "-addr", addr, "-subs", "20", "-size", size, "-duration", "500ms",
				"-warmup", "100ms", "-inflight", "8", "-proto", "newline", "-json", "-rbuf", "512", "-go")
			if err != nil || res.Errors != 0 {
				t.Fatalf("err %v, %d errors:\n%s", err, res.Errors, stderr)
			}
			if res.Publishes == 0 || res.Delivered != res.Publishes*20 {
				t.Fatalf("publishes %d, delivered %d; want delivered = 20 x publishes", res.Publishes, res.Delivered)
			}
			if joined.Load() == 0 {
				t.Fatal("the server never joined messages into one frame: the test tested nothing")
			}
			t.Logf("%d joined frames", joined.Load())
		})
	}
	// Without -proto newline, a joined frame is an error.
	var joined atomic.Int64
	addr := roomServerJoining(t, faultNone, &joined)
	res, err, _ := runFanout(t, "-addr", addr, "-subs", "20", "-duration", "500ms", "-warmup", "100ms",
		"-inflight", "8", "-drain-timeout", "1s", "-go")
	if joined.Load() > 0 && (err == nil || res.Errors == 0) {
		t.Fatalf("%d joined frames went unnoticed without -proto newline", joined.Load())
	}
}

// TestFanoutTLS runs the client over wss:// against the test room served
// with crypto/tls: every delivery counted and checked as without TLS, TLS
// 1.3 negotiated, and a bit flipped inside the encrypted stream (the
// server's plaintext) still caught.
func TestFanoutTLS(t *testing.T) {
	addr, ca := roomServerTLS(t, faultNone)
	res, err, stderr := runFanout(t, "-addr", addr, "-subs", "40", "-size", "100", "-duration", "300ms",
		"-warmup", "100ms", "-inflight", "4", "-tls", "-tls-ca", ca, "-src", "127.0.0.3", "-go")
	if err != nil || res.Errors != 0 {
		t.Fatalf("err %v, %d errors:\n%s", err, res.Errors, stderr)
	}
	if res.Publishes == 0 || res.Delivered != res.Publishes*40 {
		t.Fatalf("publishes %d, delivered %d; want delivered = 40 x publishes", res.Publishes, res.Delivered)
	}
	if res.Reader != "goroutine" || !strings.HasPrefix(res.TLS, "TLS 1.3 ") {
		t.Fatalf("reader %q, TLS %q: want the goroutine reader over TLS 1.3", res.Reader, res.TLS)
	}
	t.Logf("%s", res.TLS)

	addr, ca = roomServerTLS(t, faultFlip)
	res, err, stderr = runFanout(t, "-addr", addr, "-subs", "10", "-duration", "300ms", "-warmup", "0",
		"-inflight", "4", "-drain-timeout", "1s", "-tls", "-tls-ca", ca, "-go")
	if err == nil || res.Errors == 0 {
		t.Fatalf("a flipped bit went unnoticed over TLS: err %v, %+v\n%s", err, res, stderr)
	}

	// A certificate the client does not trust is an error, not skipped.
	_, other := roomServerTLS(t, faultNone)
	res, err, _ = runFanout(t, "-addr", addr, "-subs", "2", "-duration", "100ms", "-tls", "-tls-ca", other, "-go")
	if err == nil || res.Errors == 0 {
		t.Fatalf("a server whose certificate is not -tls-ca's was trusted: err %v, %+v", err, res)
	}
}

func TestFanoutTLSFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-tls"},             // no -tls-ca
		{"-tls-ca", "x.pem"}, // no -tls
		{"-tls", "-tls-ca", "x.pem", "-reader", "epoll"}, // raw sockets
	} {
		cmd := exec.Command(os.Args[0], append([]string{"-addr", "127.0.0.1:80", "-go"}, args...)...)
		cmd.Env = append(os.Environ(), "FANOUT_TEST_MAIN=1")
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Fatalf("%v: err %v, want exit 2:\n%s", args, err, out)
		}
	}
}
