package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// report is everything the markdown shows.
type report struct {
	command string
	date    time.Time
	elapsed time.Duration
	load    string // /proc/loadavg's first three fields when the run began
	specs   []serverSpec
	fd      []fdResult
	ping    []pingResult
}

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

func (r *report) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Fault measurements\n\n")
	p("Command: `%s`  \n", r.command)
	p("Date: %s (the run took %s)  \n", r.date.UTC().Format("2006-01-02 15:04:05 MST"), r.elapsed.Round(time.Second))
	p("Machine: %s; load average %s at the start  \n", machine(), r.load)
	for _, s := range r.specs {
		if s.tree != "" {
			p("%s: examples/echo of %s  \n", s.name, s.tree)
		}
	}
	p("\nEvery scenario starts a fresh server as `sh -c 'ulimit -n %d && exec BIN -addr 127.0.0.1:PORT ARGS'`. "+
		"ARGS is `-handshake-timeout %v` for wsloop and wsloop-before (so that the silent flood is not evicted as the default 5 s would), "+
		"nothing for the peers (gorilla and gws serve with a bare net/http.Server, which has no header timeout; nbio runs with its defaults). "+
		"Event loops and GOMAXPROCS are left at their defaults (%d cores).\n", *nofile, *handshake, runtime.NumCPU())

	if len(r.fd) > 0 {
		nw := (*conns + *perWorker - 1) / *perWorker
		p("\n## fdflood: %s silent connections, server limit %s descriptors\n\n", thousands(*conns), thousands(*nofile))
		p("The connections come from %d worker processes (one loopback source address each), %d dials in flight, "+
			"each dial timing out after %v, none started after %v; a dial that takes 1 s or more had its SYN retransmitted, "+
			"i.e. the server's accept queue was full for a moment. The sockets never send a byte. "+
			"After a %v hold: is the server alive, does a fresh upgrade+echo work (%v timeout), and how did each socket end "+
			"(checked without waiting: an HTTP answer, EOF or RST means the server refused or closed it). "+
			"Server descriptors are the entries of /proc/PID/fd, sampled every 100 ms from before the flood to the end of the hold. "+
			"Recovery: time from every flood socket closed to the first upgrade+echo that works, retried every 10 ms for up to %v.\n\n",
			nw, *dialConc, *dialTimeout, *dialPhase, *hold, *probeTimeout, *recoverTimeout)
		p("| Server | Connected | Dial failed | Refused or closed by server | Open at end of hold | Server fds before → peak | Alive in flood | Upgrade+echo in flood | Recovery after close |\n")
		p("|---|---:|---|---|---:|---|---|---|---|\n")
		for _, x := range r.fd {
			if x.Failure != "" {
				p("%s", row(x.Server, "not run: "+x.Failure, "", "", "", "", "", "", ""))
				continue
			}
			failed := counts(x.DialFailed)
			if x.NotAttempted > 0 {
				failed += fmt.Sprintf(" + %s not attempted", thousands(x.NotAttempted))
			}
			connected := fmt.Sprintf("%s of %s in %.1f s", thousands(x.Connected), thousands(*conns), x.DialS)
			if x.Slow > 0 {
				connected += fmt.Sprintf(" (%s took ≥ 1 s)", thousands(x.Slow))
			}
			p("%s", row(x.Server, connected,
				failed, counts(x.Closed), thousands(x.Open),
				fmt.Sprintf("%s → %s", thousands(x.FDsBefore), thousands(x.FDsPeak)),
				yesNo(x.AliveInFlood), x.ProbeInFlood, x.Recovery))
		}
	}

	if len(r.ping) > 0 {
		p("\n## pingflood: %.0f MiB of 125-byte pings from a client that never reads\n\n", mib(*pingBytes))
		p("One client (SO_RCVBUF 128 KiB, set before connect) upgrades, then writes masked ping frames in %d KiB writes. "+
			"Writing stops at the end, after %v without progress, or at %v. "+
			"VmRSS is read from /proc/PID/status before the first ping, right after the last write and %v later; "+
			"then a fresh upgrade+echo is tried (%v timeout) while the flooding connection stays open.\n\n",
			*pingBatchSize>>10, *stall, *pingTimeout, *settle, *probeTimeout)
		p("| Server | Pings written | Writing | VmRSS before | at last write | %v later | Growth at last write / later | Alive | Upgrade+echo after |\n", *settle)
		p("|---|---:|---|---:|---:|---:|---|---|---|\n")
		for _, x := range r.ping {
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

	var notes []string
	for _, x := range r.fd {
		notes = append(notes, note("fdflood", x.Server, x.Notes, x.Stop, x.Tail)...)
	}
	for _, x := range r.ping {
		notes = append(notes, note("pingflood", x.Server, nil, x.Stop, x.Tail)...)
	}
	if len(notes) > 0 {
		p("\n## Notes\n\n")
		for _, n := range notes {
			p("%s\n", n)
		}
	}
	return b.String()
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
