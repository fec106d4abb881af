package main

import (
	"fmt"
	"slices"
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
	if su.History > 0 {
		return sv.historyMarkdown()
	}
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

// historyMarkdown renders -history's report: each setup's medians over
// the rounds, and the ratio of each setup with history to the same
// without.
func (sv *saved) historyMarkdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	su := sv.Setup
	nodesWord := fmt.Sprint(su.Nodes)
	if su.Nodes < 10 {
		nodesWord = []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}[su.Nodes]
	}
	p("### Through JetStream, %s nodes\n\n", nodesWord)
	if su.Quick {
		p("**Quick smoke run**: tiny sizes, the figures are not comparable with a full run.\n\n")
	}
	p("`cd benchmarks && go run ./cmd/cluster%s`", runinfo.QuoteArgs(sv.Args))
	if sv.Tree.Commit != "" {
		p(" at %s", sv.Tree)
	}
	p(", run of %s (took %s, load average %s at the start); %s; servers (NATS and every node, one event loop each) pinned to CPU %s, clients to %s. ",
		sv.Date.UTC().Format("2006-01-02 15:04 MST"), time.Duration(sv.Took).Round(time.Second), sv.Load, sv.Machine, cpuList(su.ServerCPU), cpuList(su.LoadCPUs))
	p("One room, %d B binary messages, one publisher on node 1 keeping %d publishes in flight for %v; %d subscribers on every node (the publisher's connection is one of node 1's), one client process a node. "+
		"Four setups, run one after the other in each of %d round(s) (the order rotating by one each round): %d nodes and NATS without history (core NATS); "+
		"the same with the room keeping its last %d messages in a JetStream stream (natsbroker.WithHistory, MaxPerRoom %d, file storage: a publish goes to the stream as a core NATS publish, and every node, the publisher's too, delivers it from its ordered consumer); "+
		"a single node without a broker, without history; and one keeping the same history locally (engine.WithHistory). "+
		"NATS runs JetStream in both cluster setups. No envelope (engine.WithHistory's nil one), so a message goes out as published, and every subscriber checked every message byte for byte and in order, as without history. "+
		"A publish is done when every subscriber of every node has it; its latency runs from its send to that moment. Server CPU is summed over NATS and every node over the measured phase. "+
		"Medians of the rounds, with the lowest and highest in brackets; the ratio is of the medians of server CPU per publish, each setup with history against the same without.\n\n",
		su.Size, su.Inflight, su.Duration, su.Subs, su.Rounds, su.Nodes, su.History, su.History)
	if slices.ContainsFunc(sv.Runs, func(r result) bool { return r.SubsPerNode != su.Subs }) {
		p("Each round ran the four with %d subscribers a node, then with two, where a publish's own cost shows apart from its deliveries.\n\n", su.Subs)
	}
	type key struct{ subs, nodes, hist int }
	groups := map[key][]result{}
	var order []key
	for _, r := range sv.Runs {
		k := key{r.SubsPerNode, r.Nodes, r.History}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	slices.SortFunc(order, func(a, b key) int {
		if a.subs != b.subs {
			return b.subs - a.subs
		}
		if a.nodes != b.nodes {
			return b.nodes - a.nodes
		}
		return a.hist - b.hist
	})
	setupName := func(nodes, hist int) string {
		switch {
		case nodes > 1 && hist > 0:
			return fmt.Sprintf("%d nodes + NATS, history %d through JetStream", nodes, hist)
		case nodes > 1:
			return fmt.Sprintf("%d nodes + NATS, no history (core NATS)", nodes)
		case hist > 0:
			return fmt.Sprintf("single node, local history %d", hist)
		}
		return "single node, no history"
	}
	name := func(k key) string {
		return fmt.Sprintf("%s, %d subscribers a node", setupName(k.nodes, k.hist), k.subs)
	}
	perPub := func(r result) float64 { return r.ServerCPUS * 1e6 / float64(r.Publishes) }
	perDel := func(r result) float64 { return r.ServerCPUS * 1e6 / float64(r.Deliveries) }
	p("| setup | subscribers | publishes/s | server CPU per publish | per delivery | × without history | latency p50 | p99 | bus per publish: messages in / out | bytes in / out |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, k := range order {
		rs := groups[k]
		ratio := "1"
		if k.hist > 0 {
			if base := groups[key{k.subs, k.nodes, 0}]; len(base) > 0 {
				ratio = fmt.Sprintf("%.2f", med(rs, perPub).m/med(base, perPub).m)
			}
		} else {
			ratio = "(base)"
		}
		bus := "—"
		bytes := "—"
		if k.nodes > 1 {
			in := med(rs, func(r result) float64 { return float64(r.Bus.InMsgs-r.BusPresence.InMsgs) / float64(r.Publishes) })
			outm := med(rs, func(r result) float64 { return float64(r.Bus.OutMsgs-r.BusPresence.OutMsgs) / float64(r.Publishes) })
			inb := med(rs, func(r result) float64 { return float64(r.Bus.InBytes) / float64(r.Publishes) })
			outb := med(rs, func(r result) float64 { return float64(r.Bus.OutBytes) / float64(r.Publishes) })
			bus = fmt.Sprintf("%.3f / %.3f", in.m, outm.m)
			bytes = fmt.Sprintf("%.0f / %.0f", inb.m, outb.m)
		}
		p("| %s | %d | %s | %s µs | %s µs | %s | %s ms | %s ms | %s | %s |\n", setupName(k.nodes, k.hist), rs[0].Subscribers,
			med(rs, func(r result) float64 { return float64(r.Publishes) / r.DurationS }).f("%.0f"),
			med(rs, perPub).f("%.2f"), med(rs, perDel).f("%.3f"), ratio,
			med(rs, func(r result) float64 { return r.P50us / 1e3 }).f("%.2f"),
			med(rs, func(r result) float64 { return r.P99us / 1e3 }).f("%.2f"), bus, bytes)
	}
	p("\nServer CPU per publish by process (medians, µs):\n\n")
	for _, k := range order {
		rs := groups[k]
		procs := []string{"node1"}
		if k.nodes > 1 {
			procs = append([]string{"nats"}, nodeNames(k.nodes)...)
		}
		var parts []string
		for _, pr := range procs {
			parts = append(parts, fmt.Sprintf("%s %.2f", pr, med(rs, func(r result) float64 { return r.CPUByProc[pr] * 1e6 / float64(r.Publishes) }).m))
		}
		p("- %s: %s.\n", name(k), strings.Join(parts, ", "))
	}
	for _, k := range order {
		rs := groups[k]
		if k.nodes < 2 || k.hist == 0 || rs[0].JetStream == nil {
			continue
		}
		var taken, api float64
		var pubs uint64
		var apiErr int64
		for _, r := range rs {
			if r.JetStream == nil {
				continue
			}
			taken += float64(r.JetStream.Taken)
			api += float64(r.JetStream.APITotal)
			apiErr += r.JetStream.APIErrors
			pubs += r.Publishes
		}
		last := rs[len(rs)-1].JetStream
		p("\nJetStream (NATS's /jsz), %d subscribers a node, over the measured phases of the %d rounds: %.3f messages stored a publish, %.4f API requests a publish (%d errors); "+
			"at the end of the last round the stream held %d messages (%d bytes), with %d consumers.\n",
			k.subs, len(rs), taken/float64(pubs), api/float64(pubs), apiErr, last.Messages, last.Bytes, last.Consumers)
	}
	return b.String()
}

// spread is a median with the lowest and highest of its values.
type spread struct{ m, lo, hi float64 }

func med(rs []result, f func(result) float64) spread {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return spread{m, v[0], v[len(v)-1]}
}

// f formats s with format, its range in brackets when it has one.
func (s spread) f(format string) string {
	if s.lo == s.hi {
		return fmt.Sprintf(format, s.m)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", s.m, s.lo, s.hi)
}
