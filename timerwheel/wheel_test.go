package timerwheel

import (
	"math"
	"slices"
	"testing"
	"time"
	"unsafe"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// harness is a wheel of int-owned timers that records what fires.
type harness struct {
	tb     testing.TB
	w      *Wheel[int]
	timers []Timer[int]
	fired  []int        // owners, in firing order
	onFire func(id int) // optional extra work inside fire
}

func newHarness(tb testing.TB, tick time.Duration, slots, timers int) *harness {
	h := &harness{tb: tb, timers: make([]Timer[int], timers)}
	for i := range h.timers {
		h.timers[i].Owner = i
	}
	h.w = New(t0, tick, slots, func(t *Timer[int]) {
		if t.Active() {
			tb.Errorf("timer %d is still active in fire", t.Owner)
		}
		h.fired = append(h.fired, t.Owner)
		if h.onFire != nil {
			h.onFire(t.Owner)
		}
	})
	return h
}

// at advances the wheel to t0+d and returns the owners fired, in order.
func (h *harness) at(d time.Duration) []int {
	h.tb.Helper()
	h.fired = h.fired[:0]
	n := h.w.Advance(t0.Add(d))
	if n != len(h.fired) {
		h.tb.Fatalf("Advance(%v) = %d, but %d fired", d, n, len(h.fired))
	}
	return slices.Clone(h.fired)
}

// expect advances to t0+d and checks what fired.
func (h *harness) expect(d time.Duration, want ...int) {
	h.tb.Helper()
	got := h.at(d)
	if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
		h.tb.Fatalf("Advance(t0+%v) fired %v, want %v", d, got, want)
	}
}

// firstFire steps the wheel one tick at a time from its time on and
// returns the first tick (since t0) at which timer id fires, up to limit.
func (h *harness) firstFire(id int, limit int64) int64 {
	h.tb.Helper()
	tick := h.w.Tick()
	for k := int64(h.w.Now().Sub(t0)/tick) + 1; k <= limit; k++ {
		if slices.Contains(h.at(time.Duration(k)*tick), id) {
			return k
		}
	}
	return -1
}

func TestNewRoundsSlotsUp(t *testing.T) {
	for _, c := range []struct{ in, want int }{{-1, 2}, {0, 2}, {1, 2}, {2, 2}, {3, 4}, {5, 8}, {512, 512}, {513, 1024}} {
		w := New(t0, time.Millisecond, c.in, func(*Timer[int]) {})
		if got := w.Slots(); got != c.want {
			t.Errorf("New(slots=%d).Slots() = %d, want %d", c.in, got, c.want)
		}
	}
	for name, f := range map[string]func(){
		"zero tick":     func() { New(t0, 0, 8, func(*Timer[int]) {}) },
		"negative tick": func() { New(t0, -time.Second, 8, func(*Timer[int]) {}) },
		"nil fire":      func() { New[int](t0, time.Second, 8, nil) },
		"huge slots":    func() { New(t0, time.Second, maxSlots+1, func(*Timer[int]) {}) },
	} {
		if !panics(f) {
			t.Errorf("New with %s did not panic", name)
		}
	}
}

func TestTimerSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("not a 64-bit platform")
	}
	if s := unsafe.Sizeof(Timer[*int]{}); s > 40 {
		t.Errorf("Timer[*int] takes %d bytes, want at most 40", s)
	}
}

func TestZeroDelay(t *testing.T) {
	h := newHarness(t, time.Second, 8, 2)
	h.w.Schedule(&h.timers[0], 0) // at a tick boundary: due at the next one
	h.expect(999 * time.Millisecond)
	h.expect(time.Second, 0)
	h.expect(1500 * time.Millisecond) // mid-tick: due at the next boundary
	h.w.Schedule(&h.timers[1], 0)
	h.expect(1999 * time.Millisecond)
	h.expect(2*time.Second, 1)
}

func TestNegativeDelay(t *testing.T) {
	h := newHarness(t, time.Second, 8, 3)
	h.expect(5500 * time.Millisecond)
	h.w.Schedule(&h.timers[0], -time.Hour)
	h.w.Schedule(&h.timers[1], -300*time.Millisecond) // in the current tick
	h.w.ScheduleAt(&h.timers[2], t0.Add(-time.Hour))  // before start
	if h.w.Len() != 3 {
		t.Fatalf("Len = %d, want 3", h.w.Len())
	}
	h.expect(5999 * time.Millisecond)
	if got := h.at(6 * time.Second); len(got) != 3 {
		t.Fatalf("fired %v at 6s, want all three", got)
	}
}

func TestDelayOneRevolution(t *testing.T) {
	const slots = 8
	for _, from := range []int64{0, 3, 8, 13} {
		h := newHarness(t, time.Millisecond, slots, 1)
		h.expect(time.Duration(from) * time.Millisecond)
		h.w.Schedule(&h.timers[0], slots*time.Millisecond) // lands in the slot just processed
		if k := h.firstFire(0, from+3*slots); k != from+slots {
			t.Errorf("from tick %d: fired at tick %d, want %d", from, k, from+slots)
		}
	}
}

func TestDelayOneRevolutionPlusOneTick(t *testing.T) {
	const slots = 8
	h := newHarness(t, time.Millisecond, slots, 1)
	h.expect(5 * time.Millisecond)
	h.w.Schedule(&h.timers[0], (slots+1)*time.Millisecond)
	if k := h.firstFire(0, 100); k != 5+slots+1 {
		t.Errorf("fired at tick %d, want %d", k, 5+slots+1)
	}
}

func TestDelayManyRevolutions(t *testing.T) {
	const slots, revs = 8, 1000
	d := (revs*slots + 3) * time.Millisecond
	h := newHarness(t, time.Millisecond, slots, 2)
	h.w.Schedule(&h.timers[0], d)
	h.w.Schedule(&h.timers[1], d)
	if k := h.firstFire(0, 2*revs*slots); k != revs*slots+3 {
		t.Errorf("stepping tick by tick: fired at tick %d, want %d", k, revs*slots+3)
	}
	// The same in one jump, and one just short of it.
	h = newHarness(t, time.Millisecond, slots, 1)
	h.w.Schedule(&h.timers[0], d)
	h.expect(d - 1)
	h.expect(d, 0)
}

func TestRescheduleToCurrentSlot(t *testing.T) {
	const slots = 8
	h := newHarness(t, time.Millisecond, slots, 3)
	h.w.Schedule(&h.timers[0], 5*time.Millisecond)
	h.w.Schedule(&h.timers[1], 5*time.Millisecond)
	h.w.Schedule(&h.timers[2], 2*time.Millisecond)
	h.expect(3*time.Millisecond, 2)
	// Tick 3's slot is the current one; a full revolution maps back to it.
	h.w.Schedule(&h.timers[0], slots*time.Millisecond)
	// Rescheduling to the same due time keeps the timer in its slot.
	h.w.Schedule(&h.timers[1], 2*time.Millisecond)
	// A timer that fired, scheduled again into the slot of the current tick.
	h.w.ScheduleAt(&h.timers[2], t0.Add(3*time.Millisecond))
	if h.w.Len() != 3 {
		t.Fatalf("Len = %d, want 3", h.w.Len())
	}
	h.expect(4*time.Millisecond, 2) // due time passed: next tick
	h.expect(5*time.Millisecond, 1)
	h.expect((3 + slots - 1) * time.Millisecond)
	h.expect((3+slots)*time.Millisecond, 0)
}

func TestRescheduleFromFire(t *testing.T) {
	h := newHarness(t, time.Millisecond, 8, 1)
	h.onFire = func(id int) { h.w.Schedule(&h.timers[id], 3*time.Millisecond) }
	h.w.Schedule(&h.timers[0], 3*time.Millisecond)
	for k := time.Duration(1); k <= 30; k++ {
		want := []int(nil)
		if k%3 == 0 {
			want = []int{0}
		}
		h.expect(k*time.Millisecond, want...)
	}
	// Across a long gap a periodic timer fires once, then runs from there.
	h.expect(1000*time.Millisecond, 0)
	h.expect(1002 * time.Millisecond)
	h.expect(1003*time.Millisecond, 0)
	if !h.timers[0].Active() || h.w.Len() != 1 {
		t.Fatalf("rescheduled timer: Active = %v, Len = %d", h.timers[0].Active(), h.w.Len())
	}
}

func TestCancelAfterFire(t *testing.T) {
	h := newHarness(t, time.Millisecond, 8, 1)
	h.w.Schedule(&h.timers[0], time.Millisecond)
	h.expect(time.Millisecond, 0)
	if h.timers[0].Active() {
		t.Error("Active after fire")
	}
	if h.w.Cancel(&h.timers[0]) {
		t.Error("Cancel after fire = true")
	}
	if h.w.Len() != 0 {
		t.Errorf("Len = %d", h.w.Len())
	}
	var idle Timer[int]
	if h.w.Cancel(&idle) {
		t.Error("Cancel of the zero Timer = true")
	}
}

func TestCancelFromFireSameTick(t *testing.T) {
	h := newHarness(t, time.Millisecond, 8, 4)
	cancelled := map[int]bool{}
	h.onFire = func(id int) {
		// Each cancels the others: whichever fires first, no other does.
		for j := range h.timers {
			if j != id && h.w.Cancel(&h.timers[j]) {
				cancelled[j] = true
			}
		}
	}
	for i := range 3 {
		h.w.Schedule(&h.timers[i], 2*time.Millisecond)
	}
	h.w.Schedule(&h.timers[3], 5*time.Millisecond) // due in a later tick of the same Advance
	got := h.at(10 * time.Millisecond)
	if len(got) != 1 || len(cancelled) != 3 || cancelled[got[0]] || h.w.Len() != 0 {
		t.Fatalf("fired %v, cancelled %v, Len %d: want one fired, the 3 others cancelled", got, cancelled, h.w.Len())
	}
	h.expect(time.Second)
}

func TestScheduleNowFromFire(t *testing.T) {
	h := newHarness(t, time.Millisecond, 8, 3)
	h.onFire = func(id int) {
		h.w.Schedule(&h.timers[id], 0)          // itself, "now"
		h.w.Schedule(&h.timers[2], -1)          // another idle one, "now"
		h.w.ScheduleAt(&h.timers[1], h.w.Now()) // another due in this Advance
	}
	h.w.Schedule(&h.timers[0], time.Millisecond)
	h.w.Schedule(&h.timers[1], time.Millisecond)
	got := h.at(time.Millisecond)
	if len(got) != 1 || h.w.Len() != 3 {
		t.Fatalf("fired %v, Len %d: want one fired and the three armed", got, h.w.Len())
	}
	h.onFire = nil
	h.expect(1999 * time.Microsecond)
	if got := h.at(2 * time.Millisecond); len(got) != 3 {
		t.Fatalf("next tick fired %v, want all three", got)
	}
}

func TestAdvanceHugeGapVisitsFewSlots(t *testing.T) {
	const slots = 512
	tick := 100 * time.Millisecond
	h := newHarness(t, tick, slots, 4)
	delays := []time.Duration{time.Second, time.Hour, 1000 * time.Hour, 100_000 * time.Hour}
	for i, d := range delays {
		h.w.Schedule(&h.timers[i], d)
	}
	v := h.w.visited
	h.expect(200_000*time.Hour, 0, 1, 2, 3) // 7.2e9 ticks, in tick order
	if n := h.w.visited - v; n > 3*slots {  // 2S near lists, S far ones
		t.Errorf("a gap of 7.2e9 ticks visited %d lists, want at most %d", n, 3*slots)
	}
	v = h.w.visited
	h.expect(200_000*time.Hour + 10*tick)
	if n := h.w.visited - v; n > 11 { // and maybe one far list
		t.Errorf("a gap of 10 ticks visited %d lists, want at most 11", n)
	}
}

func TestAdvanceHugeGapTickOrder(t *testing.T) {
	const slots, n = 8, 500
	h := newHarness(t, time.Millisecond, slots, n)
	for i := range n { // due ticks in a scrambled order across ~60 revolutions
		h.w.Schedule(&h.timers[i], time.Duration(1+(i*7919)%n)*time.Millisecond)
	}
	got := h.at(time.Hour)
	if len(got) != n {
		t.Fatalf("fired %d, want %d", len(got), n)
	}
	for i := 1; i < n; i++ {
		if a, b := 1+(got[i-1]*7919)%n, 1+(got[i]*7919)%n; a > b {
			t.Fatalf("fired due tick %d before due tick %d", a, b)
		}
	}
}

func TestAdvanceBackwardsAndZero(t *testing.T) {
	h := newHarness(t, time.Millisecond, 8, 1)
	h.expect(10 * time.Millisecond)
	h.w.Schedule(&h.timers[0], time.Millisecond)
	for _, d := range []time.Duration{10 * time.Millisecond, 5 * time.Millisecond, -time.Hour} {
		h.expect(d)
		if got := h.w.Now(); !got.Equal(t0.Add(10 * time.Millisecond)) {
			t.Fatalf("Now after Advance(t0+%v) = %v, want unchanged", d, got)
		}
	}
	h.expect(11*time.Millisecond, 0)
}

func TestNow(t *testing.T) {
	start := time.Now() // with a monotonic reading
	w := New(start, time.Millisecond, 8, func(*Timer[int]) {})
	if !w.Now().Equal(start) {
		t.Fatalf("Now = %v, want start %v", w.Now(), start)
	}
	later := start.Add(1234567 * time.Nanosecond)
	w.Advance(later)
	if !w.Now().Equal(later) || w.Now().Sub(start) != 1234567 {
		t.Fatalf("Now = %v, want %v", w.Now(), later)
	}
	if w.Tick() != time.Millisecond {
		t.Fatalf("Tick = %v", w.Tick())
	}
}

func TestHugeDelay(t *testing.T) {
	h := newHarness(t, time.Millisecond, 8, 2)
	h.expect(time.Hour)
	h.w.Schedule(&h.timers[0], math.MaxInt64) // does not overflow into the past
	h.w.ScheduleAt(&h.timers[1], t0.Add(200*365*24*time.Hour))
	h.expect(100 * 365 * 24 * time.Hour)
	if h.w.Len() != 2 || !h.w.Cancel(&h.timers[0]) || !h.w.Cancel(&h.timers[1]) {
		t.Fatal("huge delays did not stay armed")
	}
}

func TestAdvanceToEndOfTime(t *testing.T) {
	h := newHarness(t, 1, 8, 2) // a 1 ns tick: the tick count reaches math.MaxInt64
	h.w.Schedule(&h.timers[0], math.MaxInt64)
	h.expect(math.MaxInt64 - 5)
	h.w.Schedule(&h.timers[1], 3)
	h.expect(math.MaxInt64-2, 1)
	h.expect(math.MaxInt64, 0) // the last tick: one step at a time
	h.expect(math.MaxInt64)
	if h.w.Len() != 0 {
		t.Fatalf("Len = %d, want 0", h.w.Len())
	}
}

func TestFirePanicKeepsTimers(t *testing.T) {
	h := newHarness(t, time.Millisecond, 8, 3)
	h.onFire = func(int) { panic("boom") }
	for i := range 3 {
		h.w.Schedule(&h.timers[i], time.Duration(i+1)*time.Millisecond)
	}
	if !panics(func() { h.w.Advance(t0.Add(10 * time.Millisecond)) }) {
		t.Fatal("panic in fire did not propagate")
	}
	if h.w.Len() != 2 || !h.timers[1].Active() || !h.timers[2].Active() {
		t.Fatalf("after a panic: Len = %d, want the 2 unfired timers armed", h.w.Len())
	}
	h.onFire = nil
	h.expect(10*time.Millisecond + 999*time.Microsecond)
	h.expect(11*time.Millisecond, 1, 2)
}

func TestAdvanceFromFirePanics(t *testing.T) {
	h := newHarness(t, time.Millisecond, 8, 1)
	var p bool
	h.onFire = func(int) { p = panics(func() { h.w.Advance(t0.Add(time.Hour)) }) }
	h.w.Schedule(&h.timers[0], time.Millisecond)
	h.expect(time.Millisecond, 0)
	if !p {
		t.Fatal("Advance from fire did not panic")
	}
}

func panics(f func()) (p bool) {
	defer func() { p = recover() != nil }()
	f()
	return false
}

func TestFarTimersMoveGradually(t *testing.T) {
	const slots, n = 64, 6400
	h := newHarness(t, time.Millisecond, slots, n)
	// All due in block 3, beyond the near level: its far list becomes
	// pending as block 2 begins.
	for i := range n {
		h.w.Schedule(&h.timers[i], time.Duration(3*slots+i%slots)*time.Millisecond)
	}
	var worst uint64
	for k := 1; k <= 4*slots; k++ {
		m := h.w.moved
		got := h.at(time.Duration(k) * time.Millisecond)
		worst = max(worst, h.w.moved-m)
		want := 0
		if k >= 3*slots && k < 4*slots {
			want = n / slots
		}
		if len(got) != want {
			t.Fatalf("tick %d fired %d timers, want %d", k, len(got), want)
		}
	}
	if h.w.moved != n {
		t.Errorf("%d timers moved from far to near, want each of the %d once", h.w.moved, n)
	}
	if limit := uint64(n/(slots-1) + minQuota); worst > limit {
		t.Errorf("a tick moved %d timers, want at most %d (Len/(S-1) + %d)", worst, limit, minQuota)
	}
}
