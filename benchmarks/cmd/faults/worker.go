package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// workerFlag, as the first argument, makes the binary a flood worker: a
// process that holds up to -n silent connections to the server from one
// source address. The orchestrator drives it over stdin and stdout:
//
//	worker: DIALED {dialReport}   once every dial has ended
//	orch:   STATUS                worker: STATUS {statusReport}
//	orch:   CLOSE (or stdin EOF)  worker closes every socket, prints CLOSED, exits
const workerFlag = "-flood-worker"

// dialReport is what a worker's dial phase did.
type dialReport struct {
	Connected    int               `json:"connected"`
	Slow         int               `json:"slow"`          // connected after 1 s or more: a SYN was retransmitted
	Failed       map[string]int    `json:"failed"`        // by classify()
	NotAttempted int               `json:"not_attempted"` // left when the dial phase ran out of time
	ElapsedS     float64           `json:"elapsed_s"`
	Samples      map[string]string `json:"samples,omitempty"` // the first error of each reason
}

// statusReport is the state of a worker's connections at one moment.
type statusReport struct {
	Open   int            `json:"open"`
	Closed map[string]int `json:"closed"` // "HTTP 503", "EOF", "RST", ...
}

func workerMain(args []string) int {
	fs := flag.NewFlagSet("flood worker", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	src := fs.String("src", "", "loopback source address to bind")
	n := fs.Int("n", 0, "connections to open")
	conc := fs.Int("concurrency", 64, "dials in flight")
	dialTimeout := fs.Duration("dial-timeout", time.Second, "timeout of one dial")
	phase := fs.Duration("dial-phase", 30*time.Second, "no dial starts after this")
	life := fs.Duration("max-life", 5*time.Minute, "exit after this whatever happens")
	_ = fs.Parse(args)

	time.AfterFunc(*life, func() {
		fmt.Fprintln(os.Stderr, "flood worker: max-life reached, exiting")
		os.Exit(3)
	})
	d := net.Dialer{
		Timeout:   *dialTimeout,
		LocalAddr: &net.TCPAddr{IP: net.ParseIP(*src)},
		// Let connect choose the port, with the whole 4-tuple in view.
		Control: func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) {
				_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
			})
		},
	}
	conns, rep := dialAll(&d, *addr, *n, *conc, *phase)
	out := bufio.NewWriter(os.Stdout)
	emit := func(prefix string, v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(out, "%s %s\n", prefix, b)
		out.Flush()
	}
	emit("DIALED", rep)

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "STATUS":
			emit("STATUS", checkAll(conns))
		case "CLOSE":
			closeAll(conns)
			fmt.Fprintln(out, "CLOSED")
			out.Flush()
			return 0
		}
	}
	closeAll(conns)
	return 0
}

// dialAll opens up to n connections with conc dials in flight, starting
// none after phase.
func dialAll(d *net.Dialer, addr string, n, conc int, phase time.Duration) ([]net.Conn, dialReport) {
	t0 := time.Now()
	stopAt := t0.Add(phase)
	rep := dialReport{Failed: map[string]int{}, Samples: map[string]string{}}
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(conc, n)) {
		wg.Go(func() {
			for time.Now().Before(stopAt) && next.Add(1) <= int64(n) {
				t := time.Now()
				c, err := d.Dial("tcp", addr)
				slow := time.Since(t) >= time.Second
				mu.Lock()
				if err != nil {
					why := classify(err)
					rep.Failed[why]++
					if rep.Samples[why] == "" {
						rep.Samples[why] = err.Error()
					}
				} else {
					conns = append(conns, c)
					if slow {
						rep.Slow++
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	rep.Connected = len(conns)
	attempted := rep.Connected
	for _, k := range rep.Failed {
		attempted += k
	}
	rep.NotAttempted = n - attempted
	rep.ElapsedS = time.Since(t0).Seconds()
	return conns, rep
}

// checkAll looks at every connection without waiting: a socket with
// nothing to read is open; one that reads EOF or RST, or holds an HTTP
// answer (the client never sent a request, so any answer is a refusal),
// was closed or refused by the server.
func checkAll(conns []net.Conn) statusReport {
	rep := statusReport{Closed: map[string]int{}}
	var buf [64]byte
	for _, c := range conns {
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			rep.Closed[classify(err)]++
			continue
		}
		var n int
		var rerr error
		_ = rc.Read(func(fd uintptr) bool {
			n, _, rerr = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
			return true
		})
		switch {
		case rerr == unix.EAGAIN:
			rep.Open++
		case rerr != nil:
			rep.Closed[classify(rerr)]++
		case n == 0:
			rep.Closed["EOF"]++
		default:
			line := buf[:n]
			for i, b := range line {
				if b == '\r' || b == '\n' {
					line = line[:i]
					break
				}
			}
			if code, ok := statusLine(line); ok {
				rep.Closed[fmt.Sprintf("HTTP %d", code)]++
			} else {
				rep.Closed["unexpected data"]++
			}
		}
	}
	return rep
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}
