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
// orchestrator by lines. It prints READY, dials on DIAL (UP n every
// second while dialling, CONNECTED once done), answers AWAIT SEQ T0
// (T0: the publish's CLOCK_MONOTONIC time in ns) with GOT and the
// latencies of message SEQ, and STOP with RESULT.

// connected is the CONNECTED line.
type connected struct {
	Open     int     `json:"open"`
	Errors   int64   `json:"errors"`
	Retries  int64   `json:"retries"`
	ElapsedS float64 `json:"elapsed_s"`
}

// got is the GOT line: one broadcast as this process's viewers saw it.
type got struct {
	Seq  int       `json:"seq"`
	Got  int       `json:"got"`  // viewers that have the message, checked
	Open int       `json:"open"` // viewers open
	Lat  hist.Hist `json:"lat"`  // publish to each viewer's copy
}

// clientResult is the RESULT line.
type clientResult struct {
	Open    int      `json:"open"`
	Errors  int64    `json:"errors"`
	Samples []string `json:"samples,omitempty"`
	CPUS    float64  `json:"cpu_s"`
	Pongs   int64    `json:"pongs"` // pings answered
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
		DialConcurrency: *dialConc, Timeout: 10 * time.Second,
		Viewers: *broadcasts, ViewerID: publisherID,
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
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Println("UP", e.Upgraded())
			}
		}
	}()
	r := e.Dial(*cN, false, false)
	close(done)
	printJSON("CONNECTED", connected{Open: r.Open, Errors: e.Errors(), Retries: e.Retries(), ElapsedS: r.Elapsed.Seconds()})
	for l := range in {
		f := strings.Fields(l)
		switch {
		case len(f) == 3 && f[0] == "AWAIT":
			seq, err1 := strconv.Atoi(f[1])
			t0, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 != nil || err2 != nil {
				return fmt.Errorf("bad line %q", l)
			}
			arr, open := e.Await(seq, *awaitLimit)
			g := got{Seq: seq, Got: len(arr), Open: open}
			for _, t := range arr {
				g.Lat.Record(t - t0)
			}
			printJSON("GOT", &g)
		case l == "STOP":
			r := clientResult{Open: e.Open(), Errors: e.Errors(), Samples: e.ErrorSamples(), CPUS: proc.SelfCPU().Seconds(), Pongs: e.Pongs()}
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
