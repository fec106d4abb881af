package main

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/wsloop/wsloop/benchmarks/internal/proc"
)

// Fan-out: -conns subscribers and one publisher join the server's one room.
// The publisher sends a message whenever fewer than -inflight publishes are
// still on their way to some subscriber; each message carries its sequence
// number and send time. Every subscriber checks every message: the bytes,
// the opcode, and that sequence numbers arrive in order without gaps. The
// subscriber that completes a publish records send -> last subscriber.

const ring = 1 << 16

// probe marks the sequence numbers of join probes: before measuring, the
// publisher sends probes until every subscriber has received one, so that
// no subscriber can miss the first message because the server had not
// added it to the room yet (the gorilla hub registers a client after its
// 101 has gone out).
const probe = 1 << 63

func fanoutPayload(p []byte, seq uint64, sent int64) {
	binary.BigEndian.PutUint64(p, seq)
	binary.BigEndian.PutUint64(p[8:], uint64(sent))
	off := int(seq % 26)
	copy(p[16:], alphabet[off:off+len(p)-16])
}

func runFanout(in <-chan string, res *Result) {
	subs := *conns
	res.Inflight = *inflight
	cs, dialTime := dialAll(subs + 1)
	for _, c := range cs {
		if c == nil {
			fail("fanout needs every connection")
			return
		}
	}
	pub, subConns := cs[subs], cs[:subs]

	var pending [ring]atomic.Int64
	tokens := make(chan struct{}, *inflight)
	for i := 0; i < *inflight; i++ {
		tokens <- struct{}{}
	}
	var measuredFrom atomic.Uint64
	measuredFrom.Store(1 << 62)
	var delivered atomic.Uint64
	var lastDone atomic.Int64 // unix ns of the last completed publish
	var dead atomic.Bool
	var joined atomic.Int64

	var wg sync.WaitGroup
	for i, c := range subConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var scratch []byte
			want := make([]byte, *size)
			var next uint64
			sawProbe := false
			for {
				op, p, err := c.ReadMessage(&scratch)
				if err != nil {
					if !stop.Load() || !dead.Load() {
						fail("subscriber %d: %v", i, err)
					}
					return
				}
				now := time.Now().UnixNano()
				if op != ws.OpBinary || len(p) != *size {
					fail("subscriber %d: message %d: opcode %v, %d bytes", i, next, op, len(p))
					return
				}
				seq := binary.BigEndian.Uint64(p)
				if seq&probe != 0 {
					if !sawProbe {
						sawProbe = true
						joined.Add(1)
					}
					continue
				}
				if seq != next {
					fail("subscriber %d: got message %d, want %d (lost or reordered)", i, seq, next)
					return
				}
				next++
				fanoutPayload(want, seq, int64(binary.BigEndian.Uint64(p[8:])))
				if string(p) != string(want) {
					fail("subscriber %d: message %d corrupted", i, seq)
					return
				}
				if seq >= measuredFrom.Load() {
					delivered.Add(1)
				}
				if pending[seq%ring].Add(-1) == 0 {
					if seq >= measuredFrom.Load() {
						lat.record(int(seq), time.Duration(now-int64(binary.BigEndian.Uint64(p[8:]))))
					}
					lastDone.Store(now)
					tokens <- struct{}{}
				}
			}
		}()
	}
	// The publisher reads its own copies so that its socket never backs up.
	go func() {
		var scratch []byte
		for {
			if _, _, err := pub.ReadMessage(&scratch); err != nil {
				return
			}
		}
	}()

	var seq uint64
	payload := make([]byte, *size)
	joinDeadline := time.Now().Add(30 * time.Second)
	for k := uint64(0); joined.Load() < int64(subs); k++ {
		if time.Now().After(joinDeadline) {
			fail("only %d of %d subscribers received a probe within 30s", joined.Load(), subs)
			break
		}
		fanoutPayload(payload, probe|k, time.Now().UnixNano())
		pub.AppendFrame(ws.OpBinary, payload)
		if err := pub.Flush(); err != nil {
			fail("publisher: %v", err)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	publish := func(until time.Time) bool {
		for time.Now().Before(until) {
			select {
			case <-tokens:
			case <-time.After(10 * time.Second):
				fail("publish %d not delivered to every subscriber within 10s", seq)
				return false
			}
			pending[seq%ring].Store(int64(subs))
			fanoutPayload(payload, seq, time.Now().UnixNano())
			pub.AppendFrame(ws.OpBinary, payload)
			if err := pub.Flush(); err != nil {
				fail("publisher: %v", err)
				return false
			}
			seq++
		}
		// Wait for what is in flight.
		for i := 0; i < *inflight; i++ {
			select {
			case <-tokens:
			case <-time.After(10 * time.Second):
				fail("publishes in flight not delivered within 10s")
				return false
			}
		}
		for i := 0; i < *inflight; i++ {
			tokens <- struct{}{}
		}
		return true
	}
	ok := errCount.Load() == 0 && publish(time.Now().Add(*warmup))
	connected(len(cs), dialTime)
	if ok {
		waitFor(in, "GO")
		first := seq
		measuredFrom.Store(first)
		cpu0 := proc.SelfCPU()
		start := time.Now()
		ok = publish(start.Add(*duration))
		end := time.Unix(0, lastDone.Load())
		if end.Before(start) {
			end = time.Now()
		}
		res.DurationS = end.Sub(start).Seconds()
		res.LoadgenCPUS = (proc.SelfCPU() - cpu0).Seconds()
		res.Publishes = seq - first
		res.Messages = delivered.Load()
		res.Bytes = res.Messages * uint64(*size)
	}
	stop.Store(true)
	dead.Store(true)
	for _, c := range cs {
		c.Close()
	}
	wg.Wait()
}
