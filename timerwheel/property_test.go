package timerwheel

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// refEntry is an armed timer in the reference model: the tick boundary
// from which it is due, and its id.
type refEntry struct {
	due time.Time
	id  int
}

// model is the reference: a list of armed timers sorted by due time, and
// for each id the due time it was scheduled for before rounding.
type model struct {
	start time.Time
	tick  time.Duration
	now   time.Time
	list  []refEntry
	raw   map[int]time.Time
}

// boundary is the first tick boundary at or after due that lies after the
// start of the tick containing m.now: when a timer for due becomes due.
func (m *model) boundary(due time.Time) time.Time {
	b := m.start.Add((m.now.Sub(m.start)/m.tick + 1) * m.tick)
	if due.After(b) {
		b = m.start.Add(due.Sub(m.start) / m.tick * m.tick)
		if b.Before(due) {
			b = b.Add(m.tick)
		}
	}
	return b
}

func (m *model) cancel(id int) bool {
	i := slices.IndexFunc(m.list, func(e refEntry) bool { return e.id == id })
	if i < 0 {
		return false
	}
	m.list = slices.Delete(m.list, i, i+1)
	delete(m.raw, id)
	return true
}

func (m *model) schedule(id int, due time.Time) {
	m.cancel(id)
	e := refEntry{m.boundary(due), id}
	i, _ := slices.BinarySearchFunc(m.list, e, func(a, b refEntry) int { return a.due.Compare(b.due) })
	m.list = slices.Insert(m.list, i, e)
	m.raw[id] = due
}

// propRun drives one random sequence against a wheel and the model.
type propRun struct {
	t      *testing.T
	rng    *rand.Rand
	w      *Wheel[int]
	timers []Timer[int]
	m      *model
	fired  int
	log    []string
}

func (r *propRun) failf(format string, args ...any) {
	r.t.Helper()
	tail := r.log[max(0, len(r.log)-30):]
	r.t.Fatalf("%s\nlast operations:\n  %s", fmt.Sprintf(format, args...), joinLines(tail))
}

func joinLines(s []string) string {
	out := ""
	for i, l := range s {
		if i > 0 {
			out += "\n  "
		}
		out += l
	}
	return out
}

// delay picks a delay of a random kind: negative, zero, tick multiples,
// within a revolution, exactly a revolution, several revolutions.
func (r *propRun) delay() time.Duration {
	tick, rev := r.m.tick, r.m.tick*time.Duration(r.w.Slots())
	switch r.rng.IntN(8) {
	case 0:
		return -time.Duration(r.rng.Int64N(int64(3 * rev)))
	case 1:
		return 0
	case 2:
		return time.Duration(r.rng.Int64N(int64(tick)))
	case 3:
		return tick * time.Duration(r.rng.IntN(3*r.w.Slots()))
	case 4:
		return rev * time.Duration(1+r.rng.IntN(3))
	case 5:
		return rev*time.Duration(1+r.rng.IntN(3)) + tick*time.Duration(r.rng.IntN(3)-1)
	case 6:
		return time.Duration(r.rng.Int64N(int64(20 * rev)))
	default:
		return time.Duration(r.rng.Int64N(int64(rev)))
	}
}

// step picks how far to advance: backwards, zero, sub-tick, one tick, a
// few ticks, around a revolution, many revolutions, or a huge gap.
func (r *propRun) step() time.Duration {
	tick, rev := r.m.tick, r.m.tick*time.Duration(r.w.Slots())
	switch r.rng.IntN(10) {
	case 0:
		return -time.Duration(r.rng.Int64N(int64(2 * rev)))
	case 1:
		return 0
	case 2:
		return time.Duration(r.rng.Int64N(int64(tick)))
	case 3:
		return tick
	case 4:
		return rev + tick*time.Duration(r.rng.IntN(3)-1)
	case 5:
		return time.Duration(r.rng.Int64N(int64(5 * rev)))
	case 6:
		return rev * time.Duration(1_000_000+r.rng.IntN(1000))
	default:
		return time.Duration(r.rng.Int64N(int64(4 * tick)))
	}
}

func (r *propRun) schedule(id int) {
	d := r.delay()
	now := r.w.Now()
	if r.rng.IntN(4) == 0 {
		r.log = append(r.log, fmt.Sprintf("ScheduleAt(%d, now%+v)", id, d))
		r.w.ScheduleAt(&r.timers[id], now.Add(d))
	} else {
		r.log = append(r.log, fmt.Sprintf("Schedule(%d, %v)", id, d))
		r.w.Schedule(&r.timers[id], d)
	}
	r.m.schedule(id, now.Add(d))
}

func (r *propRun) cancel(id int) {
	r.log = append(r.log, fmt.Sprintf("Cancel(%d)", id))
	if got, want := r.w.Cancel(&r.timers[id]), r.m.cancel(id); got != want {
		r.failf("Cancel(%d) = %v, want %v", id, got, want)
	}
}

// onFire checks a firing against the model, then sometimes schedules or
// cancels timers, as an engine's fire function does.
func (r *propRun) onFire(t *Timer[int]) {
	id, now := t.Owner, r.w.Now()
	r.log = append(r.log, fmt.Sprintf("  fired %d", id))
	r.fired++
	if !now.Equal(r.m.now) {
		r.failf("Now() in fire = %v, want the Advance time %v", now, r.m.now)
	}
	i := slices.IndexFunc(r.m.list, func(e refEntry) bool { return e.id == id })
	switch {
	case i < 0:
		r.failf("timer %d fired but is not armed (fired twice, or after Cancel)", id)
	case r.m.list[i].due.After(now):
		r.failf("timer %d fired early: at %v, due %v", id, now, r.m.list[i].due)
	case r.m.raw[id].After(now):
		r.failf("timer %d fired before its unrounded due time %v", id, r.m.raw[id])
	case r.m.list[0].due.Before(r.m.list[i].due):
		r.failf("timer %d (due %v) fired before timer %d (due %v)", id, r.m.list[i].due, r.m.list[0].id, r.m.list[0].due)
	}
	r.m.cancel(id)
	if t.Active() {
		r.failf("timer %d is active in its fire function", id)
	}
	for r.rng.IntN(3) == 0 {
		other := r.rng.IntN(len(r.timers))
		if r.rng.IntN(2) == 0 {
			r.schedule(other)
		} else {
			r.cancel(other)
		}
	}
}

func (r *propRun) advance() {
	to := r.w.Now().Add(r.step())
	r.log = append(r.log, fmt.Sprintf("Advance(now%+v)", to.Sub(r.w.Now())))
	if to.After(r.m.now) {
		r.m.now = to
	}
	r.fired = 0
	v := r.w.visited
	n := r.w.Advance(to)
	if n != r.fired {
		r.failf("Advance returned %d, but %d fired", n, r.fired)
	}
	if !r.w.Now().Equal(r.m.now) {
		r.failf("Now() = %v, want %v", r.w.Now(), r.m.now)
	}
	if len(r.m.list) > 0 && !r.m.list[0].due.After(r.m.now) {
		r.failf("timer %d due %v did not fire by %v", r.m.list[0].id, r.m.list[0].due, r.m.now)
	}
	// Each list of the wheel at most once, plus the radix sort's passes over
	// 2S buckets (one per log2(2S) bits of a 64-bit key at most): a bound
	// that does not depend on the ticks elapsed.
	s := uint64(r.w.Slots())
	if bound := 3*s + 2*s*uint64(64/bits.Len64(s)+1); r.w.visited-v > bound {
		r.failf("Advance visited %d lists, more than %d", r.w.visited-v, bound)
	}
}

func (r *propRun) check() {
	if r.w.Len() != len(r.m.list) {
		r.failf("Len() = %d, want %d", r.w.Len(), len(r.m.list))
	}
	for id := range r.timers {
		_, armed := r.m.raw[id]
		if r.timers[id].Active() != armed {
			r.failf("timer %d: Active() = %v, want %v", id, !armed, armed)
		}
	}
}

// TestAgainstModel runs thousands of random sequences of Schedule,
// ScheduleAt, Cancel and Advance (forward by sub-tick to millions of
// revolutions, zero, backwards), with fire itself scheduling and
// cancelling, and compares every firing with the sorted-list model.
func TestAgainstModel(t *testing.T) {
	seqs, ops := 3000, 300
	if testing.Short() {
		seqs = 300
	}
	ticks := []time.Duration{1, 3, time.Millisecond, 7 * time.Millisecond, 100 * time.Millisecond}
	for seed := range uint64(seqs) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		start := time.Unix(rng.Int64N(1<<40)-1<<39, rng.Int64N(1e9))
		if seed%2 == 0 {
			start = time.Now() // with a monotonic clock reading
		}
		tick := ticks[rng.IntN(len(ticks))]
		r := &propRun{
			t:      t,
			rng:    rng,
			timers: make([]Timer[int], 1+rng.IntN(40)),
			m:      &model{start: start, tick: tick, now: start, raw: map[int]time.Time{}},
		}
		for i := range r.timers {
			r.timers[i].Owner = i
		}
		r.w = New(start, tick, 1<<(1+rng.IntN(6)), r.onFire)
		if seed%3 == 0 {
			// Move far timers to the near level one per tick, so that
			// pending is often part-drained when timers are rescheduled,
			// cancelled, fired or jumped over.
			r.w.quota, r.w.quotaFloor = 1, 1
		}
		r.log = append(r.log, fmt.Sprintf("seed %d: New(tick %v, %d slots), %d timers", seed, tick, r.w.Slots(), len(r.timers)))
		for range ops {
			switch k := rng.IntN(10); {
			case k < 4:
				r.schedule(rng.IntN(len(r.timers)))
			case k < 6:
				r.cancel(rng.IntN(len(r.timers)))
			default:
				r.advance()
			}
			r.check()
		}
	}
}
