package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/hist"
	"github.com/wsloop/wsloop/benchmarks/internal/proc"
	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

// The client mode: this binary re-executed with -client holds -n viewers
// on one epoll loop (internal/wsload, Config.Viewers), talking to the
// orchestrator by lines. It prints READY, dials on DIAL (CONNECTED once
// done; from then on UP every second: upgrades, drops, reconnects, pongs
// and skipped messages so far), answers AWAIT SEQ T0 (T0: the publish's
// CLOCK_MONOTONIC time in ns) with GOT and the latencies of message SEQ,
// GAPS 1 or 0 at once (every viewer may, or may not, skip messages: the
// bus is restarted), and STOP with RESULT. With -reconnect, a viewer
// whose node dies dials again after a jittered backoff (-jitter). A viewer
// whose dial fails (refused, reset, no 101 within 10 s: a node too busy to
// finish the upgrade before its handshake timeout) tries again, 10 times
// in all, as a page would; the retries are counted.

// connected is the CONNECTED line.
type connected struct {
	Open     int     `json:"open"`
	Errors   int64   `json:"errors"`
	Retries  int64   `json:"retries"`
	ElapsedS float64 `json:"elapsed_s"`
}

// got is the GOT line: one broadcast as this process's viewers saw it.
type got struct {
	Seq     int       `json:"seq"`
	Got     int       `json:"got"`     // viewers that have the message, checked
	Open    int       `json:"open"`    // viewers open
	Skipped int       `json:"skipped"` // open viewers that passed over it (back from a reconnect, or the bus lost it)
	Fresh   int       `json:"fresh"`   // open viewers back from a reconnect with no message yet
	Lat     hist.Hist `json:"lat"`     // publish to each viewer's copy
}

// up is the UP line.
type up struct {
	Upgraded, Drops, Reconnects, Pongs, Skips int64
}

// clientResult is the RESULT line.
type clientResult struct {
	Open    int      `json:"open"`
	Errors  int64    `json:"errors"`
	Samples []string `json:"samples,omitempty"`
	CPUS    float64  `json:"cpu_s"`
	Pongs   int64    `json:"pongs"` // pings answered
	Drops   int64    `json:"drops"`
	Skips   int64    `json:"skips"`
}

func clientMain() error {
	dst, err := netip.ParseAddrPort(*cAddr)
	if err != nil {
		return err
	}
	var srcs []netip.Addr
	for s := range strings.SplitSeq(*cSrcs, ",") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return err
		}
		srcs = append(srcs, a)
	}
	e, err := wsload.New(wsload.Config{
		Addr: dst, Srcs: srcs, Size: *size, Seed: *seed, Pollers: 1,
		DialConcurrency: *dialConc, Timeout: 10 * time.Second, DialLimit: *cDialLimit, DialAttempts: 10,
		Viewers: *cMessages, ViewerID: publisherID, Reconnect: *cReconnect, ReconnectJitter: *jitter,
		Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) },
	})
	if err != nil {
		return err
	}
	defer e.Close()
	in := proc.StdinLines()
	fmt.Println("READY")
	if l, ok := <-in; !ok || l != "DIAL" {
		return fmt.Errorf("expected DIAL, got %q", l)
	}
	go func() {
		for range time.Tick(time.Second) {
			printJSON("UP", up{e.Upgraded(), e.Drops(), e.Reconnects(), e.Pongs(), e.Skips()})
		}
	}()
	r := e.Dial(*cN, false, false)
	printJSON("CONNECTED", connected{Open: r.Open, Errors: e.Errors(), Retries: e.Retries(), ElapsedS: r.Elapsed.Seconds()})
	// GAPS takes effect at once, even while an AWAIT waits: the
	// orchestrator sends it just before it kills the bus.
	cmds := make(chan string, 1024)
	go func() {
		defer close(cmds)
		for l := range in {
			switch l {
			case "GAPS 1", "GAPS 0":
				e.SetGaps(l == "GAPS 1")
			default:
				cmds <- l
			}
		}
	}()
	for l := range cmds {
		f := strings.Fields(l)
		switch {
		case len(f) == 3 && f[0] == "AWAIT":
			seq, err1 := strconv.Atoi(f[1])
			t0, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("bad line %q", l)
			}
			a := e.Await(seq, *awaitLimit)
			g := got{Seq: seq, Got: len(a.Arrivals), Open: a.Open, Skipped: a.Skipped, Fresh: a.Fresh}
			for _, t := range a.Arrivals {
				g.Lat.Record(t - t0)
			}
			printJSON("GOT", &g)
		case l == "STOP":
			r := clientResult{Open: e.Open(), Errors: e.Errors(), Samples: e.ErrorSamples(), CPUS: proc.SelfCPU().Seconds(), Pongs: e.Pongs(),
				Drops: e.Drops(), Skips: e.Skips()}
			printJSON("RESULT", r)
			return nil
		}
	}
	return nil
}

func printJSON(prefix string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	fmt.Println(prefix, string(b))
}
