package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/benchcert"
)

// TestWSSFanoutJobs checks the wss-fanout scenario's runs: the fanout
// shapes, over the fan-out servers that serve TLS only, rounds
// interleaved.
func TestWSSFanoutJobs(t *testing.T) {
	js := jobs(nil, fanoutServers, []string{"wss-fanout"}, false, 10*time.Second, 3)
	if len(js) != 2*2*3*len(tlsFanoutServers) {
		t.Fatalf("%d jobs, want %d", len(js), 2*2*3*len(tlsFanoutServers))
	}
	for i, j := range js {
		if j.scenario != "wss-fanout" || j.mode != "fanout" || j.conns != 10000 || j.server != tlsFanoutServers[i%len(tlsFanoutServers)] ||
			j.round != 1+(i/len(tlsFanoutServers))%3 {
			t.Fatalf("job %d: %+v", i, j)
		}
	}
	// With the plain scenario too, each round runs plain, then TLS.
	both := jobs(nil, []string{"wsloop-room", "uws-room"}, []string{"fanout", "wss-fanout"}, false, 10*time.Second, 2)
	var seq []string
	for _, j := range both[:6] {
		seq = append(seq, fmt.Sprintf("%s/%s/%d", j.scenario, j.server, j.round))
	}
	if want := "fanout/wsloop-room/1 fanout/uws-room/1 wss-fanout/wsloop-room/1 fanout/wsloop-room/2 fanout/uws-room/2 wss-fanout/wsloop-room/2"; strings.Join(seq, " ") != want {
		t.Fatalf("plain and TLS jobs: %v, want %s", seq, want)
	}
	if got := tlsOnly([]string{"uws-room", "nbio-room", "centrifuge-room", "wsloop-room"}); strings.Join(got, ",") != "nbio-room,wsloop-room" {
		t.Fatalf("tlsOnly: %v", got)
	}
	md := render(&saved{Date: time.Now(), Setup: setup{Duration: time.Second}, Runs: []Run{
		{Scenario: "wss-fanout", Server: "wsloop-room", Conns: 10000, Size: 64, Inflight: 1, MsgsPerS: 500000, CPUPerMsgUs: 1.5, RSSAfter: 300 << 20, TLS: "TLS 1.3 TLS_AES_128_GCM_SHA256 X25519"},
		{Scenario: "wss-fanout", Server: "nbio-room", Conns: 10000, Size: 64, Inflight: 1, MsgsPerS: 250000, CPUPerMsgUs: 3, RSSAfter: 400 << 20, TLS: "TLS 1.3 TLS_CHACHA20_POLY1305_SHA256 X25519"},
		{Scenario: "fanout", Server: "wsloop-room", Conns: 10000, Size: 64, Inflight: 1, MsgsPerS: 800000, CPUPerMsgUs: 1},
	}})
	for _, want := range []string{"### Fan-out over TLS (wss://): one publisher, 10,000 subscribers in one room, 64 B", "negotiated: TLS 1.3 TLS_AES_128_GCM_SHA256 X25519 with wsloop-room; TLS 1.3 TLS_CHACHA20_POLY1305_SHA256 X25519 with nbio-room.",
		"| nbio-room | 1 | 250000 | 0 | 0 | 0 | 3.000 | - | 0.50 | 2.00 | 400.0 MiB |", "| wsloop-room | 1 | 800000 | 0 | 0 | 0 | 1.000 | - |  |  | - |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

// TestWSSFanoutRoom runs one small wss-fanout job as the bench does, over
// real sockets: wsloop-room built and started with the run's certificate,
// cmd/fanout dialing it over TLS 1.3, every delivery checked.
func TestWSSFanoutRoom(t *testing.T) {
	if testing.Short() {
		t.Skip("builds wsloop-room and cmd/fanout")
	}
	mod, err := moduleDir()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, pkg := range []string{"./servers/wsloop-room", "./cmd/fanout"} {
		name := filepath.Base(pkg)
		c := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		c.Dir = mod
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
		bins[name] = filepath.Join(dir, name)
	}
	oldCert, oldKey, oldServer, oldLoad := tlsCert, tlsKey, *serverCPU, *loadCPUs
	t.Cleanup(func() { tlsCert, tlsKey, *serverCPU, *loadCPUs = oldCert, oldKey, oldServer, oldLoad })
	*serverCPU, *loadCPUs = "", ""
	if tlsCert, tlsKey, err = benchcert.Write(dir); err != nil {
		t.Fatal(err)
	}
	r := runJob(job{scenario: "wss-fanout", server: "wsloop-room", mode: "fanout", conns: 50, size: 1024, inflight: 4, dur: 500 * time.Millisecond})
	t.Logf("%s", r.summary())
	if r.Errors > 0 {
		t.Fatalf("%d errors: %s", r.Errors, r.Failure)
	}
	if r.Alive != 50 || r.Publishes == 0 || r.Messages != r.Publishes*50 {
		t.Fatalf("%d subscribers, %d publishes, %d delivered: want 50 subscribers, every publish delivered to each", r.Alive, r.Publishes, r.Messages)
	}
	if !strings.HasPrefix(r.TLS, "TLS 1.3 ") || r.RSSAfter == 0 || r.ServerCPUS <= 0 {
		t.Fatalf("TLS %q, RSS %d, server CPU %v", r.TLS, r.RSSAfter, r.ServerCPUS)
	}
}
