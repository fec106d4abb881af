package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 70000} {
		payload := bytes.Repeat([]byte("xyz"), n/3+1)[:n]
		mask := [4]byte{0x12, 0x34, 0x56, 0x78}
		b := wsload.AppendClientFrame(nil, opText, payload, mask)
		f, used, err := parseFrame(b)
		if err != nil || used != len(b) {
			t.Fatalf("size %d: used %d of %d, err %v", n, used, len(b), err)
		}
		if !f.fin || f.op != opText || !f.masked || !bytes.Equal(f.payload, payload) {
			t.Fatalf("size %d: decoded %+v", n, f)
		}
		if n > 0 && bytes.Contains(b, payload) && n >= 4 {
			t.Fatalf("size %d: payload sent unmasked", n)
		}
		for cut := range min(len(b), 20) {
			if _, used, err := parseFrame(b[:cut]); used != 0 || err != nil {
				t.Fatalf("size %d, %d bytes: used %d, err %v", n, cut, used, err)
			}
		}
	}
}

func TestPingBatch(t *testing.T) {
	if pingFrameLen != 131 {
		t.Fatalf("a 125-byte ping frame is %d bytes, want 131", pingFrameLen)
	}
	b := pingBatch(1 << 16)
	if len(b)%pingFrameLen != 0 || len(b) > 1<<16 || len(b) < 1<<16-pingFrameLen {
		t.Fatalf("batch of %d bytes", len(b))
	}
	for len(b) > 0 {
		f, n, err := parseFrame(b)
		if err != nil || n != pingFrameLen || f.op != opPing || !f.fin || !f.masked || !bytes.Equal(f.payload, pingPayload) {
			t.Fatalf("frame %+v, %d bytes, err %v", f, n, err)
		}
		b = b[n:]
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tx\nVmPeak:\t  9999 kB\nVmRSS:\t    1234 kB\nThreads:\t4\n"
	if rss, err := parseVmRSS([]byte(status)); err != nil || rss != 1234<<10 {
		t.Fatalf("got %d, %v", rss, err)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\tmany kB\n"} {
		if _, err := parseVmRSS([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if rss, err := vmRSS(os.Getpid()); err != nil || rss < 1<<20 {
		t.Fatalf("own VmRSS %d, %v", rss, err)
	}
}

func TestStatusLine(t *testing.T) {
	for line, want := range map[string]int{
		"HTTP/1.1 101 Switching Protocols": 101,
		"HTTP/1.1 503 Service Unavailable": 503,
		"HTTP/1.0 400":                     400,
		"HTTP/1.1 5033":                    0,
		"SSH-2.0":                          0,
		"HTTP/1.1":                         0,
	} {
		if code, ok := statusLine([]byte(line)); code != want || ok != (want != 0) {
			t.Errorf("%q: %d %v, want %d", line, code, ok, want)
		}
	}
}

// gorillaEcho is a tiny echo server as the peers write it.
func gorillaEcho(w http.ResponseWriter, r *http.Request) {
	c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer c.Close()
	for {
		mt, p, err := c.ReadMessage()
		if err != nil || c.WriteMessage(mt, p) != nil {
			return
		}
	}
}

func TestProbe(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(gorillaEcho))
	defer echo.Close()
	addr := strings.TrimPrefix(echo.URL, "http://")
	if got := probe(addr, nil, 2*time.Second); got != "ok" {
		t.Errorf("echo server: %q", got)
	}

	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	if got := probe(strings.TrimPrefix(busy.URL, "http://"), nil, 2*time.Second); got != "upgrade: HTTP 503" {
		t.Errorf("503 server: %q", got)
	}

	// A server that accepts and closes, one that never answers, and none.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if got := probe(ln.Addr().String(), nil, 2*time.Second); got != "upgrade: EOF" && got != "upgrade: RST" && got != "upgrade: EPIPE" {
		t.Errorf("closing server: %q", got)
	}
	ln.Close()
	if got := probe(ln.Addr().String(), nil, 2*time.Second); got != "dial: refused" {
		t.Errorf("no server: %q", got)
	}
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	if got := probe(mute.Addr().String(), nil, 200*time.Millisecond); got != "upgrade: timeout" {
		t.Errorf("mute server: %q", got)
	}
}

func TestCheckAll(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan net.Conn, 3)
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			switch i {
			case 0: // refused
				_, _ = c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
				c.Close()
			case 1: // closed
				c.Close()
			default: // held
				served <- c
			}
		}
	}()
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	conns, rep := dialAll(&d, ln.Addr().String(), 3, 1, 5*time.Second)
	defer closeAll(conns)
	if rep.Connected != 3 || rep.NotAttempted != 0 {
		t.Fatalf("dial report %+v", rep)
	}
	held := <-served
	defer held.Close()
	deadline := time.Now().Add(2 * time.Second)
	for {
		st := checkAll(conns)
		if st.Open == 1 && st.Closed["HTTP 503"] == 1 && st.Closed["EOF"] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Dials to a closed port are counted by reason.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	ln2.Close()
	none, rep := dialAll(&d, ln2.Addr().String(), 4, 2, 5*time.Second)
	if len(none) != 0 || rep.Failed["refused"] != 4 {
		t.Fatalf("dial report %+v", rep)
	}
}

func TestFormatting(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 25000: "25,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q", n, got)
		}
	}
	if got := counts(map[string]int{"EOF": 2, "HTTP 503": 5, "RST": 0}); got != "7 (HTTP 503 5, EOF 2)" {
		t.Errorf("counts: %q", got)
	}
	for in, want := range map[string]string{"-servers": "-servers", "wsloop,gws": "wsloop,gws", "": "''", "a b": "'a b'", "it's": `'it'\''s'`} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	if got := cell("a|b\nc"); got != `a\|b / c` {
		t.Errorf("cell: %q", got)
	}
}
