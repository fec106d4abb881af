package engine

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
)

// tlsFlood streams total bytes of what follows a ClientHello (garbage the
// handshake never gets to read) at addr from conns sockets at once, each
// reconnecting when the server closes it, and returns the bytes the
// server took and how many sockets it closed.
func tlsFlood(t *testing.T, addr string, hello []byte, total int64, conns int) (sent int64, closed int64) {
	t.Helper()
	var sentN, closedN atomic.Int64
	chunk := make([]byte, 32<<10)
	for i := range chunk {
		chunk[i] = byte(i*7 + 1)
	}
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sentN.Load() < total && time.Now().Before(deadline) {
				c, err := net.DialTimeout("tcp", addr, 5*time.Second)
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				_ = c.SetWriteDeadline(deadline)
				if _, err := c.Write(hello); err == nil {
					sentN.Add(int64(len(hello)))
					for sentN.Load() < total {
						n, err := c.Write(chunk)
						sentN.Add(int64(n))
						if err != nil {
							var ne net.Error
							if errors.As(err, &ne) && ne.Timeout() {
								t.Errorf("the server neither read nor closed a flooding socket for 60 s")
							}
							closedN.Add(1)
							break
						}
					}
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	return sentN.Load(), closedN.Load()
}

// wssEcho dials addr over wss, echoes one message and closes.
func wssEcho(addr string) error {
	d := websocket.Dialer{TLSClientConfig: clientTLS(tls.VersionTLS13), HandshakeTimeout: 5 * time.Second}
	c, _, err := d.Dial("wss://"+addr+"/", nil)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := c.WriteMessage(websocket.TextMessage, []byte("fresh")); err != nil {
		return err
	}
	if _, p, err := c.ReadMessage(); err != nil || string(p) != "fresh" {
		return errors.Join(errors.New("no echo"), err)
	}
	return nil
}

// TestTLSHandshakeFlood: the flood of issue 22. A few hundred silent TCP
// sockets sit on the TLS port (they once held every handshake slot; a
// handshake now asks for one only once its first record is in), and
// clients stream 64 MiB at it behind a ClientHello. Each flooding socket
// is closed once it has sent the per-socket bound; the process's heap
// peaks at a few MiB, not hundreds; an open wss connection keeps echoing
// and fresh wss upgrades work during and after the flood.
func TestTLSHandshakeFlood(t *testing.T) {
	for _, tc := range []struct {
		name      string
		conns     int
		perSocket int
		total     int
		held      int // slots, all held by clients that stall after their ClientHello
	}{
		{"one socket", 1, 64 << 10, 8 << 20, 0},
		// 16 at once against a small total: the total bound closes them.
		{"16 sockets, total bound", 16, 64 << 10, 256 << 10, 0},
		// Every slot held until the handshake deadline (1 s): the flood
		// waits in the queue, and so does a fresh upgrade, until a slot
		// frees.
		{"slots held", 4, 64 << 10, 8 << 20, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A slow certificate lookup (autocert) keeps handshakes from
			// reading their input, as a full set of slots does.
			cfg, _ := testPKI()
			slow := cfg.Clone()
			cert := &slow.Certificates[0]
			slow.Certificates = nil
			slow.GetCertificate = func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
				if hi.ServerName != "localhost" {
					time.Sleep(2 * time.Second)
				}
				return cert, nil
			}
			opts := []Option{WithTLS(slow), WithMaxTLSHandshakeBytes(tc.perSocket, tc.total), WithHandshakeTimeout(10 * time.Second)}
			if tc.held > 0 {
				opts = append(opts, WithMaxTLSHandshakes(tc.held), WithHandshakeTimeout(time.Second))
			}
			srv, addr := startServer(t, echoHandler{}, opts...)
			for range 300 {
				dialTCP(t, addr)
			}
			open := dialWSS(t, addr)
			hello := clientHelloFor(t, "flood.example") // a name the slow lookup stalls on
			if tc.held > 0 {
				for range tc.held {
					if _, err := dialTCP(t, addr).Write(clientHelloFor(t, "localhost")); err != nil {
						t.Fatal(err)
					}
				}
				waitFor(t, 5*time.Second, "every slot held", func() bool { return srv.Stats().TLSHandshakes == tc.held })
				// Their deadline (1 s) must come well before that of the
				// fresh upgrade below, which waits for one of their slots.
				time.Sleep(400 * time.Millisecond)
			}

			mem := startMemPeak(t)
			floodDone := make(chan [2]int64, 1)
			go func() {
				s, c := tlsFlood(t, addr, hello, 64<<20, tc.conns)
				floodDone <- [2]int64{s, c}
			}()
			fresh := make(chan error, 1) // an upgrade begun during the flood, which may wait for a slot
			go func() {
				time.Sleep(10 * time.Millisecond)
				fresh <- wssEcho(addr)
			}()
			// During the flood: the open connection echoes, and a fresh
			// upgrade works.
			var during int
			for flooding := true; flooding; {
				select {
				case r := <-floodDone:
					floodDone <- r
					flooding = false
					continue
				default:
				}
				if err := open.WriteMessage(websocket.TextMessage, []byte("still")); err != nil {
					t.Fatal(err)
				}
				if _, p, err := open.ReadMessage(); err != nil || string(p) != "still" {
					t.Fatalf("echo on an open wss connection during the flood: %q %v", p, err)
				}
				if tc.held == 0 {
					if err := wssEcho(addr); err != nil {
						t.Fatalf("a fresh wss upgrade during the flood: %v", err)
					}
					during++
				}
				time.Sleep(20 * time.Millisecond)
			}
			r := <-floodDone
			peak := mem.end()
			st := srv.Stats()
			t.Logf("%d MiB sent from %d socket(s), %d flooding sockets closed (overflows %d); heap peak +%.1f MiB; %d fresh wss echoes during it; %d handshakes running",
				r[0]>>20, tc.conns, r[1], st.TLSHandshakeOverflows, float64(peak)/(1<<20), during, st.TLSHandshakes)
			if peak > 16<<20 {
				t.Errorf("the heap grew by %.1f MiB under a 64 MiB TLS handshake flood, want at most 16", float64(peak)/(1<<20))
			}
			if r[0] < 64<<20 {
				t.Fatalf("only %d bytes of the flood were sent", r[0])
			}
			if st.TLSHandshakeOverflows == 0 {
				t.Fatal("no flooding socket was closed for its handshake input")
			}
			if during == 0 && tc.held == 0 {
				t.Error("no fresh upgrade was tried during the flood")
			}
			if err := <-fresh; err != nil {
				t.Fatalf("a fresh wss upgrade begun during the flood: %v", err)
			}
			if err := wssEcho(addr); err != nil {
				t.Fatalf("a fresh wss upgrade after the flood: %v", err)
			}
			if held := srv.tlsHeld.Load(); held > int64(tc.total) {
				t.Errorf("%d bytes of handshake input held, over the total bound %d", held, tc.total)
			}
		})
	}
}

// tlsDialer upgrades a wss connection to addr, over TLS 1.3.
func tlsDialer(addr string) func(testing.TB) net.Conn {
	return func(t testing.TB) net.Conn {
		tc := tls.Client(dialTCP(t, addr), clientTLS(tls.VersionTLS13))
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		return upgradeOver(t, tc, addr)
	}
}

// TestTLSHandshakeQueueRelease: sockets whose handshakes wait for a slot
// leave the queue, and give back their input buffers, as soon as they
// close, not when a running handshake ends; silent sockets never take a
// slot. The flood of the Bounds row: 500 ClientHellos queued past 2
// slots; the heap's peak stays within 5 MiB of its start (the test's own
// 552 sockets included), and an open wss probe keeps getting echoes.
func TestTLSHandshakeQueueRelease(t *testing.T) {
	srv, addr := tlsServer(t, echoHandler{}, WithMaxTLSHandshakes(2), WithHandshakeTimeout(20*time.Second))
	hello := clientHello(t)
	probe := startProbe(t, tlsDialer(addr))
	mem := startMemPeak(t)
	// Silent sockets: no slot, no queue entry.
	for range 50 {
		dialTCP(t, addr)
	}
	// Two clients send a ClientHello and stall: they hold both slots
	// until the handshake deadline, 20 s away.
	var stalled []net.Conn
	for range 2 {
		c := dialTCP(t, addr)
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c)
	}
	waitFor(t, 5*time.Second, "both slots taken", func() bool { return srv.Stats().TLSHandshakes == 2 })
	if st := srv.Stats(); st.TLSHandshakesWaiting != 0 {
		t.Fatalf("%d handshakes wait with only silent sockets and 2 running", st.TLSHandshakesWaiting)
	}
	// 500 more wait for a slot, then go away.
	var waiting []net.Conn
	for range 500 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		waiting = append(waiting, c)
	}
	waitFor(t, 10*time.Second, "500 handshakes queued", func() bool { return srv.Stats().TLSHandshakesWaiting == 500 })
	if held := srv.tlsHeld.Load(); held < 500*int64(len(hello)) {
		t.Fatalf("%d bytes of handshake input held for 500 queued ClientHellos of %d bytes", held, len(hello))
	}
	probe.waitEchoes(t, probe.mark(), 3) // while they are queued
	for _, c := range waiting {
		c.Close()
	}
	waitFor(t, 5*time.Second, "the closed sockets gone from the queue", func() bool {
		st := srv.Stats()
		return st.TLSHandshakesWaiting == 0 && st.Sockets == 53 // 50 silent, 2 stalled, the probe
	})
	if st := srv.Stats(); st.TLSHandshakes != 2 {
		t.Fatalf("%d handshakes running, want the 2 stalled ones", st.TLSHandshakes)
	}
	waitFor(t, 5*time.Second, "their input buffers dropped", func() bool { return srv.tlsHeld.Load() == 0 })
	mem.check(t, 5<<20, "500 ClientHellos queued past 2 handshake slots")
	for _, c := range stalled { // free the slots, for the probe's new connection
		c.Close()
	}
	probe.end(t)
}

// TestTLSHandshakeTotalLeavesRoom: sockets that each hold most of a
// first record that never ends (no handshake starts, nothing consumes it)
// fill the total bound of WithMaxTLSHandshakeBytes and stay; a new
// client's ClientHello still gets in (a socket's first 4 KiB may take the
// total to twice its bound), and its wss upgrade works.
func TestTLSHandshakeTotalLeavesRoom(t *testing.T) {
	srv, addr := tlsServer(t, echoHandler{}, WithMaxTLSHandshakeBytes(64<<10, 256<<10))
	const body = 16384 + 2048       // the longest record crypto/tls takes
	partial := make([]byte, 16<<10) // of a record of 18 KiB: no handshake starts
	partial[0], partial[1], partial[2], partial[3], partial[4] = 0x16, 3, 1, body>>8, body&0xff
	for i := range 16 { // 16 KiB each (one read, one buffer of that size), one at a time: 16 fill the total exactly
		c := dialTCP(t, addr)
		if _, err := c.Write(partial); err != nil {
			t.Fatal(err)
		}
		want := int64(i+1) * 16 << 10
		waitFor(t, 5*time.Second, "a flooder's 16 KiB held", func() bool { return srv.tlsHeld.Load() == want })
	}
	if err := wssEcho(addr); err != nil {
		t.Fatalf("a new client while sockets hold the total bound: %v", err)
	}
	if st := srv.Stats(); st.TLSHandshakeOverflows != 0 {
		t.Fatalf("%d sockets closed for their input", st.TLSHandshakeOverflows)
	}
	// A flooder past a ClientHello's worth is still refused at the bound.
	c := dialTCP(t, addr)
	if _, err := c.Write(partial); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the next flooder refused", func() bool { return srv.Stats().TLSHandshakeOverflows == 1 })
}

// tlsRecordConn is an upgraded wss connection and the TCP socket under
// it, for writing records by hand.
type tlsRecordConn struct {
	raw net.Conn
	c   net.Conn
	br  *bufio.Reader
}

func dialTLSRecordConn(t *testing.T, addr string) tlsRecordConn {
	t.Helper()
	raw := dialTCP(t, addr)
	tc := tls.Client(raw, clientTLS(tls.VersionTLS13))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c := upgradeOver(t, tc, addr)
	return tlsRecordConn{raw: raw, c: c, br: bufio.NewReader(c)}
}

// closedWithin reports whether the server closes c's socket within d,
// reading and discarding what it sends until then.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// TestBoundsTLSRecords: an open wss connection's input waits in gnet's
// buffer until a whole TLS record is in (at most 16 KiB + 2 KiB of
// ciphertext), and is decrypted 64 KiB of plaintext at a time. 64
// connections each hold a record one byte short of the largest; a
// record past the largest, or one that does not decrypt, closes its
// socket at once; 64 MiB of 60 KiB messages from 4 connections (records
// of 16 KiB) are all delivered. The heap's peak stays within 8 MiB of its
// start throughout, and a wss probe keeps echoing.
func TestBoundsTLSRecords(t *testing.T) {
	const maxRecord = 16384 + 2048 // crypto/tls's largest ciphertext
	h := &sinkHandler{}
	srv, addr := tlsServer(t, h, WithMaxMessageSize(64<<10))
	probe := startProbe(t, tlsDialer(addr))
	const holders, senders = 64, 4
	var conns []tlsRecordConn
	for range holders + senders + 8 {
		conns = append(conns, dialTLSRecordConn(t, addr))
	}
	hold, send, over := conns[:holders], conns[holders:holders+senders], conns[holders+senders:]
	partial := make([]byte, 5+maxRecord-1)
	partial[0], partial[1], partial[2] = 0x17, 3, 3 // application data
	binary.BigEndian.PutUint16(partial[3:], maxRecord)
	msg := bytes.Repeat(clientFrame(ws.OpBinary, true, make([]byte, 60<<10)), 16) // about 1 MiB
	mem := startMemPeak(t)
	for _, c := range hold {
		if _, err := c.raw.Write(partial); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the server reads them
	t.Logf("%d records one byte short of %d bytes held: the heap peaked %s above its start", holders, maxRecord, mib(mem.growth()))
	// Past the bound: a record longer than the largest, sent in part.
	tooLong := append([]byte{0x17, 3, 3, 0xff, 0xff}, make([]byte, 1000)...)
	for i, c := range over {
		if _, err := c.raw.Write(tooLong); err != nil {
			t.Fatal(err)
		}
		if !closedWithin(c.raw, 5*time.Second) {
			t.Errorf("socket %d: a record header of 65,535 bytes did not close the socket within 5 s", i)
		}
	}
	f := newFlood(probe, 64<<20)
	f.run(t, senders, func(w int) {
		c := send[w]
		for f.more() {
			if _, err := c.c.Write(msg); err != nil {
				t.Errorf("sender %d: %v", w, err)
				return
			}
			f.add(len(msg))
		}
		if err := pingSync(c.c, c.br); err != nil {
			t.Errorf("sender %d: %v", w, err)
		}
	})
	if got, want := h.got.Load(), f.sent.Load()/int64(len(msg))*16; got != want {
		t.Errorf("%d messages delivered, %d sent", got, want)
	}
	// The held records end with a byte that does not make them decrypt.
	for i, c := range hold {
		if _, err := c.raw.Write([]byte{0}); err != nil {
			t.Fatal(err)
		}
		if !closedWithin(c.raw, 5*time.Second) {
			t.Fatalf("holder %d: a record that does not decrypt did not close the socket within 5 s", i)
		}
	}
	mem.check(t, 8<<20, "TLS records held, too long, and a flood of them")
	waitFor(t, 10*time.Second, "the held sockets to close", func() bool { return srv.Stats().Sockets == 1+senders })
	probe.end(t)
}
