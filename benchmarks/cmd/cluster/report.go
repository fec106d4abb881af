package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/runinfo"
)

// markdown renders the report of a run from sv alone: nothing of the
// flags or of the machine it renders on.
func (sv *saved) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	su := sv.Setup
	p("### Cluster fan-out over NATS\n\n")
	if su.Quick {
		p("**Quick smoke run**: tiny sizes, the figures are not comparable with a full run.\n\n")
	}
	p("`cd benchmarks && go run ./cmd/cluster%s`", runinfo.QuoteArgs(sv.Args))
	if sv.Tree.Commit != "" {
		p(" at %s", sv.Tree)
	}
	p(", run of %s (took %s, load average %s at the start); %s; servers (NATS and every node, one event loop each) pinned to CPU %s, clients to %s. ",
		sv.Date.UTC().Format("2006-01-02 15:04 MST"), time.Duration(sv.Took).Round(time.Second), sv.Load, sv.Machine, cpuList(su.ServerCPU), cpuList(su.LoadCPUs))
	p("One room, %d B binary messages, one publisher on node 1 publishing for %v; %d subscribers on every node (the publisher's connection is one of node 1's), one client process a node. "+
		"A publish is done when every subscriber of every node has it, and its latency runs from its send to that moment. Every message was checked byte for byte and in order by every subscriber. "+
		"Server CPU is summed over NATS and every node. The single node gets the same load per node: one process here holds at most about 19,900 sockets. "+
		"With one publish in flight and thousands of subscribers, latency is the time this machine's one client core takes to read every copy (a loopback read costs microseconds); "+
		"the rows with two subscribers a node show what crossing the bus adds.\n\n",
		su.Size, su.Duration, su.Subs)
	p("| setup | subscribers | in flight | deliveries/s | publishes/s | server CPU per delivery | latency p50 | p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range sv.Runs {
		name := "single node, no broker"
		if r.Nodes > 1 {
			name = fmt.Sprintf("%d nodes + NATS", r.Nodes)
		}
		p("| %s | %d | %d | %.0f | %.0f | %.3f µs | %.2f ms | %.2f ms |\n", name, r.Subscribers, r.Inflight, r.DeliveredPerS,
			float64(r.Publishes)/r.DurationS, r.ServerCPUS*1e6/float64(r.Deliveries), r.P50us/1e3, r.P99us/1e3)
	}
	// The bus's traffic: every cluster run's figures; the one with the
	// most publishes gives the figure per publish (presence reports,
	// subtracted at the rate measured on the idle bus, weigh little there).
	var most result
	for _, r := range sv.Runs {
		if r.Nodes == 1 {
			continue
		}
		if r.Publishes > most.Publishes {
			most = r
		}
		var parts []string
		for _, name := range append([]string{"nats"}, nodeNames(r.Nodes)...) {
			parts = append(parts, fmt.Sprintf("%s %.2f s (RSS %.0f MiB)", name, r.CPUByProc[name], float64(r.RSSByProc[name])/(1<<20)))
		}
		p("\n%d subscribers, %d in flight, %d publishes: server CPU over the measured phase by process: %s; NATS (its /varz): %d messages in, %d out (%d and %d bytes), of which presence reports about %d in and %d out.\n",
			r.Subscribers, r.Inflight, r.Publishes, strings.Join(parts, ", "), r.Bus.InMsgs, r.Bus.OutMsgs, r.Bus.InBytes, r.Bus.OutBytes, r.BusPresence.InMsgs, r.BusPresence.OutMsgs)
	}
	if most.Publishes > 0 {
		n := float64(most.Publishes)
		bus, pres := most.Bus, most.BusPresence
		p("\n**Bus traffic per publish: %.3f messages in and %.3f out** (%.0f and %.0f bytes; %d publishes, %d nodes interested besides the publisher's; presence reports subtracted).",
			float64(bus.InMsgs-pres.InMsgs)/n, float64(bus.OutMsgs-pres.OutMsgs)/n, float64(bus.InBytes)/n, float64(bus.OutBytes)/n, most.Publishes, most.Nodes-1)
	}
	p(" The bus carries one message per publish in, and one out per interested node, whatever the number of subscribers (%d B of payload plus one opcode byte each).\n", su.Size)
	return b.String()
}

func nodeNames(n int) []string {
	var s []string
	for i := range n {
		s = append(s, fmt.Sprintf("node%d", i+1))
	}
	return s
}

// cpuList is a taskset CPU list as the report shows it.
func cpuList(s string) string {
	if s == "" {
		return "none (not pinned)"
	}
	return fmt.Sprintf("%q", s)
}
