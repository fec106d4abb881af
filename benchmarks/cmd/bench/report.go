package main

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// render writes the markdown report of one run.
func render(runs []Run, started time.Time) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("## Run of %s\n\n", started.UTC().Format("2006-01-02 15:04 MST"))
	p("- Command: `cd benchmarks && go run ./cmd/bench %s`\n", strings.Join(os.Args[1:], " "))
	p("- Machine: %s\n", machine())
	p("- Core split: server on CPU %q, load generators on CPU %q (taskset); every server gets `-loops 1`, the same flags and no heartbeats.\n", *serverCPU, *loadCPUs)
	p("- Took %s. The primary figure of each table is the server's CPU time (utime+stime from /proc/PID/stat over the measured phase) per message, or RSS growth per connection; \"× wsloop\" and \"× floor\" divide a server's figure by wsloop's and by the floor's (above 1: costs more). \"loadgen\" is the load generators' CPU in cores: near 1.0 means the client was saturated and msgs/s is the client's limit, not the server's.\n\n", time.Since(started).Round(time.Second))

	by := func(scenario string, match func(Run) bool) []Run {
		var out []Run
		for _, r := range runs {
			if r.Scenario == scenario && match(r) {
				out = append(out, r)
			}
		}
		return out
	}
	find := func(rs []Run, server string) *Run {
		for i := range rs {
			if rs[i].Server == server && rs[i].Errors == 0 {
				return &rs[i]
			}
		}
		return nil
	}
	ratio := func(v float64, base *Run, get func(Run) float64) string {
		if base == nil || get(*base) == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", v/get(*base))
	}
	status := func(r Run) string {
		if r.Errors > 0 {
			return " **FAILED**: " + strings.ReplaceAll(firstLines(r.Failure, 1), "|", "/")
		}
		return ""
	}

	// Idle memory.
	var idleNs []int
	for _, r := range runs {
		if r.Scenario == "idle" && !containsInt(idleNs, r.Conns) {
			idleNs = append(idleNs, r.Conns)
		}
	}
	for _, n := range idleNs {
		rs := by("idle", func(r Run) bool { return r.Conns == n })
		w, f := find(rs, "wsloop"), find(rs, "floor")
		bpc := func(r Run) float64 { return r.BytesPerConn }
		p("### Idle memory, %d connections\n\n", n)
		p("| server | RSS before | RSS after | bytes/conn | × wsloop | × floor | threads | alive | 1,000,000 conns |\n|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range rs {
			p("| %s | %s | %s | %.0f | %s | %s | %d | %d/%d | %s |%s\n", r.Server, mib(float64(r.RSSBefore)), mib(float64(r.RSSAfter)),
				r.BytesPerConn, ratio(r.BytesPerConn, w, bpc), ratio(r.BytesPerConn, f, bpc), r.Threads, r.Alive, r.Conns,
				mib(r.BytesPerConn*1e6), status(r))
		}
		p("\n")
	}

	// Echo and pipeline.
	cpu := func(r Run) float64 { return r.CPUPerMsgUs }
	type key struct{ conns, size, depth int }
	for _, scen := range []string{"echo", "pipeline"} {
		var keys []key
		for _, r := range runs {
			k := key{r.Conns, r.Size, r.Depth}
			if r.Scenario == scen && !containsKey(keys, k) {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			rs := by(scen, func(r Run) bool { return key{r.Conns, r.Size, r.Depth} == k })
			w, f := find(rs, "wsloop"), find(rs, "floor")
			if scen == "echo" {
				p("### Echo, closed loop: %d connections, %d B, one message in flight\n\n", k.conns, k.size)
			} else {
				p("### Echo, pipelined: %d connections, %d B, %d frames per write\n\n", k.conns, k.size, k.depth)
			}
			p("| server | msgs/s | p50 µs | p99 µs | p99.9 µs | server CPU/msg µs | × wsloop | × floor | loadgen cores |\n|---|---|---|---|---|---|---|---|---|\n")
			for _, r := range rs {
				p("| %s | %.0f | %.0f | %.0f | %.0f | %.2f | %s | %s | %.2f |%s\n", r.Server, r.MsgsPerS, r.P50us, r.P99us, r.P999us,
					r.CPUPerMsgUs, ratio(r.CPUPerMsgUs, w, cpu), ratio(r.CPUPerMsgUs, f, cpu), r.LoadgenCores, status(r))
			}
			p("\n")
		}
	}

	// Connect.
	if rs := by("connect", func(Run) bool { return true }); len(rs) > 0 {
		w, f := find(rs, "wsloop"), find(rs, "floor")
		p("### Connect rate: %d new connections, %d dials in flight\n\n", rs[0].Conns, 200)
		p("| server | upgrades/s | p50 µs | p99 µs | server CPU/upgrade µs | × wsloop | × floor | loadgen cores |\n|---|---|---|---|---|---|---|---|\n")
		for _, r := range rs {
			p("| %s | %.0f | %.0f | %.0f | %.1f | %s | %s | %.2f |%s\n", r.Server, r.ConnectsPS, r.P50us, r.P99us, r.CPUPerMsgUs,
				ratio(r.CPUPerMsgUs, w, cpu), ratio(r.CPUPerMsgUs, f, cpu), r.LoadgenCores, status(r))
		}
		p("\n")
	}

	// Fan-out.
	if rs := by("fanout", func(Run) bool { return true }); len(rs) > 0 {
		p("### Fan-out: one publisher, %d subscribers in one room\n\n", rs[0].Conns)
		p("The publisher sends when fewer than `inflight` publishes are still on their way; latency is publish → last subscriber. gorilla-hub is gorilla/websocket's chat-example hub (goroutine per connection, a channel per client).\n\n")
		p("| server | size | inflight | delivered/s | publishes/s | p50 µs | p99 µs | server CPU/delivered µs | hub ÷ wsloop delivered/s | hub ÷ wsloop CPU | loadgen cores |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range rs {
			var base *Run
			for i := range rs {
				if rs[i].Server == "wsloop-room" && rs[i].Size == r.Size && rs[i].Inflight == r.Inflight && rs[i].Errors == 0 {
					base = &rs[i]
				}
			}
			pubs := 0.0
			if r.DurationS > 0 {
				pubs = float64(r.Publishes) / r.DurationS
			}
			p("| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %.3f | %s | %s | %.2f |%s\n", r.Server, r.Size, r.Inflight, r.MsgsPerS, pubs,
				r.P50us, r.P99us, r.CPUPerMsgUs, ratio(r.MsgsPerS, base, func(r Run) float64 { return r.MsgsPerS }),
				ratio(r.CPUPerMsgUs, base, cpu), r.LoadgenCores, status(r))
		}
		p("\n")
	}

	p("%s", targets(runs))
	return b.String()
}

// targets checks the targets against this run.
func targets(runs []Run) string {
	get := func(scen, server string, conns, size int) *Run {
		for i := range runs {
			r := &runs[i]
			if r.Scenario == scen && r.Server == server && r.Conns == conns && (size == 0 || r.Size == size) && r.Errors == 0 {
				return r
			}
		}
		return nil
	}
	var b strings.Builder
	line := func(ok bool, format string, args ...any) {
		mark := "FAIL"
		if ok {
			mark = "PASS"
		}
		fmt.Fprintf(&b, "- **%s** %s\n", mark, fmt.Sprintf(format, args...))
	}
	b.WriteString("### Targets\n\n")
	n := 0
	for _, nn := range []int{10000, 500} {
		if get("idle", "wsloop", nn, 0) != nil {
			n = nn
			break
		}
	}
	if w := get("idle", "wsloop", n, 0); w != nil {
		if f := get("idle", "floor", n, 0); f != nil {
			r := w.BytesPerConn / f.BytesPerConn
			line(r <= 2, "idle bytes/conn at %d: wsloop %.0f, floor %.0f: %.2f× the floor (target ≤ 2×)", n, w.BytesPerConn, f.BytesPerConn, r)
		}
		if g := get("idle", "gorilla", n, 0); g != nil {
			r := w.BytesPerConn / g.BytesPerConn
			line(r <= 0.1, "idle bytes/conn at %d: %.3f× gorilla's %.0f (target ≤ 0.1×)", n, r, g.BytesPerConn)
		}
		best := ""
		bestV := 0.0
		for _, peer := range []string{"gws", "nbio"} {
			if p := get("idle", peer, n, 0); p != nil && (best == "" || p.BytesPerConn < bestV) {
				best, bestV = peer, p.BytesPerConn
			}
		}
		if best != "" {
			line(w.BytesPerConn <= bestV, "idle bytes/conn at %d: %.2f× the best event-loop peer (%s, %.0f) (target ≤ 1×)", n, w.BytesPerConn/bestV, best, bestV)
		}
	}
	c := 1000
	if get("echo", "wsloop", c, 64) == nil {
		c = 50
	}
	if w := get("echo", "wsloop", c, 64); w != nil {
		if f := get("echo", "floor", c, 64); f != nil {
			r := w.CPUPerMsgUs / f.CPUPerMsgUs
			line(r <= 1.15, "server CPU per 64 B echo, C=%d: wsloop %.2f µs, floor %.2f µs: %.2f× (target ≤ 1.15×)", c, w.CPUPerMsgUs, f.CPUPerMsgUs, r)
		}
		worst := ""
		for _, peer := range allServers[2:] {
			if p := get("echo", peer, c, 64); p != nil && p.CPUPerMsgUs < w.CPUPerMsgUs {
				worst += fmt.Sprintf(" %s %.2f µs", peer, p.CPUPerMsgUs)
			}
		}
		line(worst == "", "server CPU per 64 B echo, C=%d: no peer below wsloop's %.2f µs%s", c, w.CPUPerMsgUs, map[bool]string{true: "", false: " (below:" + worst + ")"}[worst == ""])
		bestP99, best := 0.0, ""
		for _, peer := range allServers[2:] {
			if p := get("echo", peer, c, 64); p != nil && (best == "" || p.P99us < bestP99) {
				best, bestP99 = peer, p.P99us
			}
		}
		if best != "" {
			line(w.P99us <= bestP99, "p99 latency, 64 B, C=%d: wsloop %.0f µs, best peer %s %.0f µs: %.2f× (target ≤ 1×)", c, w.P99us, best, bestP99, w.P99us/bestP99)
		}
	}
	pc := 200
	if get("pipeline", "wsloop", pc, 64) == nil {
		pc = 20
	}
	if w := get("pipeline", "wsloop", pc, 64); w != nil {
		if f := get("pipeline", "floor", pc, 64); f != nil {
			r := w.CPUPerMsgUs / f.CPUPerMsgUs
			line(r <= 2, "server CPU per 64 B message, pipelined ×16, C=%d: wsloop %.3f µs, floor %.3f µs: %.2f× (target ≤ 2×)", pc, w.CPUPerMsgUs, f.CPUPerMsgUs, r)
		}
		if g := get("pipeline", "gorilla", pc, 64); g != nil {
			r := w.CPUPerMsgUs / g.CPUPerMsgUs
			line(r <= 0.25, "server CPU per 64 B message, pipelined ×16, C=%d: %.3f× gorilla's %.3f µs (target ≤ 0.25×)", pc, r, g.CPUPerMsgUs)
		}
	}
	return b.String() + "\n"
}

func mib(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	default:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func containsKey[K comparable](s []K, v K) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
