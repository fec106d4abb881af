package main

import (
	"fmt"
	"strings"
	"time"
)

// cell makes s safe inside a markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " / ")
	return strings.ReplaceAll(s, "|", `\|`)
}

func row(cells ...string) string {
	for i, c := range cells {
		cells[i] = cell(c)
	}
	return "| " + strings.Join(cells, " | ") + " |\n"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

func mibCell(n int64) string {
	if n <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", mib(n))
}

func growthCell(from, to int64) string {
	if from <= 0 || to <= 0 {
		return "–"
	}
	return fmt.Sprintf("%+.1f MiB", mib(to-from))
}

// markdown renders the report of a run.
func (sv *saved) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	su := sv.Setup
	p("## Faults run of %s\n\n", sv.Date.UTC().Format("2006-01-02 15:04 MST"))
	if su.Quick {
		p("**Quick smoke run**: tiny sizes, the figures are not comparable with a full run.\n\n")
	}
	p("Command: `%s`  \n", sv.Command)
	p("Machine: %s; load average %s at the start; the run took %s  \n", sv.Machine, sv.Load, time.Duration(sv.Took).Round(time.Second))
	for _, s := range sv.Servers {
		p("%s: %s of %s at %s", s.Name, s.Package, s.Tree.Dir, s.Tree)
		if s.BuildErr != "" {
			p(" (**build failed**: %s)", s.BuildErr)
		}
		p("  \n")
	}
	p("\nEvery scenario starts a fresh server as `sh -c 'ulimit -n %d && exec BIN -addr 127.0.0.1:PORT ARGS'`. "+
		"ARGS is `-handshake-timeout %v` for wsloop and wsloop-before (so that the silent sockets are not evicted as the default 5 s would), "+
		"nothing for the peers (gorilla and gws serve with a bare net/http.Server, which has no header timeout; nbio runs with its defaults); "+
		"tlsflood adds `-tls-cert` and `-tls-key`. "+
		"Event loops and GOMAXPROCS are left at their defaults (%d cores).\n", su.Nofile, su.HandshakeTimeout, sv.Machine.Cores)
	sv.fdMarkdown(p)
	sv.pingMarkdown(p)
	sv.tlsMarkdown(p)

	var notes []string
	for _, x := range sv.FD {
		notes = append(notes, note("fdflood", x.Server, x.Notes, x.Stop, x.Tail)...)
	}
	for _, x := range sv.Ping {
		notes = append(notes, note("pingflood", x.Server, nil, x.Stop, x.Tail)...)
	}
	for _, x := range sv.TLS {
		notes = append(notes, note(fmt.Sprintf("tlsflood (%d sockets)", x.Sockets), x.Server, x.Notes, x.Stop, x.Tail)...)
	}
	if len(notes) > 0 {
		p("\n### Notes\n\n")
		for _, n := range notes {
			p("%s\n", n)
		}
	}
	return b.String()
}

func (sv *saved) fdMarkdown(p func(string, ...any)) {
	if len(sv.FD) == 0 {
		return
	}
	su := sv.Setup
	nw := (su.Conns + su.PerWorker - 1) / max(1, su.PerWorker)
	p("\n### fdflood: %s silent connections, server limit %s descriptors\n\n", thousands(su.Conns), thousands(su.Nofile))
	p("The connections come from %d worker processes (one loopback source address each), %d dials in flight, "+
		"each dial timing out after %v, none started after %v; a dial that takes 1 s or more had its SYN retransmitted, "+
		"i.e. the server's accept queue was full for a moment. The sockets never send a byte. "+
		"After a %v hold: is the server alive, does a fresh upgrade+echo work (%v timeout), and how did each socket end "+
		"(checked without waiting: an HTTP answer, EOF or RST means the server refused or closed it). "+
		"Server descriptors are the entries of /proc/PID/fd, sampled every 100 ms from before the flood to the end of the hold. "+
		"Recovery: time from every flood socket closed to the first upgrade+echo that works, retried every 10 ms for up to %v.\n\n",
		nw, su.DialConc, su.DialTimeout, su.DialPhase, su.Hold, su.ProbeTimeout, su.RecoverTimeout)
	p("| Server | Connected | Dial failed | Refused or closed by server | Open at end of hold | Server fds before → peak | Alive in flood | Upgrade+echo in flood | Recovery after close |\n")
	p("|---|---:|---|---|---:|---|---|---|---|\n")
	for _, x := range sv.FD {
		if x.Failure != "" {
			p("%s", row(x.Server, "not run: "+x.Failure, "", "", "", "", "", "", ""))
			continue
		}
		failed := counts(x.DialFailed)
		if x.NotAttempted > 0 {
			failed += fmt.Sprintf(" + %s not attempted", thousands(x.NotAttempted))
		}
		connected := fmt.Sprintf("%s of %s in %.1f s", thousands(x.Connected), thousands(su.Conns), x.DialS)
		if x.Slow > 0 {
			connected += fmt.Sprintf(" (%s took ≥ 1 s)", thousands(x.Slow))
		}
		p("%s", row(x.Server, connected,
			failed, counts(x.Closed), thousands(x.Open),
			fmt.Sprintf("%s → %s", thousands(x.FDsBefore), thousands(x.FDsPeak)),
			yesNo(x.AliveInFlood), x.ProbeInFlood, x.Recovery))
	}
}

func (sv *saved) pingMarkdown(p func(string, ...any)) {
	if len(sv.Ping) == 0 {
		return
	}
	su := sv.Setup
	p("\n### pingflood: %.0f MiB of 125-byte pings from a client that never reads\n\n", mib(su.PingBytes))
	p("One client (SO_RCVBUF 128 KiB, set before connect) upgrades, then writes masked ping frames in %d KiB writes. "+
		"Writing stops at the end, after %v without progress, or at %v. "+
		"VmRSS is read from /proc/PID/status before the first ping, right after the last write and %v later; "+
		"then a fresh upgrade+echo is tried (%v timeout) while the flooding connection stays open.\n\n",
		su.PingBatch>>10, su.Stall, su.PingTimeout, su.Settle, su.ProbeTimeout)
	p("| Server | Pings written | Writing | VmRSS before | at last write | %v later | Growth at last write / later | Alive | Upgrade+echo after |\n", su.Settle)
	p("|---|---:|---|---:|---:|---:|---|---|---|\n")
	for _, x := range sv.Ping {
		if x.Failure != "" {
			p("%s", row(x.Server, "not run: "+x.Failure, "", "", "", "", "", "", ""))
			continue
		}
		rate := ""
		if x.WriteS > 0 {
			rate = fmt.Sprintf(", %.0f MiB/s", mib(x.Sent)/x.WriteS)
		}
		p("%s", row(x.Server,
			fmt.Sprintf("%.1f MiB (%s frames)", mib(x.Sent), thousands(int(x.Sent/int64(pingFrameLen)))),
			fmt.Sprintf("%s in %.2f s%s", x.WriteEnd, x.WriteS, rate),
			mibCell(x.RSSBefore), mibCell(x.RSSAtEnd), mibCell(x.RSSSettled),
			growthCell(x.RSSBefore, x.RSSAtEnd)+" / "+growthCell(x.RSSBefore, x.RSSSettled),
			yesNo(x.Alive), x.Probe))
	}
}

func (sv *saved) tlsMarkdown(p func(string, ...any)) {
	if len(sv.TLS) == 0 {
		return
	}
	su := sv.Setup
	holders := "never send a byte"
	if su.TLSHoldersHello {
		holders = "send a ClientHello less its last byte and then nothing"
	}
	p("\n### tlsflood: %.0f MiB at the TLS port behind %d sockets that hold the handshake slots\n\n", mib(su.TLSFloodBytes), su.TLSHolders)
	p("Every server serves wss with the same certificate (ECDSA P-256, made for the run). "+
		"First %d wss connections are upgraded; each echoes 16 B every %v (one in flight, %v timeout) for the whole run. "+
		"Then %d TCP connections hold the server's TLS handshake slots: they %s (wsloop runs at most max(256, 128 per CPU) handshakes at once and queues the rest). "+
		"Then the flooding sockets each write their share of %.0f MiB, a ClientHello followed by zeros, in %d KiB writes, as fast as the server takes them; "+
		"a socket stops at its share, after %v without progress, when the server closes it, or at the %v bound. "+
		"Read by the server: what the client wrote less what waited in the client's send queue and the server's receive queue (/proc/net/tcp), "+
		"once that had not grown for 1 s after the writes ended, or at the bound, with the time it took from the first write "+
		"(≥: a socket the server had closed by then; its figure is the last sample, every 50 ms). Then the flooding sockets are reset (SO_LINGER 0). "+
		"VmRSS is read from /proc/PID/status before the holders, with them, every 50 ms from the flood's start (peak, and VmHWM at the end) and %v after the flooding sockets were reset. "+
		"Echo latency: the slowest connection's median (the loops are shared out among the connections; the flood stalls one loop at most), and the longest echo of all. "+
		"A fresh wss upgrade+echo (%v timeout) is tried with the holders alone, during the flood (once %.0f MiB were written or the writes made no progress for 1 s; the flooding sockets stay open until it ends), "+
		"after the flooding sockets closed (holders still open) and after the holders closed.\n\n",
		su.TLSEchoConns, echoPace, echoTimeout, su.TLSHolders, holders, mib(su.TLSFloodBytes), floodChunk>>10,
		su.Stall, su.TLSFloodTimeout, su.Settle, su.ProbeTimeout, mib(su.TLSProbeAt))
	p("| Server | Flooding sockets | Written | Read by server | Writes ended | VmRSS before → with holders | peak (VmHWM) | %v after | Growth at peak / after |\n", su.Settle)
	p("|---|---:|---:|---:|---|---|---:|---:|---|\n")
	for _, x := range sv.TLS {
		if x.Failure != "" {
			p("%s", row(x.Server, fmt.Sprint(x.Sockets), "not run: "+x.Failure, "", "", "", "", "", ""))
			continue
		}
		read := fmt.Sprintf("%s by %.1f s", mibCell2(x.ServerRead), x.ReadS)
		switch {
		case x.ReadLowerBound && x.ServerRead == 0:
			read = "– (closed within a 50 ms sample)"
		case x.ReadLowerBound:
			read = "≥ " + read
		}
		p("%s", row(x.Server, fmt.Sprint(x.Sockets),
			fmt.Sprintf("%s in %.1f s", mibCell2(x.Written), x.WriteS), read, ends(x.Ends),
			mibCell(x.RSSBefore)+" → "+mibCell(x.RSSHolders),
			fmt.Sprintf("%s (%s)", mibCell(x.RSSPeak), mibCell(x.HWM)), mibCell(x.RSSAfter),
			growthCell(x.RSSHolders, x.RSSPeak)+" / "+growthCell(x.RSSHolders, x.RSSAfter)))
	}
	p("\n| Server | Flooding sockets | Echo before: p50 | Echo in the flood: p50, slowest connection | longest | echoes failed | Fresh wss: holders alone | during the flood | after it | holders closed | Alive |\n")
	p("|---|---:|---:|---:|---:|---:|---|---|---|---|---|\n")
	for _, x := range sv.TLS {
		if x.Failure != "" {
			continue
		}
		bp50, _, berr := worst(x.EchoBefore)
		dp50, dmax, derr := worst(x.EchoDuring)
		during := x.ProbeDuring
		if x.ProbeDuringAt > 0 {
			during = fmt.Sprintf("%s (began at %s)", during, mibCell2(x.ProbeDuringAt))
		}
		p("%s", row(x.Server, fmt.Sprint(x.Sockets), usCell(bp50), usCell(dp50), usCell(dmax), fmt.Sprint(berr+derr),
			x.ProbeHolders, during, x.ProbeAfter, x.ProbeReleased, yesNo(x.Alive)))
	}
}

// worst returns the largest median and the largest echo of a phase's
// connections, and their failed echoes; -1 when none came back.
func worst(ls []latency) (p50, maxUs float64, errs int) {
	p50, maxUs = -1, -1
	for _, l := range ls {
		errs += l.Errors
		if l.N > 0 {
			p50, maxUs = max(p50, l.P50us), max(maxUs, l.MaxUs)
		}
	}
	return p50, maxUs, errs
}

// usCell renders microseconds as "63 µs", "120 ms", "1.2 s"; "–" below 0.
func usCell(us float64) string {
	if us < 0 {
		return "–"
	}
	return fmtDuration(time.Duration(us * 1e3))
}

// mibCell2 renders a byte count that may be small: "12 KiB", "58.0 MiB".
func mibCell2(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", (n+512)>>10)
	}
	return fmt.Sprintf("%.1f MiB", mib(n))
}

// ends renders how the flooding sockets' writes ended: "complete" for one
// socket, "complete 20, write: RST 12" for several, the most first.
func ends(m map[string]int) string {
	if len(m) == 1 {
		for k, v := range m {
			if v == 1 {
				return k
			}
		}
	}
	s := counts(m)
	if i := strings.Index(s, " ("); i >= 0 {
		return strings.TrimSuffix(s[i+2:], ")")
	}
	return s
}

// note renders a run's remarks as markdown list items.
func note(scenario, server string, notes []string, stop string, tail []string) []string {
	var out []string
	for _, n := range notes {
		out = append(out, fmt.Sprintf("- %s %s: %s", scenario, server, n))
	}
	if stop != "" {
		out = append(out, fmt.Sprintf("- %s %s: at the end, %s", scenario, server, stop))
	}
	if len(tail) > 0 {
		out = append(out, fmt.Sprintf("- %s %s: the server died; its last output:\n\n  ```\n  %s\n  ```\n",
			scenario, server, strings.Join(tail, "\n  ")))
	}
	return out
}
