package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/proc"
)

// fdResult is one server's row of the descriptor flood table.
type fdResult struct {
	Server       string         `json:"server"`
	Failure      string         `json:"failure,omitempty"` // the run could not be done (build, start)
	Workers      int            `json:"workers"`           // client processes
	Connected    int            `json:"connected"`         // dials that completed
	Slow         int            `json:"slow"`              // of those, how many took 1 s or more
	DialFailed   map[string]int `json:"dial_failed"`       // by reason
	NotAttempted int            `json:"not_attempted"`
	DialS        float64        `json:"dial_s"` // longest worker dial phase
	Closed       map[string]int `json:"closed"` // at the end of the hold, by reason
	Open         int            `json:"open"`   // at the end of the hold
	FDsBefore    int            `json:"fds_before"`
	FDsPeak      int            `json:"fds_peak"`
	AliveInFlood bool           `json:"alive_in_flood"`
	ProbeInFlood string         `json:"probe_in_flood"`
	Recovery     string         `json:"recovery"`       // "12 ms", "server exited (...)", "none within 30 s (last: ...)"
	Stop         string         `json:"stop,omitempty"` // anything odd about stopping the server
	Notes        []string       `json:"notes,omitempty"`
	Tail         []string       `json:"tail,omitempty"` // the server's last output lines, when it died
}

// fdSampler polls a process's descriptor count and keeps the peak.
type fdSampler struct {
	mu   sync.Mutex
	peak int
	stop chan struct{}
	done chan struct{}
}

func sampleFDs(pid int, every time.Duration) *fdSampler {
	s := &fdSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if n, err := proc.FDs(pid); err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, n)
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// end stops the sampler and returns the peak.
func (s *fdSampler) end() int {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// srcSeq rotates the workers' source addresses over 127.0.0.2 to
// 127.0.0.254 from run to run, so that sockets one run leaves in
// TIME_WAIT never take the ports the next run needs.
var srcSeq int

func nextSource() string {
	a := fmt.Sprintf("127.0.0.%d", 2+srcSeq%253)
	srcSeq++
	return a
}

func runFDFlood(spec serverSpec) (r fdResult) {
	r = fdResult{Server: spec.Name, DialFailed: map[string]int{}, Closed: map[string]int{}}
	srv, failure := launch(spec)
	if failure != "" {
		r.Failure = failure
		return r
	}
	var workers []*child
	defer func() {
		for _, w := range workers {
			w.Stdin.Close()
			if w.Wait(10 * time.Second) {
				r.Notes = append(r.Notes, w.Name+" did not exit within 10 s (killed)")
			}
		}
		if srv.Alive() {
			r.Stop = srv.stop()
		}
	}()
	time.Sleep(200 * time.Millisecond)
	r.FDsBefore, _ = proc.FDs(srv.Pid())
	sampler := sampleFDs(srv.Pid(), 100*time.Millisecond)
	sampling := true
	defer func() {
		if sampling {
			sampler.end()
		}
	}()

	// The flood: workers of at most -per-worker sockets each, sharing
	// -dial-concurrency dials in flight.
	nw := (*conns + *perWorker - 1) / *perWorker
	r.Workers = nw
	self, err := os.Executable()
	if err != nil {
		r.Failure = err.Error()
		return r
	}
	for i := range nw {
		n := *conns / nw
		if i < *conns%nw {
			n++
		}
		w, err := start(fmt.Sprintf("worker %d", i), true, self, workerFlag,
			"-addr", srv.addr, "-src", nextSource(), "-n", fmt.Sprint(n),
			"-concurrency", fmt.Sprint(max(1, *dialConc/nw)),
			"-dial-timeout", dialTimeout.String(), "-dial-phase", dialPhase.String())
		if err != nil {
			r.Failure = err.Error()
			return r
		}
		workers = append(workers, w)
	}
	for _, w := range workers {
		line, err := w.Expect("DIALED", *dialPhase+*dialTimeout+30*time.Second)
		if err != nil {
			r.Failure = err.Error()
			return r
		}
		var d dialReport
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			r.Failure = fmt.Sprintf("%s: bad DIALED line %.100q", w.Name, line)
			return r
		}
		r.Connected += d.Connected
		r.Slow += d.Slow
		r.NotAttempted += d.NotAttempted
		r.DialS = max(r.DialS, d.ElapsedS)
		for k, v := range d.Failed {
			r.DialFailed[k] += v
		}
		for _, why := range slices.Sorted(maps.Keys(d.Samples)) {
			s := d.Samples[why]
			if !slices.ContainsFunc(r.Notes, func(n string) bool { return strings.HasPrefix(n, "dial error ("+why+")") }) {
				r.Notes = append(r.Notes, fmt.Sprintf("dial error (%s), e.g. %s: %s", why, w.Name, s))
			}
		}
	}
	fmt.Fprintf(os.Stderr, "  %s: %d of %d connected in %.1fs, holding %v\n", spec.Name, r.Connected, *conns, r.DialS, *hold)

	// Hold the flood, then look at the server and the sockets.
	time.Sleep(*hold)
	r.AliveInFlood = srv.Alive()
	r.ProbeInFlood = probe(srv.addr, nil, *probeTimeout)
	for _, w := range workers {
		w.Send("STATUS")
		line, err := w.Expect("STATUS", 30*time.Second)
		var st statusReport
		if err == nil {
			err = json.Unmarshal([]byte(line), &st)
		}
		if err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("%s: no status: %v", w.Name, err))
			continue
		}
		r.Open += st.Open
		for k, v := range st.Closed {
			r.Closed[k] += v
		}
	}
	r.FDsPeak = sampler.end()
	sampling = false

	// Close the flood, then time the first upgrade+echo that works.
	for _, w := range workers {
		w.Send("CLOSE")
	}
	for _, w := range workers {
		if _, err := w.Expect("CLOSED", 30*time.Second); err != nil {
			r.Notes = append(r.Notes, err.Error())
		}
	}
	r.Recovery = timeRecovery(srv)
	if !srv.Alive() {
		r.Tail = srv.Out.LastLines(6)
	}
	return r
}

// timeRecovery retries an upgrade+echo every 10 ms until one works, for
// at most -recover-timeout.
func timeRecovery(srv *server) string {
	t0 := time.Now()
	last := ""
	for time.Since(t0) < *recoverTimeout {
		if !srv.Alive() {
			<-srv.Exited
			return "server exited (" + srv.status() + ")"
		}
		last = probe(srv.addr, nil, time.Second)
		if last == "ok" {
			return fmtDuration(time.Since(t0))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !srv.Alive() {
		return "server exited (" + srv.status() + ")"
	}
	return fmt.Sprintf("none within %v (last: %s)", *recoverTimeout, last)
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

// counts renders {"HTTP 503": 5, "EOF": 2} as "5 (HTTP 503 5, EOF 2)", the
// largest first.
func counts(m map[string]int) string {
	total := 0
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range m {
		if v > 0 {
			total += v
			kvs = append(kvs, kv{k, v})
		}
	}
	if total == 0 {
		return "0"
	}
	slices.SortFunc(kvs, func(a, b kv) int {
		if a.v != b.v {
			return cmp.Compare(b.v, a.v)
		}
		return strings.Compare(a.k, b.k)
	})
	parts := make([]string, len(kvs))
	for i, e := range kvs {
		parts[i] = e.k + " " + thousands(e.v)
	}
	return thousands(total) + " (" + strings.Join(parts, ", ") + ")"
}

// thousands renders 25000 as "25,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
