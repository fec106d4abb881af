// Command fanout is the fan-out load client: -subs subscriber connections
// and one publisher connection join the server's one room (every message a
// connection sends goes to every member, sender included). The publisher
// keeps -inflight publishes outstanding; a publish is outstanding until
// every subscriber has received it, and the subscriber that receives it
// last records its latency (publisher's send to that moment).
//
// Every message carries its sequence number and send time in its first 16
// bytes and a body derived from the sequence number; every subscriber
// checks every message's bytes and opcode, and that sequence numbers come
// in order with no gap and no duplicate. Before measuring, the publisher
// sends join probes until every connection has received one, since a
// server may add a connection to the room only after its 101 has gone out.
//
// Protocol with the orchestrator, one line each on stdout (the rest of
// what it says goes to stderr):
//
//	CONNECTED <subscribers> <dial_seconds>   after dialing and -warmup
//	GO                                       read from stdin (not needed with -go or a terminal)
//	RESULT {json}                            after -duration and the drain
//
// It exits non-zero if there was any error. Every wait is bounded.
//
// Reading: the default is an epoll reader (-reader epoll): a few goroutines
// (-pollers, default GOMAXPROCS), each with its own level-triggered epoll
// instance and a share of the non-blocking sockets, each socket with its
// own small buffer (4 KiB, or a frame). A goroutine per subscriber over a
// net.Conn (-reader goroutine) is kept for comparison. Measured on the
// 2-core benchmark machine, client pinned to one core, 10,000 subscribers,
// 64-byte messages, against wsloop-room: the epoll reader needs about half
// the client CPU per delivered message (see the package's measurements in
// the suite's notes), so it is the default.
//
// With -tls the connections are wss://: each dials, runs a TLS 1.3
// handshake trusting the certificate -tls-ca names (the run's own,
// self-signed: no certificate check is skipped), then upgrades over it,
// and every subscriber is read by a goroutine of its own through
// crypto/tls (-reader goroutine), since a TLS connection's plaintext is
// not on its socket. Every message is checked as without TLS.
//
// Example, by hand:
//
//	go run ./servers/wsloop-room -addr 127.0.0.1:0 -loops 1   # prints READY 127.0.0.1:PORT
//	go run ./cmd/fanout -addr 127.0.0.1:PORT -subs 10000 -duration 5s -inflight 16 -go
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/wsloop/wsloop/benchmarks/internal/benchcert"
	"github.com/wsloop/wsloop/benchmarks/internal/wsload"
)

var (
	addr        = flag.String("addr", "", "server address, 127.0.0.1:PORT")
	nsubs       = flag.Int("subs", 10000, "subscriber connections (plus one publisher)")
	size        = flag.Int("size", 64, "payload bytes (at least 16)")
	duration    = flag.Duration("duration", 10*time.Second, "measured publishing")
	warmup      = flag.Duration("warmup", time.Second, "publishing before CONNECTED, not counted")
	inflight    = flag.Int("inflight", 1, "publishes outstanding (sent, not yet received by every subscriber)")
	dialConc    = flag.Int("dial-concurrency", 200, "dials and upgrades at a time")
	binaryMsgs  = flag.Bool("binary", true, "binary messages (false: text)")
	goNow       = flag.Bool("go", false, "start at once instead of waiting for GO on stdin")
	readerKind  = flag.String("reader", "epoll", "subscriber reading: epoll or goroutine (the default with -tls, which needs it)")
	pollers     = flag.Int("pollers", 0, "epoll goroutines (0: GOMAXPROCS)")
	rbuf        = flag.Int("rbuf", 4096, "read buffer per subscriber (raised to hold a frame)")
	goTimeout   = flag.Duration("go-timeout", 10*time.Minute, "longest wait for GO")
	dialTimeout = flag.Duration("dial-timeout", 10*time.Second, "per connection, for connect and for the upgrade")
	drainWait   = flag.Duration("drain-timeout", 10*time.Second, "longest wait for a publish to reach every subscriber")
	cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the measured phase to this file")
	srcFlag     = flag.String("src", "", "local source IP in 127.0.0.0/8 for every connection (empty: the kernel's choice)")
	jsonFlag    = flag.Bool("json", false, "chat-like JSON message bodies (compressible) instead of letters")
	deflateFlag = flag.Bool("deflate", false, "offer permessage-deflate as a browser does, publish compressed messages and accept compressed deliveries; implies -json")
	peersFlag   = flag.Int("peers", 0, "subscriber-only processes (-done-to) that count as subscribers of every publish (cmd/cluster)")
	doneListen  = flag.String("done-listen", "127.0.0.1:0", "with -peers: UDP address for their completions (printed as LISTEN addr)")
	doneTo      = flag.String("done-to", "", "subscribers only, no publisher: report completions to this UDP address (the -peers process's LISTEN)")
	tlsFlag     = flag.Bool("tls", false, "wss://: a TLS 1.3 handshake (X25519, ALPN http/1.1, the default cipher suites, no session cache) before every upgrade, trusting -tls-ca alone; reads with -reader goroutine (a TLS connection cannot be read from its raw socket)")
	tlsCA       = flag.String("tls-ca", "", "with -tls: the certificate (PEM) to trust, the server's own self-signed one (cmd/bench makes one per run: internal/benchcert)")
	protoFlag   = flag.String("proto", "ws", "ws: a data message is one payload; newline: a data frame holds one or more payloads separated by newlines (gorilla's chat example); centrifuge: centrifuge's JSON protocol (connect, subscribe, publish; publications pushed), which implies -binary=false")
)

// srcIP is -src parsed: connections bind it so that runs one after another
// (or next to other clients) do not share one address's ephemeral ports.
var srcIP net.IP

const (
	dialPhaseMax = 3 * time.Minute  // all dials together
	joinMax      = 30 * time.Second // probes until every connection has one
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fanout: "+format+"\n", args...)
}

// Result is the RESULT line.
type Result struct {
	Subscribers   int     `json:"subscribers"`
	Size          int     `json:"size"`
	Inflight      int     `json:"inflight"`
	Publishes     uint64  `json:"publishes"`
	Delivered     uint64  `json:"delivered"`
	DurationS     float64 `json:"duration_s"`
	DeliveredPerS float64 `json:"delivered_per_s"`
	PublishesPerS float64 `json:"publishes_per_s"`
	P50us         float64 `json:"p50_us"`
	P99us         float64 `json:"p99_us"`
	MaxUs         float64 `json:"max_us"`
	Errors        uint64  `json:"errors"`
	WireBytes     uint64  `json:"wire_bytes,omitempty"` // -deflate: payload bytes of the measured deliveries as they arrived
	Reencoded     uint64  `json:"reencoded,omitempty"`  // -deflate: deliveries whose compressed bytes differed from another subscriber's copy of the same message
	Inflated      uint64  `json:"inflated,omitempty"`   // -deflate: deliveries the client had to inflate (the others matched a copy already checked)
	LoadgenCPUS   float64 `json:"loadgen_cpu_s"`
	Reader        string  `json:"reader"`
	TLS           string  `json:"tls,omitempty"`      // -tls: what the publisher's connection negotiated
	Sent          uint64  `json:"sent,omitempty"`     // -peers: data messages published, warmup included
	NextMin       uint64  `json:"next_min,omitempty"` // -done-to: the fewest data messages a subscriber received
	NextMax       uint64  `json:"next_max,omitempty"` // -done-to: the most
}

func main() {
	flag.Parse()
	os.Exit(run())
}

func run() int {
	readerSet := false
	flag.Visit(func(f *flag.Flag) { readerSet = readerSet || f.Name == "reader" })
	if *tlsFlag && !readerSet {
		*readerKind = "goroutine"
	}
	switch {
	case *addr == "":
		logf("-addr is required")
		return 2
	case *nsubs < 1 || *size < headerLen || *inflight < 1 || *inflight > ring/2 || *dialConc < 1:
		logf("need -subs >= 1, -size >= %d, 1 <= -inflight <= %d, -dial-concurrency >= 1", headerLen, ring/2)
		return 2
	case *readerKind != "epoll" && *readerKind != "goroutine":
		logf("-reader is epoll or goroutine")
		return 2
	case *protoFlag != "ws" && *protoFlag != "newline" && *protoFlag != "centrifuge":
		logf("-proto is ws, newline or centrifuge")
		return 2
	case *protoFlag != "ws" && *deflateFlag:
		logf("-deflate needs -proto ws")
		return 2
	case *tlsFlag && *readerKind != "goroutine":
		logf("-tls reads with -reader goroutine: the epoll reader reads raw sockets")
		return 2
	case *tlsFlag != (*tlsCA != ""):
		logf("-tls and -tls-ca go together")
		return 2
	}
	if host, _, err := net.SplitHostPort(*addr); err != nil || host != "127.0.0.1" {
		logf("-addr must be 127.0.0.1:PORT")
		return 2
	}
	if *srcFlag != "" {
		srcIP = net.ParseIP(*srcFlag).To4()
		if srcIP == nil || srcIP[0] != 127 {
			logf("-src must be an IPv4 address in 127.0.0.0/8")
			return 2
		}
	}
	if *tlsFlag {
		cfg, err := benchcert.ClientConfig(*tlsCA, *addr)
		if err != nil {
			logf("-tls-ca: %v", err)
			return 2
		}
		tlsConfig = cfg
	}
	if err := raiseNofile(*nsubs + 64); err != nil {
		logf("%v", err)
		return 2
	}
	// A last resort: every phase below is bounded on its own.
	limit := dialPhaseMax + 2**dialTimeout + joinMax + *warmup + *goTimeout + *duration + 3**drainWait + time.Minute
	time.AfterFunc(limit, func() {
		logf("watchdog: still running after %v, giving up", limit)
		os.Exit(3)
	})

	op := byte(opBinary)
	if !*binaryMsgs || *protoFlag == "centrifuge" {
		op = opText
	}
	b := newBench(*nsubs, *size, *inflight, op)
	if *jsonFlag || *deflateFlag {
		b.pat = newJSONPattern(*size)
	}
	b.deflate = *deflateFlag
	b.cf, b.nl = *protoFlag == "centrifuge", *protoFlag == "newline"
	bufSize := max(*rbuf, *size+14, 125+14) // a frame that needs more grows it
	b.peers = *peersFlag

	var rd reader
	if *readerKind == "epoll" {
		n := *pollers
		if n <= 0 {
			n = runtime.GOMAXPROCS(0)
		}
		e, err := newEpollReader(b, n)
		if err != nil {
			logf("%v", err)
			return 1
		}
		rd = e
	} else {
		rd = &goReader{b: b}
	}

	if *doneTo != "" {
		return runSubscriberOnly(b, rd, bufSize)
	}
	var peers *peerState
	if b.peers > 0 {
		ps, err := listenPeers(b, rd, *doneListen)
		if err != nil {
			logf("%v", err)
			return 2
		}
		peers = ps
		defer ps.conn.Close()
		fmt.Printf("LISTEN %s\n", ps.conn.LocalAddr())
	}
	goCh := waitForGo()

	// 1. Dial and upgrade: subscribers, then the publisher.
	t0 := time.Now()
	subs, connected := dialAll(b, rd, bufSize)
	var pub *sub
	var pubWG sync.WaitGroup
	if !b.hasFailed() {
		c, rest, err := dialWS(*addr, *dialTimeout)
		if err != nil {
			b.fail("publisher: dial: %v", err)
		} else {
			pub = &sub{id: -1, self: true, fd: -1, nc: c, buf: make([]byte, bufSize)}
			pub.w = copy(pub.buf, rest)
			pubWG.Add(1)
			go func() {
				defer pubWG.Done()
				if pub.w > 0 {
					if err := pub.consume(b); err != nil {
						b.fail("publisher: %v", err)
						return
					}
				}
				readLoop(b, pub)
			}()
		}
	}
	dialS := time.Since(t0).Seconds()
	logf("%d of %d subscribers and the publisher connected in %.2fs (%s reader)", connected, *nsubs, dialS, *readerKind)

	p := &publisher{b: b, pub: pub, payload: make([]byte, *size), peers: peers}
	if !b.hasFailed() {
		p.probe()
	}
	if !b.hasFailed() && *warmup > 0 {
		w0 := time.Now()
		p.publish(time.Now().Add(*warmup))
		logf("warmup: %d publishes in %.2fs", p.seq, time.Since(w0).Seconds())
	}
	fmt.Printf("CONNECTED %d %.3f\n", connected, dialS)

	// 2. GO (not waited for after a failure: the RESULT follows at once).
	if !b.hasFailed() && goCh != nil {
		select {
		case ok := <-goCh:
			if !ok {
				b.fail("stdin ended before GO")
			}
		case <-time.After(*goTimeout):
			b.fail("no GO within %v", *goTimeout)
		}
	}

	// 3. Measure.
	res := Result{Subscribers: *nsubs, Size: *size, Inflight: *inflight, Reader: *readerKind}
	if pub != nil {
		res.TLS = tlsName(pub.nc)
	}
	if !b.hasFailed() {
		first := p.seq
		b.lat.reset()
		b.measuredFrom.Store(first)
		stopProfile := startProfile(*cpuProfile)
		cpu0 := selfCPU()
		start := time.Now()
		p.publish(start.Add(*duration))
		end := time.Now()
		stopProfile()
		if !b.hasFailed() {
			end = time.Unix(0, b.lastDone.Load())
		}
		cpu := selfCPU() - cpu0
		res.Publishes = p.seq - first
		for _, s := range subs {
			if s != nil {
				res.Delivered += s.delivered(first)
			}
		}
		if b.peers > 0 {
			res.Sent = p.seq
		}
		if !b.hasFailed() && res.Delivered != res.Publishes*uint64(*nsubs) {
			b.fail("delivered %d, want %d publishes x %d subscribers", res.Delivered, res.Publishes, *nsubs)
		}
		res.DurationS = end.Sub(start).Seconds()
		if res.DurationS > 0 {
			res.DeliveredPerS = float64(res.Delivered) / res.DurationS
			res.PublishesPerS = float64(res.Publishes) / res.DurationS
		}
		res.P50us = us(b.lat.quantile(0.50))
		res.P99us = us(b.lat.quantile(0.99))
		res.MaxUs = us(b.lat.maxValue())
		res.LoadgenCPUS = cpu.Seconds()
		res.WireBytes = b.wire.Load()
		res.Reencoded = b.reencoded.Load()
		res.Inflated = b.inflated.Load()
	}

	// Close everything, then report (errors counted to the end).
	b.closing.Store(true)
	rd.stop()
	if res.Delivered > 0 {
		var reads, msgs uint64
		for _, s := range subs {
			if s != nil {
				reads += s.reads
				msgs += s.msgs
			}
		}
		logf("%.0f delivered/s, %.0f publishes/s, p50 %.0fus p99 %.0fus; client CPU %.3fus per delivered message, %.2f messages per read (whole run)",
			res.DeliveredPerS, res.PublishesPerS, res.P50us, res.P99us, res.LoadgenCPUS*1e6/float64(res.Delivered), float64(msgs)/float64(max(reads, 1)))
	}
	rd.closeAll()
	if pub != nil {
		pub.nc.Close()
		waitBounded(&pubWG, "publisher reader")
	}
	res.Errors = b.errs.Load()
	return printResult(res)
}

// printResult prints the RESULT line; the exit code says whether there
// were errors.
func printResult(res Result) int {
	line, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", line)
	if res.Errors > 0 {
		return 1
	}
	return 0
}

// startProfile starts a CPU profile if path is set; the result stops it.
func startProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		logf("cpuprofile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		logf("cpuprofile: %v", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

func us(d time.Duration) float64 { return math.Round(float64(d)/1e2) / 10 }

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// raiseNofile raises the soft open-file limit to the hard one and checks
// that need descriptors fit.
func raiseNofile(need int) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if uint64(need) > rl.Cur {
		return fmt.Errorf("need %d open files, the limit is %d", need, rl.Cur)
	}
	return nil
}

// waitForGo returns a channel that yields true on a GO line and false when
// stdin ends, or nil if stdin is a terminal (or /dev/null): start at once.
func waitForGo() <-chan bool {
	if *goNow {
		return nil
	}
	if fi, err := os.Stdin.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return nil
	}
	ch := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "GO" {
				ch <- true
				return
			}
		}
		ch <- false
	}()
	return ch
}

// dialAll dials and upgrades the subscribers, -dial-concurrency at a time,
// and hands each to the reader (b.all). A failed dial leaves a nil and an
// error. It returns them and how many connected.
func dialAll(b *bench, rd reader, bufSize int) ([]*sub, int) {
	subs := make([]*sub, *nsubs)
	ctx, cancel := context.WithTimeout(context.Background(), dialPhaseMax)
	defer cancel()
	idx := make(chan int)
	var wg sync.WaitGroup
	for range min(*dialConc, *nsubs) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				if ctx.Err() != nil || b.hasFailed() {
					continue
				}
				c, rest, err := dialWS(*addr, *dialTimeout)
				if err != nil {
					b.fail("subscriber %d: dial: %v", i, err)
					continue
				}
				s := &sub{id: i, fd: -1, buf: make([]byte, bufSize)}
				s.w = copy(s.buf, rest)
				if err := rd.add(s, c); err != nil {
					b.fail("subscriber %d: %v", i, err)
					continue
				}
				subs[i] = s
			}
		}()
	}
	for i := range subs {
		idx <- i
	}
	close(idx)
	wg.Wait()
	if ctx.Err() != nil {
		b.fail("dialing took longer than %v", dialPhaseMax)
	}
	b.all = subs
	connected := 0
	for _, s := range subs {
		if s != nil {
			connected++
		}
	}
	return subs, connected
}

// publisher sends from the publisher connection.
type publisher struct {
	b       *bench
	pub     *sub
	seq     uint64 // next data sequence number
	payload []byte
	frame   []byte
	rng     *mrand.ChaCha8
	zd      wsload.Deflater
	cmd     []byte // -proto centrifuge: the publish command
	cmdID   uint64 // -proto centrifuge: publish commands sent (ids start at 3)
	peers   *peerState
}

func (p *publisher) send(seq uint64) bool {
	if p.rng == nil {
		var seed [32]byte
		_, _ = rand.Read(seed[:])
		p.rng = mrand.NewChaCha8(seed)
	}
	var mask [4]byte
	m := p.rng.Uint64()
	mask[0], mask[1], mask[2], mask[3] = byte(m), byte(m>>8), byte(m>>16), byte(m>>24)
	now := time.Now().UnixNano()
	if seq&probeBit == 0 {
		p.b.sentAt[seq&ringMask].Store(now)
	}
	p.b.pat.fill(p.payload, seq, now)
	if p.b.cf {
		p.cmd = appendPublish(p.cmd[:0], 3+p.cmdID, p.payload)
		p.cmdID++
		p.frame = wsload.AppendClientFrame(p.frame[:0], opText, p.cmd, mask)
	} else if p.b.deflate {
		p.frame = wsload.AppendClientFrame(p.frame[:0], p.b.op, p.zd.Deflate(p.payload), mask)
		p.frame[0] |= 0x40 // RSV1: compressed
	} else {
		p.frame = wsload.AppendClientFrame(p.frame[:0], p.b.op, p.payload, mask)
	}
	_ = p.pub.nc.SetWriteDeadline(time.Now().Add(*drainWait))
	if _, err := p.pub.nc.Write(p.frame); err != nil {
		p.b.fail("publisher: write: %v", err)
		return false
	}
	return true
}

// probe sends join probes, at growing intervals, until every connection
// (the publisher too) has received one.
func (p *publisher) probe() {
	b := p.b
	want := int64(b.subs + 1)
	deadline := time.Now().Add(joinMax)
	wait := 5 * time.Millisecond
	t0 := time.Now()
	for k := uint64(0); ; k++ {
		if !p.send(probeBit | k) {
			return
		}
		until := time.Now().Add(wait)
		all := func() bool { return b.joined.Load() >= want && b.peersJoined.Load() >= int64(b.peers) }
		for !all() && time.Now().Before(until) && !b.hasFailed() {
			time.Sleep(time.Millisecond)
		}
		if all() || b.hasFailed() {
			logf("joined: %d probes, %.3fs", k+1, time.Since(t0).Seconds())
			return
		}
		if time.Now().After(deadline) {
			b.fail("only %d of %d connections (and %d of %d peer processes) received a join probe within %v", b.joined.Load(), want, b.peersJoined.Load(), b.peers, joinMax)
			return
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// publish sends until the deadline, a message whenever fewer than
// -inflight are outstanding, then waits for the outstanding ones.
func (p *publisher) publish(until time.Time) {
	b := p.b
	timer := time.NewTimer(*drainWait)
	defer timer.Stop()
	take := func() bool {
		select {
		case <-b.tokens:
			return true
		default:
		}
		timer.Reset(*drainWait)
		select {
		case <-b.tokens:
			return true
		case <-b.failed:
			return false
		case <-timer.C:
			p.stuck()
			return false
		}
	}
	for time.Now().Before(until) {
		if !take() {
			return
		}
		b.pending[p.seq&ringMask].Store(int32(b.subs))
		b.parties[p.seq&ringMask].Store(int32(1 + b.peers))
		b.doneAt[p.seq&ringMask].Store(0)
		if !p.send(p.seq) {
			return
		}
		p.seq++
	}
	for range *inflight {
		if !take() {
			return
		}
	}
	for range *inflight {
		b.tokens <- struct{}{}
	}
}

// stuck reports the subscribers that have not received every publish
// sent: each is an error (a lost message, or a server that stopped
// sending to it).
func (p *publisher) stuck() {
	b := p.b
	n := 0
	for _, s := range b.all {
		if s == nil {
			continue
		}
		if got := s.next.Load(); got < p.seq {
			n++
			b.fail("subscriber %d: message %d not received within %v (%d sent)", s.id, got, *drainWait, p.seq)
		}
	}
	if p.peers != nil {
		if l := p.peers.lagging(p.seq - 1); l != "" {
			n++
			b.fail("peer processes behind: %s (%d sent)", l, p.seq)
		}
	}
	if n == 0 {
		b.fail("publishes before %d: not received by every subscriber within %v", p.seq, *drainWait)
	}
}

// waitBounded waits for wg, at most 5 s.
func waitBounded(wg *sync.WaitGroup, what string) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		logf("%s did not end within 5s", what)
	}
}
