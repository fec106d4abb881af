package main

// Several client processes for one room (cmd/cluster): one process holds
// the publisher (and subscribers), each of the others only subscribers,
// on any node of a cluster. A subscriber-only process (-done-to ADDR)
// tells the publisher's process, by UDP datagram, when all of its
// subscribers have received a message; the publisher's process
// (-peers N -done-listen ADDR) counts each such process as one more
// subscriber of every publish. So a publish stays outstanding until every
// subscriber of every process has it, and its latency is its send time to
// the moment the last process's last subscriber got it (every process
// stamps that time with the machine's clock).
//
// Datagrams: 'J' (every subscriber of the process has received a join
// probe), or 'D' followed by the sequence number and the completion time
// (unix ns), both little-endian uint64.

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/wsloop/wsloop/benchmarks/internal/proc"
)

// peerState is the publisher process's view of the subscriber-only
// processes.
type peerState struct {
	conn   *net.UDPConn
	mu     sync.Mutex
	joined map[string]bool
	done   map[string]uint64 // the last sequence number each completed
}

// listenPeers starts receiving completions on addr: on the epoll
// reader's thread when there is one, else on a goroutine of its own.
func listenPeers(b *bench, rd reader, addr string) (*peerState, error) {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.ListenUDP("udp4", ua)
	if err != nil {
		return nil, err
	}
	_ = c.SetReadBuffer(4 << 20)
	ps := &peerState{conn: c, joined: map[string]bool{}, done: map[string]uint64{}}
	if e, ok := rd.(*epollReader); ok {
		rc, err := c.SyscallConn()
		if err != nil {
			return nil, err
		}
		var werr error
		buf := make([]byte, 64)
		err = rc.Control(func(fd uintptr) {
			werr = e.watch(int(fd), func() {
				for {
					n, from, err := unix.Recvfrom(int(fd), buf, 0)
					if err != nil {
						return // EAGAIN: drained
					}
					key := "?"
					if sa, ok := from.(*unix.SockaddrInet4); ok {
						key = fmt.Sprintf("%d.%d.%d.%d:%d", sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3], sa.Port)
					}
					ps.handle(b, buf[:n], key)
				}
			})
		})
		if err == nil {
			err = werr
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		return ps, nil
	}
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return // closed
			}
			ps.handle(b, buf[:n], from.String())
		}
	}()
	return ps, nil
}

// handle applies one datagram from the process at from.
func (ps *peerState) handle(b *bench, d []byte, from string) {
	switch {
	case len(d) == 1 && d[0] == 'J':
		ps.mu.Lock()
		if !ps.joined[from] {
			ps.joined[from] = true
			b.peersJoined.Add(1)
		}
		ps.mu.Unlock()
	case len(d) == 17 && d[0] == 'D':
		seq := binary.LittleEndian.Uint64(d[1:])
		t := int64(binary.LittleEndian.Uint64(d[9:]))
		ps.mu.Lock()
		ps.done[from] = seq
		ps.mu.Unlock()
		if err := b.complete(seq, t); err != nil {
			b.fail("peer %s: %v", from, err)
		}
	default:
		b.fail("peer %s: bad datagram of %d bytes", from, len(d))
	}
}

// lagging describes the processes that have not completed seq.
func (ps *peerState) lagging(seq uint64) string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []string
	for a := range ps.joined {
		if d, ok := ps.done[a]; !ok || d < seq {
			out = append(out, fmt.Sprintf("%s done to %d", a, d))
		}
	}
	return strings.Join(out, ", ")
}

// reporter is a subscriber-only process's line to the publisher's.
type reporter struct {
	conn *net.UDPConn
	buf  [17]byte
	mu   sync.Mutex
	data atomic.Bool // a data message has completed: probes are over
}

func dialReporter(addr string) (*reporter, error) {
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialUDP("udp4", nil, ua)
	if err != nil {
		return nil, err
	}
	return &reporter{conn: c}, nil
}

// done reports that every subscriber of this process has message seq.
func (r *reporter) done(seq uint64, t int64) {
	r.data.Store(true)
	r.mu.Lock()
	r.buf[0] = 'D'
	binary.LittleEndian.PutUint64(r.buf[1:], seq)
	binary.LittleEndian.PutUint64(r.buf[9:], uint64(t))
	_, _ = r.conn.Write(r.buf[:])
	r.mu.Unlock()
}

// announceJoined sends 'J' every 20 ms once every subscriber has a probe,
// until the first data message completes or stop closes.
func (r *reporter) announceJoined(b *bench, stop <-chan struct{}) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !r.data.Load() {
		if b.joined.Load() >= int64(b.subs) {
			r.mu.Lock()
			_, _ = r.conn.Write([]byte{'J'})
			r.mu.Unlock()
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// waitLine waits for the line want, at most d.
func waitLine(lines <-chan string, want string, d time.Duration) error {
	timeout := time.After(d)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return fmt.Errorf("stdin ended before %s", want)
			}
			if l == want {
				return nil
			}
		case <-timeout:
			return fmt.Errorf("no %s within %v", want, d)
		}
	}
}

// runSubscriberOnly is run for -done-to: subscribers only, completions
// reported to the publisher's process; CONNECTED, then GO and STOP on
// stdin, then the RESULT with every subscriber's message count.
func runSubscriberOnly(b *bench, rd reader, bufSize int) int {
	rep, err := dialReporter(*doneTo)
	if err != nil {
		logf("%v", err)
		return 2
	}
	b.report = rep
	lines := proc.StdinLines()
	t0 := time.Now()
	subs, connected := dialAll(b, rd, bufSize)
	dialS := time.Since(t0).Seconds()
	logf("%d of %d subscribers connected in %.2fs, reporting to %s", connected, *nsubs, dialS, *doneTo)
	stop := make(chan struct{})
	go rep.announceJoined(b, stop)
	fmt.Printf("CONNECTED %d %.3f\n", connected, dialS)
	res := Result{Subscribers: *nsubs, Size: *size, Reader: *readerKind}
	if !b.hasFailed() {
		if err := waitLine(lines, "GO", *goTimeout); err != nil {
			b.fail("%v", err)
		}
	}
	cpu0 := selfCPU()
	if !b.hasFailed() {
		if err := waitLine(lines, "STOP", *goTimeout+*duration+3**drainWait); err != nil {
			b.fail("%v", err)
		}
	}
	close(stop)
	res.LoadgenCPUS = (selfCPU() - cpu0).Seconds()
	b.closing.Store(true)
	rd.stop()
	first := true
	for _, s := range subs {
		if s == nil {
			continue
		}
		n := s.next.Load()
		res.Delivered += n
		if first || n < res.NextMin {
			res.NextMin = n
		}
		res.NextMax = max(res.NextMax, n)
		first = false
	}
	rd.closeAll()
	res.Errors = b.errs.Load()
	return printResult(res)
}
