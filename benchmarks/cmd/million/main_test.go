package main

import (
	"strings"
	"testing"
	"time"
)

// TestSmall runs the harness end to end at a small scale: NATS, two nodes
// sharing one port, one client process with 2,000 viewers, 5 broadcasts.
// Every viewer must have every message, checked; both nodes must hold
// viewers (so that a publish crossed the bus to reach the other node's);
// every process must be gone afterwards.
func TestSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS, two nodes and a client process")
	}
	// Pings every second, eviction after 3 s of silence, 4 s held: every
	// viewer answers pings or is gone before the broadcasts.
	p := plan{Conns: 2000, Nodes: 3, Clients: 1, Srcs: 2, Broadcasts: 5, Size: 64, Timeout: 2 * time.Minute,
		Hold: 4 * time.Second, Ping: time.Second, Idle: 3 * time.Second, Danmaku: 3 * time.Second, Faults: true, Jitter: 500 * time.Millisecond, NATSDown: 1500 * time.Millisecond, Window: 2, ReconnectLimit: time.Minute}
	r := &runner{logf: t.Logf}
	res, err := r.run(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + res.text())
	if res.Viewers != p.Conns || res.Errors != 0 {
		t.Fatalf("%d viewers, %d errors", res.Viewers, res.Errors)
	}
	if len(res.NodeConns) != 3 || res.NodeConns[0] < 100 || res.NodeConns[1] < 100 || res.NodeConns[2] < 100 || res.NodeConns[0]+res.NodeConns[1]+res.NodeConns[2] != p.Conns {
		t.Fatalf("viewers a node: %v (SO_REUSEPORT should spread %d over all three)", res.NodeConns, p.Conns)
	}
	if len(res.Danmaku) != 3 {
		t.Fatalf("%d danmaku messages", len(res.Danmaku))
	}
	for _, m := range res.Danmaku {
		if m.Delivered != p.Conns {
			t.Fatalf("danmaku message %d: %d delivered", m.Seq, m.Delivered)
		}
	}
	// The killed node's viewers came back to the others; the restarted
	// bus carried messages across nodes again.
	f := res.Faults
	if f.KilledNode == res.PublisherNode || f.KilledViewers < 100 || f.Dropped != int64(f.KilledViewers) || f.ReconnectS <= 0 || f.PeakReconnectsPerS <= 0 {
		t.Fatalf("faults: %+v (publisher on node%d)", f, res.PublisherNode)
	}
	// NATS down 1.5 s with one message a second: one at least was lost
	// to the other nodes' viewers (not to the publisher's node's).
	if f.NATSDownS < 1.5 || f.BusBackS < f.NATSDownS || f.FirstWholeT < f.NATSDownS || f.LostMessages < 1 || f.LostOnBus < 100 || len(f.Messages) < 6 {
		t.Fatalf("faults, NATS: %+v", f)
	}
	if res.Pongs < int64(p.Conns) {
		t.Fatalf("%d pings answered by %d viewers held %v with pings every %v", res.Pongs, p.Conns, p.Hold, p.Ping)
	}
	if len(res.Broadcasts) != p.Broadcasts {
		t.Fatalf("%d broadcasts", len(res.Broadcasts))
	}
	for _, b := range res.Broadcasts {
		if b.Delivered != p.Conns || b.MaxMs <= 0 {
			t.Fatalf("broadcast %d: %d delivered, last after %.3f ms", b.Seq, b.Delivered, b.MaxMs)
		}
	}
	for _, c := range r.children {
		if c.Alive() {
			t.Errorf("%s still running", c.Name)
		}
	}
	if !strings.Contains(res.text(), "every copy checked") {
		t.Fatal(res.text())
	}
}

// TestRefuses checks that a run the machine cannot hold is refused before
// anything starts, saying what is missing.
func TestRefuses(t *testing.T) {
	for _, c := range []struct {
		p    plan
		want string
	}{
		{plan{Conns: 100000, Nodes: 2, Clients: 10, Srcs: 4, Broadcasts: 1, Size: 64, Window: 1}, "a node"},
		{plan{Conns: 2_000_000, Nodes: 200, Clients: 110, Srcs: 4, Broadcasts: 1, Size: 64, Window: 1}, "-conns"},
		{plan{Conns: 40000, Nodes: 3, Clients: 1, Srcs: 4, Broadcasts: 1, Size: 64, Window: 1}, "client process"},
	} {
		r := &runner{logf: t.Logf}
		_, err := r.run(c.p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error about %q", c.p, err, c.want)
		}
		if len(r.children) > 0 {
			t.Errorf("%+v: started %d processes", c.p, len(r.children))
		}
	}
}
