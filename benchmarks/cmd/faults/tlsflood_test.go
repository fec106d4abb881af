package main

import (
	"crypto/tls"
	"encoding/binary"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

// setFlag sets a flag for one test and restores it after.
func setFlag(t *testing.T, name, value string) {
	t.Helper()
	old := flag.Lookup(name).Value.String()
	if err := flag.Set(name, value); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = flag.Set(name, old) })
}

// waitFor polls cond every 10 ms until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseTCPQueues(t *testing.T) {
	text := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n" +
		"   1: 0100007F:C350 0100007F:1F90 01 00010000:00000000 00:00000000 00000000     0        0 2 1 0 20 4 30 10 -1\n" +
		"   2: 0100007F:1F90 0100007F:C350 01 00000000:0000FFFF 00:00000000 00000000     0        0 3 1 0 20 4 30 10 -1\n"
	q, err := parseTCPQueues([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var lo [4]byte
	binary.NativeEndian.PutUint32(lo[:], 0x0100007F)
	ip := netip.AddrFrom4(lo)
	cl, sv := netip.AddrPortFrom(ip, 0xC350), netip.AddrPortFrom(ip, 0x1F90)
	if got := q[tcpKey{cl, sv}]; got != (tcpQueues{tx: 0x10000}) {
		t.Errorf("client socket: %+v", got)
	}
	if got := q[tcpKey{sv, cl}]; got != (tcpQueues{rx: 0xFFFF}) {
		t.Errorf("server socket: %+v", got)
	}
	if len(q) != 3 {
		t.Errorf("%d sockets", len(q))
	}
	if _, err := parseTCPQueues([]byte("header\n 0: 0100007F 00000000:0000 0A 00000000:00000000\n")); err == nil {
		t.Error("no error for an address without a port")
	}

	// A real socket pair: what the client writes and the server does not
	// read shows in the server socket's receive queue.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := c.Write(make([]byte, 12345)); err != nil {
		t.Fatal(err)
	}
	local, remote := netip.MustParseAddrPort(c.LocalAddr().String()), netip.MustParseAddrPort(c.RemoteAddr().String())
	var last tcpQueues
	waitFor(t, 5*time.Second, "12345 bytes in the server's receive queue", func() bool {
		q, err := readTCPQueues()
		if err != nil {
			t.Fatal(err)
		}
		last = q[tcpKey{remote, local}]
		return last.rx == 12345 && q[tcpKey{local, remote}].tx == 0
	})
}

func TestParseStatusKB(t *testing.T) {
	status := []byte("Name:\tx\nVmHWM:\t  9999 kB\nVmRSS:\t    1234 kB\n")
	if n, err := parseStatusKB(status, "VmHWM"); err != nil || n != 9999<<10 {
		t.Errorf("VmHWM: %d, %v", n, err)
	}
	if _, err := parseStatusKB(status, "VmSwap"); err == nil {
		t.Error("no error for a missing line")
	}
	rss, hwm, err := vmRSSHWM(os.Getpid())
	if err != nil || rss < 1<<20 || hwm < rss {
		t.Errorf("own VmRSS %d, VmHWM %d, %v", rss, hwm, err)
	}
}

func TestParseLists(t *testing.T) {
	if got, err := parseCounts("1, 32"); err != nil || !reflect.DeepEqual(got, []int{1, 32}) {
		t.Errorf("parseCounts: %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "1,x", "-2", "4,4"} {
		if _, err := parseCounts(bad); err == nil {
			t.Errorf("parseCounts(%q): no error", bad)
		}
	}
	if got, err := pick("wsloop, gorilla", knownServers); err != nil || !reflect.DeepEqual(got, []string{"wsloop", "gorilla"}) {
		t.Errorf("pick: %v, %v", got, err)
	}
	if got, err := pick("tlsflood", knownScenarios); err != nil || got[0] != "tlsflood" {
		t.Errorf("pick tlsflood: %v, %v", got, err)
	}
	if _, err := pick("tlsflod", knownScenarios); err == nil {
		t.Error("pick: no error for an unknown scenario")
	}
}

// TestQuick checks that -quick sets its sizes, except those given on the
// command line, and that every one of them is a valid flag value.
func TestQuick(t *testing.T) {
	for name := range quickSizes {
		setFlag(t, name, flag.Lookup(name).DefValue) // restored after the test
	}
	setFlag(t, "conns", "77")
	if err := applyQuick(map[string]bool{"conns": true}); err != nil {
		t.Fatal(err)
	}
	if *conns != 77 {
		t.Errorf("-conns given as 77 became %d", *conns)
	}
	if *tlsFloodBytes != 8<<20 || *tlsProbeAt != 2<<20 || *serversArg != "wsloop,gorilla" || *stall != time.Second || *outFile != "" || *jsonFile != "" {
		t.Errorf("-quick left -tls-flood-bytes %d, -tls-probe-at %d, -servers %s, -stall %v, -out %q, -json %q", *tlsFloodBytes, *tlsProbeAt, *serversArg, *stall, *outFile, *jsonFile)
	}
}

// tlsEcho serves gorillaEcho over TLS with the run's certificate.
func tlsEcho(t *testing.T, cert *certFiles) string {
	kp, err := tls.LoadX509KeyPair(cert.cert, cert.key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(gorillaEcho))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}, NextProtos: []string{"http/1.1"}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the plain probe's handshake error
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

// TestTLSClient checks the ClientHello the flood starts with, the wss
// probe against a server that answers and one that never does, and the
// echo connections' phases.
func TestTLSClient(t *testing.T) {
	cert, err := newCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := cert.hello
	if len(h) < 50 || h[0] != 0x16 || int(binary.BigEndian.Uint16(h[3:5])) != len(h)-5 || h[5] != 1 {
		t.Fatalf("ClientHello of %d bytes starting % x", len(h), h[:min(len(h), 6)])
	}

	addr := tlsEcho(t, cert)
	if got := probe(addr, cert.client, 3*time.Second); got != "ok" {
		t.Errorf("wss echo server: %q", got)
	}
	if got := probe(addr, nil, 3*time.Second); got == "ok" {
		t.Error("a plain probe of a TLS server came back ok")
	}
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	if got := probe(mute.Addr().String(), cert.client, 200*time.Millisecond); got != "tls: timeout" {
		t.Errorf("server that never handshakes: %q", got)
	}

	e, err := startEchoes(addr, cert.client, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	count := func(ph int) func() bool {
		return func() bool {
			e.mu.Lock()
			defer e.mu.Unlock()
			return len(e.lat[0][ph]) >= 3 && len(e.lat[1][ph]) >= 3
		}
	}
	waitFor(t, 5*time.Second, "3 echoes on each connection before", count(phaseBefore))
	e.next(phaseFlood)
	waitFor(t, 5*time.Second, "3 echoes on each connection in the flood", count(phaseFlood))
	before, during := e.stop()
	for i, l := range append(before, during...) {
		if l.N < 3 || l.Errors != 0 || l.P50us <= 0 || l.P50us > l.P99us || l.P99us > l.MaxUs {
			t.Errorf("summary %d: %+v", i, l)
		}
	}
}

// TestFloodRead floods a server that reads a known number of bytes and
// then stops reading, and one that closes after them: the writes must
// stall (or fail), and the bytes read by the server come out exact in the
// first case and as a lower bound from the samples in the second.
func TestFloodRead(t *testing.T) {
	const readN = 300 << 10
	setFlag(t, "tls-flood-bytes", "67108864")
	setFlag(t, "stall", "300ms")
	setFlag(t, "tls-flood-timeout", "20s")
	for _, closeAfter := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		held := make(chan net.Conn, 2)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					_, _ = io.CopyN(io.Discard, c, readN)
					if closeAfter {
						c.Close() // unread data: the kernel answers RST
						return
					}
					held <- c
				}()
			}
		}()
		fl, err := dialFlood(ln.Addr().String(), 2)
		if err != nil {
			t.Fatal(err)
		}
		defer fl.close()
		smp := startTLSSampler(os.Getpid(), fl)
		fl.start([]byte("\x16\x03\x01hello"))
		fl.wait()
		w := fl.writtenEach()
		q, err := readTCPQueues()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(60 * time.Millisecond) // one more sample
		smp.end()
		if w := fl.totalWritten(); w <= 2*readN || w >= 64<<20 {
			t.Errorf("close %v: %d bytes written", closeAfter, w)
		}
		for i := range fl.conns {
			n, ok := fl.readBySocket(i, w[i], q)
			switch {
			case !closeAfter && (!ok || n != readN):
				t.Errorf("socket %d: read %d (%v), want exactly %d; ended %q", i, n, ok, readN, fl.ends[i])
			case !closeAfter && !strings.HasPrefix(fl.ends[i], "stalled"):
				t.Errorf("socket %d ended %q, want a stall", i, fl.ends[i])
			case closeAfter && ok:
				t.Errorf("socket %d still in /proc/net/tcp after the server closed it (read %d, ended %q)", i, n, fl.ends[i])
			case closeAfter && smp.lastRead(i) > readN: // a lower bound (often 0: the server reads and closes within one sample)
				t.Errorf("socket %d: sampled %d read, more than the %d the server read", i, smp.lastRead(i), readN)
			case closeAfter && !strings.HasPrefix(fl.ends[i], "write: "):
				t.Errorf("socket %d ended %q, want a write error", i, fl.ends[i])
			}
		}
		fl.close()
		for len(held) > 0 {
			(<-held).Close()
		}
	}
}

// sample is a saved run with every kind of row.
func sample() *saved {
	return &saved{
		Command: "cd benchmarks && go run ./cmd/faults -scenarios tlsflood", Date: time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC),
		Took: dur(95 * time.Second), Load: "1.00 0.50 0.25",
		Machine: runinfo.Machine{CPU: "Test CPU", Cores: 2, Kernel: "6.18", Go: "go1.26.8"},
		Setup: setup{Nofile: 20000, HandshakeTimeout: dur(time.Minute), Conns: 25000, PerWorker: 10000, DialConc: 256,
			DialTimeout: dur(2 * time.Second), DialPhase: dur(30 * time.Second), Hold: dur(3 * time.Second),
			RecoverTimeout: dur(30 * time.Second), ProbeTimeout: dur(3 * time.Second), PingBytes: 128 << 20, PingBatch: 1 << 20,
			PingTimeout: dur(30 * time.Second), Stall: dur(5 * time.Second), Settle: dur(2 * time.Second), TLSHolders: 300,
			TLSFloodBytes: 64 << 20, TLSFloodSockets: []int{1, 32}, TLSFloodTimeout: dur(30 * time.Second), TLSProbeAt: 16 << 20, TLSEchoConns: 4},
		Servers: []serverInfo{
			{Name: "wsloop", Package: "./examples/echo", Tree: runinfo.Tree{Dir: "/r", Commit: "a0d777c0123456789abcdef0123456789abcdef0", Uncommitted: 2}, Args: []string{"-handshake-timeout", "1m0s"}},
			{Name: "gorilla", Package: "./servers/gorilla", Tree: runinfo.Tree{Dir: "/r/benchmarks", Commit: "a0d777c0123456789abcdef0123456789abcdef0"}},
			{Name: "nbio", Package: "./servers/nbio", BuildErr: "exit status 1: no Go"},
		},
		FD:   []fdResult{{Server: "wsloop", Connected: 10, Closed: map[string]int{"EOF": 1}, Recovery: "3 ms"}, {Server: "nbio", Failure: "build failed: z"}},
		Ping: []pingResult{{Server: "wsloop", Sent: 131 << 10, WriteEnd: "complete", RSSBefore: 1 << 20, RSSAtEnd: 2 << 20, RSSSettled: 3 << 20, Alive: true, Probe: "ok"}},
		TLS: []tlsResult{
			{Server: "wsloop", Sockets: 1, Holders: 300, Written: 58 << 20, ServerRead: 58 << 20, WriteS: 12.5, ReadS: 14.25, Ends: map[string]int{"stopped at the 30s bound": 1},
				RSSBefore: 10 << 20, RSSHolders: 12 << 20, RSSPeak: 429 << 20, HWM: 430 << 20, RSSEnd: 420 << 20, RSSAfter: 400 << 20,
				EchoBefore:   []latency{{N: 100, P50us: 63, P99us: 90, MaxUs: 120}, {N: 100, P50us: 60, P99us: 80, MaxUs: 100}},
				EchoDuring:   []latency{{N: 50, P50us: 120000, P99us: 300000, MaxUs: 900000}, {N: 100, Errors: 1, P50us: 70, P99us: 90, MaxUs: 150}},
				ProbeHolders: "tls: timeout", ProbeDuring: "tls: timeout", ProbeDuringAt: 16 << 20, ProbeAfter: "tls: timeout", ProbeReleased: "ok", Alive: true,
				Notes: []string{"first echo error: connection 1: timeout after 5 s"}},
			{Server: "gorilla", Sockets: 32, Holders: 300, Written: 9 << 20, ServerRead: 40 << 10, ReadLowerBound: true, WriteS: 0.2,
				Ends: map[string]int{"write: RST": 30, "complete": 2}, RSSBefore: 8 << 20, RSSHolders: 11 << 20, RSSPeak: 12 << 20, HWM: 12 << 20,
				RSSAfter: 11 << 20, EchoBefore: []latency{{N: 90, P50us: 80}}, EchoDuring: []latency{{N: 20, P50us: 90, MaxUs: 400}},
				ProbeHolders: "ok", ProbeDuring: "ok", ProbeAfter: "ok", ProbeReleased: "ok", Alive: true},
			{Server: "nbio", Sockets: 1, Failure: "build failed: exit status 1: no Go"},
		},
	}
}

// TestRender checks that a run renders the figures it holds, and that
// saving it as JSON and rendering it again gives the same report.
func TestRender(t *testing.T) {
	sv := sample()
	md := sv.markdown()
	for _, want := range []string{
		"## Faults run of 2026-11-27 09:30 UTC",
		"Machine: Test CPU, 2 cores, Linux 6.18, go1.26.8; load average 1.00 0.50 0.25 at the start; the run took 1m35s",
		"wsloop: ./examples/echo of /r at a0d777c + 2 uncommitted paths",
		"nbio: ./servers/nbio of  at not a git tree (**build failed**: exit status 1: no Go)",
		"`-handshake-timeout 1m0s`",
		"### fdflood", "| wsloop | 10 of 25,000", "| nbio | not run: build failed: z",
		"### pingflood", "+1.0 MiB / +2.0 MiB",
		"### tlsflood: 64 MiB at the TLS port behind 300 sockets",
		"| wsloop | 1 | 58.0 MiB in 12.5 s | 58.0 MiB by 14.2 s | stopped at the 30s bound | 10.0 MiB → 12.0 MiB | 429.0 MiB (430.0 MiB) | 400.0 MiB | +417.0 MiB / +388.0 MiB |",
		"| gorilla | 32 | 9.0 MiB in 0.2 s | ≥ 40 KiB by 0.0 s | write: RST 30, complete 2 |",
		"| wsloop | 1 | 63 µs | 120 ms | 900 ms | 1 | tls: timeout | tls: timeout (began at 16.0 MiB) | tls: timeout | ok | yes |",
		"| gorilla | 32 | 80 µs | 90 µs | 400 µs | 0 | ok | ok | ok | ok | yes |",
		"| nbio | 1 | not run: build failed: exit status 1: no Go |",
		"- tlsflood (1 sockets) wsloop: first echo error: connection 1: timeout after 5 s",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", md)
	}

	path := filepath.Join(t.TempDir(), "faults.json")
	if err := sv.write(path); err != nil {
		t.Fatal(err)
	}
	back, err := load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, sv) {
		t.Errorf("JSON round trip changed the run:\n got %+v\nwant %+v", back, sv)
	}
	if again := back.markdown(); again != md {
		t.Errorf("the report rendered from JSON differs:\n%s", again)
	}
	raw, _ := os.ReadFile(path)
	for _, want := range []string{`"handshake_timeout": "1m0s"`, `"tls_flood_sockets": [`, `"commit": "a0d777c0123456789abcdef0123456789abcdef0"`, `"server_read": 60817408`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("JSON lacks %s", want)
		}
	}
	if got := sv.failures(); len(got) != 2 || !strings.HasPrefix(got[1], "tlsflood nbio (1 sockets): build failed") {
		t.Errorf("failures: %q", got)
	}

	other := filepath.Join(t.TempDir(), "other.json")
	if err := os.WriteFile(other, []byte(`[{"scenario": "echo"}]`), 0o644); err == nil {
		if _, err := load(other); err == nil {
			t.Error("load took another tool's JSON")
		}
	}
	if err := os.WriteFile(other, []byte(`{"servers": []}`), 0o644); err == nil {
		if _, err := load(other); err == nil {
			t.Error("load took a JSON without command or date")
		}
	}
}
