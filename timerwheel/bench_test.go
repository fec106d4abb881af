package timerwheel

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// The benchmarks compare the wheel with time.AfterFunc (a runtime timer per
// connection) and with a container/heap queue, at 1k, 100k and 1M live
// timers, in the engine's shape: 512 slots × 100 ms, timers due uniformly
// within the next 25 s, each rearmed 25 s on when it fires. Each reports
// B/timer, the live heap per timer (the structure included), measured after
// building the population. Each sub-benchmark builds its population once,
// outside the timer, so run them with a fixed count:
//
//	go test ./timerwheel -run XXX -benchtime 1000000x \
//		-bench '^Benchmark(Schedule|Reschedule|Cancel)$'
//	go test ./timerwheel -run XXX -bench '^BenchmarkAdvance$/1[0k]' -benchtime 2500x
//	go test ./timerwheel -run XXX -bench '^BenchmarkAdvance$/1M' -benchtime 250x
//	go test ./timerwheel -run XXX -bench LongDelay -benchtime 2048x
//
// Advance's op is one tick: 250 ticks fire every timer once. The AfterFunc
// population must not start firing on its own, 25 s after it was built:
// keep each Advance run well under that.

const (
	benchTick   = 100 * time.Millisecond
	benchSlots  = 512
	benchSpread = 25 * time.Second
	benchBatch  = 1024 // timers armed or cancelled per timed stretch
	benchStride = 7919 // a prime: walks the timers in a cache-hostile order
)

var benchSizes = []struct {
	name string
	n    int
}{{"1k", 1_000}, {"100k", 100_000}, {"1M", 1_000_000}}

// benchRand is a xorshift generator, cheap next to what is measured.
type benchRand uint64

func (r *benchRand) next() uint64 {
	x := uint64(*r)
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	*r = benchRand(x)
	return x
}

func (r *benchRand) intn(n int) int       { return int((r.next() >> 32) * uint64(n) >> 32) }
func (r *benchRand) delay() time.Duration { return time.Duration(r.next() % uint64(benchSpread)) }

// heapPerItem returns the growth of the live heap that build causes,
// divided by n.
func heapPerItem(n int, build func()) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// queue is one of the three implementations with n live timers, plus
// idle spare ones for Schedule.
type queue interface {
	bytesPerTimer() float64
	armSpares(k int)    // arm spares 0..k-1 (idle before): timed
	disarmSpares(k int) // cancel them: untimed
	reschedule(i int, d time.Duration)
	cancel(i int)
	rearm(i int, d time.Duration) // after cancel: untimed
	tick() (fired int)            // one tick of steady state
	close()
}

// benchQueues runs body for each size and implementation; the queue is
// built once per sub-benchmark, outside the timer.
func benchQueues(b *testing.B, body func(b *testing.B, q queue, n int, r *benchRand)) {
	kinds := []struct {
		name string
		new  func(n int) queue
	}{{"wheel", newWheelQueue}, {"afterfunc", newAfterFuncQueue}, {"heap", newHeapQueue}}
	for _, s := range benchSizes {
		for _, k := range kinds {
			var q queue
			r := new(benchRand)
			b.Run(s.name+"/"+k.name, func(b *testing.B) {
				b.ReportAllocs()
				if q == nil {
					b.StopTimer()
					q = k.new(s.n)
					runtime.GC()
					b.StartTimer()
				}
				*r = 88172645463325252
				body(b, q, s.n, r)
				b.ReportMetric(q.bytesPerTimer(), "B/timer")
			})
			if q != nil {
				q.close()
			}
		}
	}
}

// BenchmarkSchedule arms idle timers in a queue of n live ones.
func BenchmarkSchedule(b *testing.B) {
	benchQueues(b, func(b *testing.B, q queue, n int, r *benchRand) {
		for done := 0; done < b.N; {
			k := min(benchBatch, b.N-done)
			q.armSpares(k)
			b.StopTimer()
			q.disarmSpares(k)
			b.StartTimer()
			done += k
		}
	})
}

// BenchmarkReschedule moves a random live timer to a random due time.
func BenchmarkReschedule(b *testing.B) {
	benchQueues(b, func(b *testing.B, q queue, n int, r *benchRand) {
		for range b.N {
			q.reschedule(r.intn(n), r.delay())
		}
	})
}

// BenchmarkCancel cancels live timers (and rearms them off the clock).
func BenchmarkCancel(b *testing.B) {
	benchQueues(b, func(b *testing.B, q queue, n int, r *benchRand) {
		batch := min(benchBatch, n/2)
		for done := 0; done < b.N; {
			k, first := min(batch, b.N-done), r.intn(n)
			for j := range k {
				q.cancel((first + j*benchStride) % n)
			}
			b.StopTimer()
			for j := range k {
				q.rearm((first+j*benchStride)%n, r.delay())
			}
			b.StartTimer()
			done += k
		}
	})
}

// BenchmarkAdvance moves time by one tick in steady state: about n/250
// timers fire and rearm themselves 25 s on. Besides the wall time per tick
// (ns/op) and per timer fired (ns/fire), it reports the process's CPU time
// per timer fired (cpu-ns/fire), which counts the goroutines AfterFunc
// starts on every core.
func BenchmarkAdvance(b *testing.B) {
	benchQueues(b, func(b *testing.B, q queue, n int, r *benchRand) {
		fired, cpu := 0, processCPU()
		for range b.N {
			fired += q.tick()
		}
		cpu = processCPU() - cpu
		fired = max(fired, 1)
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(fired), "ns/fire")
		if cpu > 0 {
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(fired), "cpu-ns/fire")
		}
	})
}

// wheelQueue: the timers are embedded in the caller's state; here, a slice.
type wheelQueue struct {
	w      *Wheel[int]
	timers []Timer[int]
	spares []Timer[int]
	now    time.Time
	bpt    float64
}

func newWheelQueue(n int) queue {
	q := &wheelQueue{now: t0, spares: make([]Timer[int], benchBatch)}
	r := benchRand(1)
	q.bpt = heapPerItem(n, func() {
		q.w = New(t0, benchTick, benchSlots, func(t *Timer[int]) { q.w.Schedule(t, benchSpread) })
		q.timers = make([]Timer[int], n)
		for i := range q.timers {
			q.timers[i].Owner = i
			q.w.Schedule(&q.timers[i], r.delay())
		}
	})
	return q
}

func (q *wheelQueue) bytesPerTimer() float64 { return q.bpt }
func (q *wheelQueue) armSpares(k int) {
	for i := range k {
		q.w.Schedule(&q.spares[i], time.Duration(i)*(benchSpread/benchBatch))
	}
}
func (q *wheelQueue) disarmSpares(k int) {
	for i := range k {
		q.w.Cancel(&q.spares[i])
	}
}
func (q *wheelQueue) reschedule(i int, d time.Duration) { q.w.Schedule(&q.timers[i], d) }
func (q *wheelQueue) cancel(i int)                      { q.w.Cancel(&q.timers[i]) }
func (q *wheelQueue) rearm(i int, d time.Duration)      { q.w.Schedule(&q.timers[i], d) }
func (q *wheelQueue) tick() int {
	q.now = q.now.Add(benchTick)
	return q.w.Advance(q.now)
}
func (q *wheelQueue) close() {}

// afterFuncQueue: one runtime timer per connection, as a goroutine-per-
// connection server has. They are due 25 to 50 s out, so that none fires
// on its own while measured (the runtime's timer heap does not care about
// the offset); tick fires the next n/250 of them now, and waits until all
// their functions (each on its own goroutine) have run and rearmed.
type afterFuncQueue struct {
	timers  []*time.Timer
	spares  []*time.Timer
	next    int // round robin for tick
	pending atomic.Int64
	done    chan struct{}
	bpt     float64
}

func newAfterFuncQueue(n int) queue {
	q := &afterFuncQueue{done: make(chan struct{}, 1), spares: make([]*time.Timer, benchBatch)}
	r := benchRand(1)
	q.bpt = heapPerItem(n, func() {
		q.timers = make([]*time.Timer, n)
		for i := range q.timers {
			q.timers[i] = time.AfterFunc(benchSpread+r.delay(), func() { q.fire(i) })
		}
	})
	return q
}

func (q *afterFuncQueue) fire(i int) {
	q.timers[i].Reset(2 * benchSpread)
	if q.pending.Add(-1) == 0 {
		q.done <- struct{}{}
	}
}

func (q *afterFuncQueue) bytesPerTimer() float64 { return q.bpt }
func (q *afterFuncQueue) armSpares(k int) {
	for i := range k {
		q.spares[i] = time.AfterFunc(benchSpread+time.Duration(i)*(benchSpread/benchBatch), func() {})
	}
}
func (q *afterFuncQueue) disarmSpares(k int) {
	for i := range k {
		q.spares[i].Stop()
		q.spares[i] = nil
	}
}
func (q *afterFuncQueue) reschedule(i int, d time.Duration) { q.timers[i].Reset(benchSpread + d) }
func (q *afterFuncQueue) cancel(i int)                      { q.timers[i].Stop() }
func (q *afterFuncQueue) rearm(i int, d time.Duration)      { q.timers[i].Reset(benchSpread + d) }
func (q *afterFuncQueue) tick() int {
	k := max(1, len(q.timers)/int(benchSpread/benchTick))
	q.pending.Store(int64(k))
	for range k {
		q.timers[q.next].Reset(0)
		q.next = (q.next + 1) % len(q.timers)
	}
	<-q.done
	return k
}
func (q *afterFuncQueue) close() {
	for _, t := range q.timers {
		t.Stop()
	}
}

// heapQueue's benchmark wrapper.
type heapQueueBench struct {
	q       heapQueue
	entries []heapEntry
	spares  []heapEntry
	fire    func(*heapEntry)
	bpt     float64
}

func newHeapQueue(n int) queue {
	h := &heapQueueBench{spares: make([]heapEntry, benchBatch)}
	for i := range h.spares {
		h.spares[i].index = -1
	}
	h.fire = func(e *heapEntry) { h.q.schedule(e, int64(benchSpread)) }
	r := benchRand(1)
	h.bpt = heapPerItem(n, func() {
		h.entries = make([]heapEntry, n)
		for i := range h.entries {
			h.entries[i] = heapEntry{index: -1, owner: i}
			h.q.schedule(&h.entries[i], int64(r.delay()))
		}
	})
	return h
}

func (h *heapQueueBench) bytesPerTimer() float64 { return h.bpt }
func (h *heapQueueBench) armSpares(k int) {
	for i := range k {
		h.q.schedule(&h.spares[i], int64(time.Duration(i)*(benchSpread/benchBatch)))
	}
}
func (h *heapQueueBench) disarmSpares(k int) {
	for i := range k {
		h.q.cancel(&h.spares[i])
	}
}
func (h *heapQueueBench) reschedule(i int, d time.Duration) { h.q.schedule(&h.entries[i], int64(d)) }
func (h *heapQueueBench) cancel(i int)                      { h.q.cancel(&h.entries[i]) }
func (h *heapQueueBench) rearm(i int, d time.Duration)      { h.q.schedule(&h.entries[i], int64(d)) }
func (h *heapQueueBench) tick() int                         { return h.q.advance(h.q.now+int64(benchTick), h.fire) }
func (h *heapQueueBench) close()                            {}

// BenchmarkAdvanceLongDelay is BenchmarkAdvance for the wheel alone with
// delays of 25 s and a shorter tick, so that timers are due several
// revolutions out (5 with 10 ms, 50 with 1 ms) and go through the far
// level. max-ns/tick is the slowest tick seen: moving a block's timers to
// the near level is spread over the ticks before it.
func BenchmarkAdvanceLongDelay(b *testing.B) {
	for _, tick := range []time.Duration{10 * time.Millisecond, time.Millisecond} {
		for _, s := range benchSizes[1:] {
			b.Run(tick.String()+"/"+s.name, func(b *testing.B) {
				b.ReportAllocs()
				b.StopTimer()
				var w *Wheel[int]
				w = New(t0, tick, benchSlots, func(t *Timer[int]) { w.Schedule(t, benchSpread) })
				timers := make([]Timer[int], s.n)
				r := benchRand(1)
				for i := range timers {
					w.Schedule(&timers[i], r.delay())
				}
				now := t0
				for range benchSpread / tick { // one round of firing: steady state
					now = now.Add(tick)
					w.Advance(now)
				}
				runtime.GC()
				b.StartTimer()
				fired, worst := 0, time.Duration(0)
				for range b.N {
					now = now.Add(tick)
					start := time.Now()
					fired += w.Advance(now)
					worst = max(worst, time.Since(start))
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(fired, 1)), "ns/fire")
				b.ReportMetric(float64(worst.Nanoseconds()), "max-ns/tick")
			})
		}
	}
}
