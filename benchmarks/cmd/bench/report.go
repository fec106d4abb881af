package main

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

// render writes the markdown report of one bench invocation.
func render(sv *saved) string {
	runs := medians(sv.Runs)
	su := sv.Setup
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	mode := "full run"
	if su.Quick {
		mode = "quick smoke run: tiny sizes, the figures are not comparable with a full run"
	}
	p("## Run of %s (%s)\n\n", sv.Date.UTC().Format("2006-01-02 15:04 MST"), mode)
	p("- Command: `cd benchmarks && go run ./cmd/bench%s`", runinfo.QuoteArgs(sv.Args))
	if sv.Tree.Commit != "" {
		p(" at %s", sv.Tree)
	}
	p("\n- Go: `%s`\n", sv.Machine.Go)
	p("- Machine: %s, %d cores, Linux %s\n", sv.Machine.CPU, sv.Machine.Cores, sv.Machine.Kernel)
	if sv.UWS != nil {
		p("- uWebSockets: %s\n", sv.UWS)
	}
	p("- Core split: server on CPU %s, load generators on CPU %s (taskset); every server runs with `-loops 1`.\n", cpuList(su.ServerCPU), cpuList(su.LoadCPUs))
	p("- Measured phase %v per echo, pipeline and fan-out run (after %v of warm-up); a fresh server for every run; more than %d connections are spread over %d load generator processes with their own source addresses. Took %s.\n",
		su.Duration, su.Warmup, splitAbove, su.Procs, sv.Took.Round(time.Second))
	p("- Primary figures: the server's CPU time (utime+stime from /proc/PID/stat, from GO to the last RESULT) per message, and its RSS growth per idle connection. \"× wsloop\" and \"× floor\" divide a server's primary figure by wsloop's and by the floor's (above 1: costs more). \"server cores\" and \"loadgen cores\" are CPU time over the measured time: a load generator near 1.0 on one CPU was saturated, and msgs/s is then its limit rather than the server's. \"server allocs\" is the server's heap allocations (runtime.MemStats.Mallocs, asked for by signal just before GO and after the last RESULT) per message.\n\n")

	var failed []Run
	for _, r := range runs {
		if r.Errors > 0 {
			failed = append(failed, r)
		}
	}
	if len(failed) > 0 {
		p("**%d run(s) failed** (their rows are marked; ratios ignore them):\n\n", len(failed))
		for _, r := range failed {
			p("- %s %s, %d conns: %s\n", r.Scenario, r.Server, r.Conns, oneLine(r.Failure))
		}
		p("\n")
	}

	status := func(r Run) string {
		if r.Errors > 0 {
			return " **FAILED**"
		}
		return ""
	}
	groups := groupRuns(runs)
	spreadTold := false
	for _, g := range groups {
		rs := g.runs
		w, f := find(rs, "wsloop"), find(rs, "floor")
		switch g.scenario {
		case "idle":
			bpc := func(r Run) float64 { return r.BytesPerConn }
			p("### Idle memory, %s connections\n\n", thousands(g.conns))
			p("RSS read 1 s after READY, then after every connection is upgraded and %v of settling; bytes/conn is the growth over the connections. Every connection is then checked with one echo.\n\n", su.IdleSettle)
			p("| server | RSS before | RSS after | bytes/conn | × wsloop | × floor | threads | alive | 1,000,000 conns |\n|---|---|---|---|---|---|---|---|---|\n")
			for _, r := range rs {
				p("| %s%s | %s | %s | %.0f | %s | %s | %d | %d/%d | %s |\n", r.Server, status(r), size(float64(r.RSSBefore)), size(float64(r.RSSAfter)),
					r.BytesPerConn, ratio(r, w, bpc), ratio(r, f, bpc), r.Threads, r.Alive, r.Conns, size(r.BytesPerConn*1e6))
			}
		case "echo", "pipeline":
			cpuMsg := func(r Run) float64 { return r.CPUPerMsgUs }
			batch := ""
			if g.scenario == "echo" {
				p("### Echo, closed loop: %s connections, %d B, one message in flight\n\n", thousands(g.conns), g.size)
			} else {
				p("### Echo, pipelined: %s connections, %d B, %d frames per write\n\n", thousands(g.conns), g.size, g.depth)
				p("Latencies are of a batch: from its one write to its last echo.\n\n")
				batch = "batch "
			}
			n := 0
			for _, r := range rs {
				n = max(n, r.Rounds)
			}
			if n > 1 {
				p("Every figure is the median of %d rounds (all servers ran each round before the next began); \"p99 range\" is the lowest and highest p99 of the rounds.\n\n", n)
			}
			if !spreadTold {
				spreadTold = true
				p("\"Spread\" is how unevenly the server served its connections: the standard deviation of the round trips each connection completed, over their mean (0%% when every connection completed the same number).\n\n")
			}
			p("| server | msgs/s | %sp50 µs | %sp99 µs | %sp99.9 µs | p99 range µs | spread %% | server CPU/msg µs | × wsloop | × floor | server allocs/msg | server cores | loadgen cores |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n", batch, batch, batch)
			for _, r := range rs {
				rng := "-"
				if r.Rounds > 1 {
					rng = fmt.Sprintf("%.0f–%.0f", r.P99Min, r.P99Max)
				}
				p("| %s%s | %.0f | %.0f | %.0f | %.0f | %s | %.2f | %.3f | %s | %s | %.2f | %.2f | %.2f |\n", r.Server, status(r), r.MsgsPerS, r.P50us, r.P99us, r.P999us,
					rng, 100*r.SpreadCV, r.CPUPerMsgUs, ratio(r, w, cpuMsg), ratio(r, f, cpuMsg), r.AllocsPerMsg, r.ServerCores, r.LoadgenCores)
			}
		case "connect":
			cpuUp := func(r Run) float64 { return r.CPUPerMsgUs }
			p("### Connect rate: %s new connections, %d dials in flight\n\n", thousands(g.conns), dialConcurrency)
			p("Latency: socket() to the checked 101. Server CPU per upgrade includes one echo that checks each new connection (connections are closed after the measurement).%s\n\n", roundsNote(rs))
			p("| server | upgrades/s | range | p50 µs | p99 µs | server CPU/upgrade µs | range | × wsloop | × floor | server allocs/upgrade | server cores | loadgen cores | dial retries |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
			for _, r := range rs {
				p("| %s%s | %.0f | %s | %.0f | %.0f | %.1f | %s | %s | %s | %.1f | %.2f | %.2f | %d |\n", r.Server, status(r), r.ConnectsPerS, span(r, r.RateMin, r.RateMax, "%.0f"), r.P50us, r.P99us, r.CPUPerMsgUs,
					span(r, r.CPUMin, r.CPUMax, "%.1f"), ratio(r, w, cpuUp), ratio(r, f, cpuUp), r.AllocsPerMsg, r.ServerCores, r.LoadgenCores, r.DialRetries)
			}
		case "churn":
			cpuCycle := func(r Run) float64 { return r.CPUPerMsgUs }
			p("### Churn: %s connect/upgrade/echo/close cycles, %d in flight\n\n", thousands(g.conns), dialConcurrency)
			p("Each cycle dials, upgrades (the 101 checked), echoes one checked 64 B message and closes: even cycles with a close frame, waiting for the server's close frame and its FIN (the floor only echoes the close frame, and the client then closes); odd cycles close the socket at once without a close frame. Latency: socket() to the end of the close. \"server fds\" counts the server's descriptors before the first cycle and after the last (within 5 s): every cycle's socket must be closed.%s\n\n", roundsNote(rs))
			p("| server | cycles/s | range | p50 µs | p99 µs | server CPU/cycle µs | range | × wsloop | × floor | server allocs/cycle | server cores | loadgen cores | dial retries | server fds |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
			for _, r := range rs {
				p("| %s%s | %.0f | %s | %.0f | %.0f | %.1f | %s | %s | %s | %.1f | %.2f | %.2f | %d | %d→%d |\n", r.Server, status(r), r.ConnectsPerS, span(r, r.RateMin, r.RateMax, "%.0f"), r.P50us, r.P99us, r.CPUPerMsgUs,
					span(r, r.CPUMin, r.CPUMax, "%.1f"), ratio(r, w, cpuCycle), ratio(r, f, cpuCycle), r.AllocsPerMsg, r.ServerCores, r.LoadgenCores, r.DialRetries, r.FDsBefore, r.FDsAfter)
			}
		case "fanout", "wss-fanout":
			if g.scenario == "wss-fanout" {
				renderWSSFanoutIntro(p, g)
			} else {
				p("### Fan-out: one publisher, %s subscribers in one room, %d B\n\n", thousands(g.conns), g.size)
				p("The publisher keeps `inflight` publishes outstanding; latency is publish → last subscriber. gorilla-hub is gorilla/websocket's chat example (a hub goroutine, a goroutine per connection reading and one writing, a channel per client) with the example's write pump, which joins the messages queued for a client into one frame separated by newlines (the client splits them); it writes with the opcode the first message arrived with, where the example always writes text. gws-room is gws's Broadcaster (the frame encoded once, queued on each connection's write queue). centrifuge-room is centrifugal/centrifuge (the library behind Centrifugo) with its in-memory broker: clients speak its JSON protocol (connect, subscribe, publish) and a message arrives as a publication push, up to 16 joined into one frame, as centrifuge does by default; its size is the payload's, before the protocol's envelope and JSON string escaping.")
				if slices.ContainsFunc(rs, func(r Run) bool { return r.Server == "nbio-room" }) {
					p(" nbio-room is lesismal/nbio's non-blocking engine with a room (a slice of connections under a mutex): nbio has no broadcast helper and no way to write a frame encoded beforehand, so every message is written to each member with Conn.WriteMessage, which encodes the frame for that member.")
				}
				if slices.ContainsFunc(rs, func(r Run) bool { return r.Server == uwsRoom }) {
					p(" uws-room is uWebSockets (C++, one thread) with its own pub/sub: every connection subscribes to one topic and the App's publish sends each message to all of them, sender included; small messages are queued per subscriber and written at the end of the event loop's iteration. It is built from the checkouts named above (no TLS, no compression); its allocations are calls to malloc and its kin, counted by wrapping glibc's.")
				}
				p(" \"server RSS\" is the server's highest VmRSS over the measured phase (sampled every 250 ms), every subscriber connected.")
			}
			p(" \"÷ wsloop-room\" divides a figure by wsloop-room's.%s\n\n", roundsNote(rs))
			p("| server | inflight | delivered/s | publishes/s | p50 µs | p99 µs | server CPU/delivered µs | range | ÷ wsloop-room delivered/s | ÷ wsloop-room CPU/delivered | server RSS | server allocs/delivered | server cores | loadgen cores |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
			for _, r := range rs {
				room := findWhere(runs, func(o Run) bool {
					return o.Scenario == r.Scenario && o.Server == "wsloop-room" && o.Conns == r.Conns && o.Size == r.Size && o.Inflight == r.Inflight
				})
				pubs := 0.0
				if r.DurationS > 0 {
					pubs = float64(r.Publishes) / r.DurationS
				}
				hubRate, hubCPU := "", ""
				if r.Server != "wsloop-room" {
					hubRate = ratio(r, room, func(r Run) float64 { return r.MsgsPerS })
					hubCPU = ratio(r, room, func(r Run) float64 { return r.CPUPerMsgUs })
				}
				rss := "-"
				if r.RSSAfter > 0 {
					rss = size(float64(r.RSSAfter))
				}
				p("| %s%s | %d | %.0f | %.0f | %.0f | %.0f | %.3f | %s | %s | %s | %s | %.3f | %.2f | %.2f |\n", r.Server, status(r), r.Inflight, r.MsgsPerS, pubs,
					r.P50us, r.P99us, r.CPUPerMsgUs, span(r, r.CPUMin, r.CPUMax, "%.3f"), hubRate, hubCPU, rss, r.AllocsPerMsg, r.ServerCores, r.LoadgenCores)
			}
		case "deflate", "deflate-idle", "deflate-fanout":
			renderDeflate(p, g, status)
		}
		p("\n")
	}
	p("%s", targets(runs, su.Quick))
	return b.String()
}

// renderWSSFanoutIntro writes the heading and the text above a wss-fanout
// table: what each server does over TLS, and what was negotiated.
func renderWSSFanoutIntro(p func(string, ...any), g *group) {
	p("### Fan-out over TLS (wss://): one publisher, %s subscribers in one room, %d B\n\n", thousands(g.conns), g.size)
	// What was negotiated, and with which servers.
	var negotiated []string
	with := map[string][]string{}
	for _, r := range g.runs {
		if r.TLS == "" {
			continue
		}
		if !slices.Contains(negotiated, r.TLS) {
			negotiated = append(negotiated, r.TLS)
		}
		if !slices.Contains(with[r.TLS], r.Server) {
			with[r.TLS] = append(with[r.TLS], r.Server)
		}
	}
	for i, n := range negotiated {
		negotiated[i] = n + " with " + strings.Join(with[n], ", ")
	}
	p("As the fan-out scenario, every connection over TLS: the run's own certificate (ECDSA P-256, self-signed, made for the run), and a client (cmd/fanout -tls: Go's crypto/tls, a goroutine per subscriber reading through it) that trusts it alone and asks for TLS 1.3 with X25519 and ALPN http/1.1, the default cipher suites, no session resumption")
	if len(negotiated) > 0 {
		p("; negotiated: %s", strings.Join(negotiated, "; "))
	}
	p(". wsloop-room serves TLS with engine.WithTLS (crypto/tls on its event loop): a publish is encoded once and each member's copy encrypted into that member's records. gorilla-hub (gorilla/websocket's chat example, messages joined by newlines as in the fan-out scenario) and gws-room (gws's Broadcaster: the frame encoded once) serve it with net/http's ServeTLS (crypto/tls), each connection's writer encrypting its own copy. nbio-room is nbio's non-blocking engine with its fork of crypto/tls (lesismal/llib), which may settle on another cipher suite than the others (what each negotiated is listed above); nbio has no broadcast helper, so the room writes every message to each member with Conn.WriteMessage (the frame encoded per member), which that connection's TLS layer encrypts.")
	p(" \"server RSS\" is the server's highest VmRSS over the measured phase (sampled every 250 ms), every subscriber connected.")
}

// variantName names a compression scenario's payload.
func variantName(v string) string {
	if v == "deflate" {
		return "compressed"
	}
	return "plain"
}

// renderDeflate writes the tables of the compression scenarios: each
// server's compressed run next to its plain run with the same JSON.
func renderDeflate(p func(string, ...any), g *group, status func(Run) string) {
	rs := g.runs
	slices.SortStableFunc(rs, func(a, b Run) int {
		ab, bb := strings.TrimSuffix(a.Server, stdflateSuffix), strings.TrimSuffix(b.Server, stdflateSuffix)
		switch {
		case ab != bb:
			return strings.Compare(bb, ab) // wsloop first
		case a.Variant != b.Variant:
			return strings.Compare(b.Variant, a.Variant) // json (plain) first
		}
		return strings.Compare(a.Server, b.Server) // the -stdflate build last
	})
	// same finds r's server's run of variant (the klauspost build's plain
	// run for a -stdflate build: the plain run compresses nothing).
	same := func(r Run, variant string) *Run {
		base := strings.TrimSuffix(r.Server, stdflateSuffix)
		return findWhere(rs, func(o Run) bool { return o.Server == base && o.Variant == variant })
	}
	wsloopOf := func(r Run) *Run {
		return findWhere(rs, func(o Run) bool { return o.Server == "wsloop" && o.Variant == r.Variant })
	}
	if g.scenario == "deflate-idle" {
		bpc := func(r Run) float64 { return r.BytesPerConn }
		p("### Compression: idle memory, %s connections\n\n", thousands(g.conns))
		p("As the idle scenario, with every connection offering permessage-deflate as a browser does (\"compressed\") or not (\"plain\"); each is then checked with one 1 KiB JSON echo, compressed when negotiated.\n\n")
		p("| server | connections | RSS before | RSS after | bytes/conn | × plain | × wsloop | alive |\n|---|---|---|---|---|---|---|---|\n")
		for _, r := range rs {
			p("| %s%s | %s | %s | %s | %.0f | %s | %s | %d/%d |\n", r.Server, status(r), variantName(r.Variant), size(float64(r.RSSBefore)), size(float64(r.RSSAfter)),
				r.BytesPerConn, ratio(r, same(r, "json"), bpc), ratio(r, wsloopOf(r), bpc), r.Alive, r.Conns)
		}
		return
	}
	cpuMsg := func(r Run) float64 { return r.CPUPerMsgUs }
	wire := func(r Run) float64 { return r.WirePerMsg }
	if g.scenario == "deflate-fanout" {
		p("### Compression: fan-out, one publisher, %s subscribers in one room, %d B of chat-like JSON\n\n", thousands(g.conns), g.size)
		p("As the fan-out scenario (16 publishes in flight), with the same JSON plain and with every connection offering permessage-deflate as a browser does (\"compressed\"): the publisher sends compressed messages, the server inflates each and publishes it. \"wire B/delivery\" is the payload a subscriber received. The client inflates a message once and compares every other copy byte for byte with it: \"inflated\" counts the copies it had to inflate (one per publish when every subscriber gets the same bytes), \"compressed apart\" the copies whose bytes differed from another copy of the same message.\n\n")
		p("| server | messages | delivered/s | p50 µs | p99 µs | wire B/delivery | × plain wire | server CPU/delivered µs | × plain CPU | server allocs/delivered | publishes | inflated | compressed apart | server cores | loadgen cores |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, r := range rs {
			p("| %s%s | %s | %.0f | %.0f | %.0f | %.0f | %s | %.3f | %s | %.3f | %d | %d | %d | %.2f | %.2f |\n", r.Server, status(r), variantName(r.Variant), r.MsgsPerS, r.P50us, r.P99us,
				r.WirePerMsg, ratio(r, same(r, "json"), wire), r.CPUPerMsgUs, ratio(r, same(r, "json"), cpuMsg), r.AllocsPerMsg, r.Publishes, r.Inflated, r.Reencoded, r.ServerCores, r.LoadgenCores)
		}
		return
	}
	p("### Compression: echo, closed loop: %s connections, %d B of chat-like JSON, one message in flight\n\n", thousands(g.conns), g.size)
	p("The same JSON messages plain, and compressed both ways (the client offers permessage-deflate as a browser does and compresses every message; the server inflates it and compresses the echo). \"wire B/msg\" is what crossed the sockets per echo, both frames with their headers. \"× plain\" divides by the same server's plain run. wsloop-stdflate is wsloop built with -tags wsloop_stdflate: the standard library's compress/flate instead of klauspost/compress.\n\n")
	p("| server | messages | msgs/s | p50 µs | p99 µs | wire B/msg | × plain wire | server CPU/msg µs | × plain CPU | × wsloop CPU | server allocs/msg | server cores | loadgen cores |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		p("| %s%s | %s | %.0f | %.0f | %.0f | %.0f | %s | %.2f | %s | %s | %.2f | %.2f | %.2f |\n", r.Server, status(r), variantName(r.Variant), r.MsgsPerS, r.P50us, r.P99us,
			r.WirePerMsg, ratio(r, same(r, "json"), wire), r.CPUPerMsgUs, ratio(r, same(r, "json"), cpuMsg), ratio(r, wsloopOf(r), cpuMsg), r.AllocsPerMsg, r.ServerCores, r.LoadgenCores)
	}
}

type group struct {
	scenario           string
	conns, size, depth int
	runs               []Run
}

// groupRuns gathers the runs of one table, in the order they ran; fan-out
// runs group by size only (inflight is a column).
func groupRuns(runs []Run) []*group {
	var gs []*group
	for _, r := range runs {
		k := group{scenario: r.Scenario, conns: r.Conns, size: r.Size, depth: r.Depth}
		if r.Scenario == "idle" || r.Scenario == "connect" || r.Scenario == "churn" {
			k.size = 0
		}
		var g *group
		for _, x := range gs {
			if x.scenario == k.scenario && x.conns == k.conns && x.size == k.size && x.depth == k.depth {
				g = x
			}
		}
		if g == nil {
			g = &k
			gs = append(gs, g)
		}
		g.runs = append(g.runs, r)
	}
	// Scenario order as in the suite, whatever order the runs came in.
	order := map[string]int{}
	for i, s := range allScenarios {
		order[s] = i
	}
	slices.SortStableFunc(gs, func(a, b *group) int { return order[a.scenario] - order[b.scenario] })
	for _, g := range gs {
		if g.scenario == "fanout" || g.scenario == "wss-fanout" {
			slices.SortStableFunc(g.runs, func(a, b Run) int {
				if a.Inflight != b.Inflight {
					return a.Inflight - b.Inflight
				}
				return strings.Compare(b.Server, a.Server) // wsloop-room first
			})
		}
	}
	return gs
}

func find(rs []Run, server string) *Run {
	return findWhere(rs, func(r Run) bool { return r.Server == server })
}

// findWhere returns the first successful run that matches.
func findWhere(rs []Run, match func(Run) bool) *Run {
	for i := range rs {
		if rs[i].Errors == 0 && match(rs[i]) {
			return &rs[i]
		}
	}
	return nil
}

func ratio(r Run, base *Run, get func(Run) float64) string {
	if base == nil || get(*base) == 0 || r.Errors > 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", get(r)/get(*base))
}

// targets evaluates the project's targets on this run's figures.
func targets(runs []Run, quick bool) string {
	var b strings.Builder
	b.WriteString("### Targets\n\n")
	if quick {
		b.WriteString("Evaluated on the quick run's small configurations: indicative only.\n\n")
	}
	line := func(ok bool, format string, args ...any) {
		mark := "FAIL"
		if ok {
			mark = "PASS"
		}
		fmt.Fprintf(&b, "- **%s** %s\n", mark, fmt.Sprintf(format, args...))
	}
	missing := func(what string) { fmt.Fprintf(&b, "- **n/a** %s: a run it needs is missing or failed\n", what) }
	get := func(scen, server string, conns, size int) *Run {
		return findWhere(runs, func(r Run) bool {
			return r.Scenario == scen && r.Server == server && r.Conns == conns && (size == 0 || r.Size == size)
		})
	}
	// The configuration a target names, or the largest of its kind in this run.
	pick := func(scen string, want, size int) int {
		best := 0
		for _, r := range runs {
			if r.Scenario == scen && (size == 0 || r.Size == size) {
				if r.Conns == want {
					return want
				}
				best = max(best, r.Conns)
			}
		}
		return best
	}

	// Idle memory, at every N of the run.
	var ns []int
	for _, r := range runs {
		if r.Scenario == "idle" && !slices.Contains(ns, r.Conns) {
			ns = append(ns, r.Conns)
		}
	}
	for _, n := range ns {
		w := get("idle", "wsloop", n, 0)
		if w == nil {
			missing(fmt.Sprintf("idle bytes/conn at %d", n))
			continue
		}
		if f := get("idle", "floor", n, 0); f != nil {
			r := w.BytesPerConn / f.BytesPerConn
			line(r <= 2, "idle bytes/conn at %s: wsloop %.0f, floor %.0f: %.2f× the floor (target ≤ 2×)", thousands(n), w.BytesPerConn, f.BytesPerConn, r)
			if n == 10000 {
				line(w.BytesPerConn <= f.BytesPerConn+250, "idle bytes/conn at %s: wsloop %.0f, floor %.0f: %+.0f B (target ≤ floor + 250 B)", thousands(n), w.BytesPerConn, f.BytesPerConn, w.BytesPerConn-f.BytesPerConn)
			}
		} else {
			missing(fmt.Sprintf("idle bytes/conn at %s ≤ 2× floor", thousands(n)))
		}
		if g := get("idle", "gorilla", n, 0); g != nil {
			r := w.BytesPerConn / g.BytesPerConn
			line(r <= 0.1, "idle bytes/conn at %s: wsloop %.0f, gorilla %.0f: %.3f× gorilla (target ≤ 0.1×)", thousands(n), w.BytesPerConn, g.BytesPerConn, r)
		} else {
			missing(fmt.Sprintf("idle bytes/conn at %s ≤ 1/10 of gorilla", thousands(n)))
		}
		best := bestOf(runs, eventPeers, func(r Run) bool { return r.Scenario == "idle" && r.Conns == n }, func(r Run) float64 { return r.BytesPerConn })
		if best != nil {
			line(w.BytesPerConn <= best.BytesPerConn, "idle bytes/conn at %s: wsloop %.0f, best event-loop peer %s %.0f: %.2f× (target ≤ 1×)",
				thousands(n), w.BytesPerConn, best.Server, best.BytesPerConn, w.BytesPerConn/best.BytesPerConn)
		} else {
			missing(fmt.Sprintf("idle bytes/conn at %s ≤ the best event-loop peer (gws, nbio)", thousands(n)))
		}
	}

	// Connection setup (issue 24): within 10% of gnet's own acceptor, the
	// floor's and, when the run has one, an older wsloop build's.
	if c := pick("connect", 10000, 0); c > 0 {
		if w := get("connect", "wsloop", c, 0); w == nil {
			missing(fmt.Sprintf("connect at %s", thousands(c)))
		} else {
			for _, base := range runs {
				if base.Scenario != "connect" || base.Conns != c || base.Errors > 0 || (base.Server != "floor" && !strings.HasPrefix(base.Server, "wsloop-")) {
					continue
				}
				r := w.CPUPerMsgUs / base.CPUPerMsgUs
				line(r <= 1.1, "server CPU per upgrade, %s connects: wsloop %.1f µs, %s %.1f µs: %.2f× (target ≤ 1.10×)", thousands(c), w.CPUPerMsgUs, base.Server, base.CPUPerMsgUs, r)
				r = w.ConnectsPerS / base.ConnectsPerS
				line(r >= 0.9, "upgrades/s, %s connects: wsloop %.0f, %s %.0f: %.2f× (target ≥ 0.90×)", thousands(c), w.ConnectsPerS, base.Server, base.ConnectsPerS, r)
			}
		}
	}
	if c := pick("churn", churnCycles, 0); c > 0 {
		w := get("churn", "wsloop", c, 0)
		var best *Run
		for i := range runs {
			r := &runs[i]
			if r.Scenario == "churn" && r.Conns == c && r.Errors == 0 && slices.Contains(peers, r.Server) && (best == nil || r.ConnectsPerS > best.ConnectsPerS) {
				best = r
			}
		}
		if w == nil || best == nil {
			missing(fmt.Sprintf("churn cycles/s at %s above every peer", thousands(c)))
		} else {
			line(w.ConnectsPerS > best.ConnectsPerS, "churn, %s cycles: wsloop %.0f cycles/s, fastest peer %s %.0f: %.2f× (target > 1×, above every peer)",
				thousands(c), w.ConnectsPerS, best.Server, best.ConnectsPerS, w.ConnectsPerS/best.ConnectsPerS)
		}
	}

	// Echo, 64 B, C=1000.
	if c := pick("echo", 1000, 64); c > 0 {
		w := get("echo", "wsloop", c, 64)
		switch {
		case w == nil:
			missing(fmt.Sprintf("echo 64 B at C=%s", thousands(c)))
		default:
			if f := get("echo", "floor", c, 64); f != nil {
				r := w.CPUPerMsgUs / f.CPUPerMsgUs
				line(r <= 1.15, "server CPU per 64 B echo, C=%s: wsloop %.2f µs, floor %.2f µs: %.2f× the floor (target ≤ 1.15×)", thousands(c), w.CPUPerMsgUs, f.CPUPerMsgUs, r)
			} else {
				missing(fmt.Sprintf("server CPU per 64 B echo at C=%s within 15%% of the floor", thousands(c)))
			}
			echo64 := func(r Run) bool { return r.Scenario == "echo" && r.Conns == c && r.Size == 64 }
			if best := bestOf(runs, peers, echo64, func(r Run) float64 { return r.CPUPerMsgUs }); best != nil {
				line(w.CPUPerMsgUs <= best.CPUPerMsgUs, "server CPU per 64 B echo, C=%s: wsloop %.2f µs, cheapest peer %s %.2f µs: %.2f× (target ≤ 1×, i.e. ≤ every peer)",
					thousands(c), w.CPUPerMsgUs, best.Server, best.CPUPerMsgUs, w.CPUPerMsgUs/best.CPUPerMsgUs)
			} else {
				missing(fmt.Sprintf("server CPU per 64 B echo at C=%s ≤ every peer", thousands(c)))
			}
			if best := bestOf(runs, peers, echo64, func(r Run) float64 { return r.P99us }); best != nil {
				line(w.P99us <= best.P99us, "p99 latency, 64 B echo, C=%s: wsloop %.0f µs, best peer %s %.0f µs: %.2f× (target ≤ 1×)",
					thousands(c), w.P99us, best.Server, best.P99us, w.P99us/best.P99us)
			} else {
				missing(fmt.Sprintf("p99 at C=%s ≤ the best peer", thousands(c)))
			}
		}
	}

	// Pipelined.
	if c := pick("pipeline", 200, 64); c > 0 {
		w := get("pipeline", "wsloop", c, 64)
		switch {
		case w == nil:
			missing(fmt.Sprintf("pipelined echo at C=%s", thousands(c)))
		default:
			if f := get("pipeline", "floor", c, 64); f != nil {
				r := w.CPUPerMsgUs / f.CPUPerMsgUs
				line(r <= 2, "server CPU per pipelined 64 B message, C=%s: wsloop %.3f µs, floor %.3f µs: %.2f× the floor (target ≤ 2×)", thousands(c), w.CPUPerMsgUs, f.CPUPerMsgUs, r)
			} else {
				missing(fmt.Sprintf("pipelined CPU/msg at C=%s ≤ 2× the floor", thousands(c)))
			}
			if g := get("pipeline", "gorilla", c, 64); g != nil {
				r := w.CPUPerMsgUs / g.CPUPerMsgUs
				line(r <= 0.25, "server CPU per pipelined 64 B message, C=%s: wsloop %.3f µs, gorilla %.3f µs: %.3f× gorilla (target ≤ 0.25×)", thousands(c), w.CPUPerMsgUs, g.CPUPerMsgUs, r)
			} else {
				missing(fmt.Sprintf("pipelined CPU/msg at C=%s ≤ 1/4 of gorilla", thousands(c)))
			}
		}
	}
	return b.String() + "\n"
}

// bestOf returns the successful run of one of servers that matches with
// the lowest figure.
func bestOf(runs []Run, servers []string, match func(Run) bool, get func(Run) float64) *Run {
	var best *Run
	for i := range runs {
		r := &runs[i]
		if r.Errors == 0 && slices.Contains(servers, r.Server) && match(*r) && (best == nil || get(*r) < get(*best)) {
			best = r
		}
	}
	return best
}

func size(v float64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	default:
		return fmt.Sprintf("%.0f KiB", v/(1<<10))
	}
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func cpuList(s string) string {
	if s == "" {
		return "any (not pinned)"
	}
	return s
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " / ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 400 {
		s = s[:400] + "…"
	}
	return s
}

// roundsNote says over how many rounds a table's figures are medians.
func roundsNote(rs []Run) string {
	n := 0
	for _, r := range rs {
		n = max(n, r.Rounds)
	}
	if n < 2 {
		return ""
	}
	return fmt.Sprintf(" Figures are the median of %d rounds, the servers interleaved in each; \"range\" is the lowest and highest round.", n)
}

// span is a median's range over its rounds, or "-" for a single run.
func span(r Run, lo, hi float64, format string) string {
	if r.Rounds < 2 {
		return "-"
	}
	return fmt.Sprintf(format+"–"+format, lo, hi)
}
