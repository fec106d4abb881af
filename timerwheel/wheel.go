package timerwheel

import (
	"math"
	"math/bits"
	"time"
)

// Design note: why two levels. A single level with rounds (each slot's
// list holds every timer whose expiry maps to it, and is scanned when the
// slot comes round, firing only the due ones) was measured against this
// wheel with 1M timers due uniformly within 25 s, 512 slots: the same cost
// per tick when the delays fit in a revolution (100 ms tick), 2.4 times the
// cost with 10 ms ticks (5 revolutions: each timer is looked at 5 times)
// and 23 times with 1 ms (50). Two levels move a long-delay timer once.
// Moving a whole block at its boundary, as textbook hierarchical wheels do,
// stalled that tick for 36 ms with 10 ms ticks; spreading the moves over
// the preceding block brought the slowest tick under 1 ms.

// maxSlots bounds the slots argument of New.
const maxSlots = 1 << 24

// minQuota is added to the number of timers a tick may move from the far
// level to the near one.
const minQuota = 16

// Wheel is a hashed timing wheel (Varghese and Lauck) of two levels.
//
// Time. The wheel keeps its own clock, which only [Wheel.Advance] moves
// forward; [Wheel.Now] reads it. Ticks are counted from the start time given
// to [New]: tick k begins at start + k×tick. A timer scheduled for a due
// time D gets the expiry tick E = the first tick boundary at or after D,
// but never a tick the wheel has already processed (E is at least the tick
// after the current one), and it fires during the first Advance(now) with
// now ≥ start + E×tick. So a timer never fires early, and fires less than
// one tick (plus the caller's Advance period) late.
//
// Structure. With S slots, ticks are grouped in blocks of S (a block lasts
// one revolution, S × tick). The near level is a ring of 2S lists, one per
// tick of the current and the next block; the far level is a ring of S
// lists, one per block. A timer due within the current or the next block
// goes straight to its tick's near list, where it stays until it fires: the
// wheel takes that whole list at that tick without looking at its timers.
// A timer due later waits in its block's far list (with the rounds, kept
// implicitly in the expiry tick, for delays beyond S blocks); while the
// wheel runs through the block before it, it moves those timers to the
// near level, at most Len()/(S-1) + 16 per tick, so a long-delay timer is
// moved once and no tick pays for a whole block. All of this is O(1) per timer
// and allocation-free.
//
// A Wheel is not safe for concurrent use. One goroutine (an event loop)
// owns it and calls all of its methods and all methods of the Timers linked
// into it; the fire function runs on that goroutine too. To reach a wheel
// from elsewhere, hand the work to its owner (gnet's EventLoop.Execute).
type Wheel[T any] struct {
	start   time.Time
	tick    int64 // nanoseconds, > 0
	shift   uint  // log2(S)
	mask    int64 // S - 1
	elapsed int64 // the wheel's time: nanoseconds since start
	cur     int64 // elapsed / tick: every timer due at or before it has been taken
	n       int   // armed timers
	fire    func(*Timer[T])
	firing  bool // inside Advance's fire loop

	near []Timer[T] // 2S list sentinels: near[e & (2S-1)] holds the timers of tick e
	far  []Timer[T] // S list sentinels: far[b & (S-1)] holds the timers of block b (and b+S, ...)

	// pending holds the far list of the next block, taken at the start of the
	// current one, whose timers are being moved to the near level (or back to
	// far, if due rounds later), up to quota per tick.
	pending    Timer[T]
	quota      int
	quotaFloor int // minQuota; tests lower it to keep pending busy

	due   Timer[T] // timers taken by the current Advance, to fire
	spare Timer[T] // scratch list for Advance

	visited, moved uint64 // lists visited by Advance, timers moved from far: for tests
}

// New returns a wheel whose time starts at start, with the given tick and
// slots, that calls fire for every timer that comes due.
//
// slots is rounded up to a power of two, and to at least 2. A revolution,
// slots × tick, is best at least as long as the delays the wheel usually
// sees (512 × 100 ms ≈ 51 s for heartbeats of 25 s): a timer due within a
// revolution (or up to two, depending on the phase) is not touched between
// Schedule and fire; one due later is moved once. The wheel holds
// 3 × slots list heads, each the size of a Timer. New panics if tick ≤ 0,
// slots > 2^24 or fire is nil.
//
// fire is called on Advance's caller, once per due timer, with the timer
// already unlinked (no longer Active), so it may Schedule that timer again
// or Schedule and Cancel any others. See [Wheel.Advance] for what such calls
// mean for the Advance in progress. fire must not call Advance.
func New[T any](start time.Time, tick time.Duration, slots int, fire func(t *Timer[T])) *Wheel[T] {
	if tick <= 0 {
		panic("timerwheel: tick must be positive")
	}
	if slots > maxSlots {
		panic("timerwheel: too many slots")
	}
	if fire == nil {
		panic("timerwheel: nil fire function")
	}
	shift := uint(1)
	if slots > 2 {
		shift = uint(bits.Len(uint(slots - 1)))
	}
	s := 1 << shift
	lists := make([]Timer[T], 3*s)
	for i := range lists {
		lists[i].init()
	}
	w := &Wheel[T]{
		start: start,
		tick:  int64(tick),
		shift: shift,
		mask:  int64(s - 1),
		fire:  fire,
		near:  lists[: 2*s : 2*s],
		far:   lists[2*s:],
		quota: minQuota,

		quotaFloor: minQuota,
	}
	w.pending.init()
	w.due.init()
	w.spare.init()
	return w
}

// Schedule arms t to fire once at least d has passed on the wheel's clock:
// its due time is Now()+d, rounded up to a tick boundary. If t is already
// armed it is moved (its previous due time is forgotten).
//
// A d ≤ 0, or any d that lands in the current tick or earlier, makes t due
// at the next tick boundary: it fires on the first Advance that reaches
// it. In particular a timer scheduled from inside fire never fires during
// the Advance that is running, however small d is.
//
// Schedule is O(1) and does not allocate. It must be called on the wheel's
// goroutine.
func (w *Wheel[T]) Schedule(t *Timer[T], d time.Duration) {
	due := w.elapsed + int64(d)
	if d > 0 && due < w.elapsed { // overflow: as late as can be
		due = math.MaxInt64
	}
	w.arm(t, due)
}

// ScheduleAt arms t to fire at time at, with the same rounding and rules as
// [Wheel.Schedule] (which it is, with d = at - Now()). It must be called on
// the wheel's goroutine.
func (w *Wheel[T]) ScheduleAt(t *Timer[T], at time.Time) {
	w.arm(t, int64(at.Sub(w.start)))
}

// arm links t for the tick at which due (nanoseconds since start) is
// reached, and never for a tick already processed.
func (w *Wheel[T]) arm(t *Timer[T], due int64) {
	e := w.cur + 1
	if due > w.cur*w.tick { // then the tick boundary at or after due is > cur
		e = due / w.tick
		if due%w.tick != 0 {
			e++
		}
	}
	if t.next != nil {
		t.unlink()
	} else {
		w.n++
	}
	t.expiry = e
	w.place(t)
}

// place links the idle t into the list for its expiry, which is after cur:
// near if it is in the current or the next block, else far.
func (w *Wheel[T]) place(t *Timer[T]) {
	if b := t.expiry >> w.shift; b-w.cur>>w.shift <= 1 {
		w.near[t.expiry&(2*w.mask+1)].pushBack(t)
	} else {
		w.far[b&w.mask].pushBack(t)
	}
}

// Cancel disarms t and reports whether it was armed. A cancelled timer does
// not fire, even if it was due in the Advance now running (when Cancel is
// called from fire). Cancel is O(1); it must be called on the wheel's
// goroutine.
func (w *Wheel[T]) Cancel(t *Timer[T]) bool {
	if t.next == nil {
		return false
	}
	t.unlink()
	w.n--
	return true
}

// Now returns the wheel's time: the latest time passed to Advance, or the
// start time before that. It is the coarse clock of the wheel's goroutine,
// and what Schedule's delays are relative to. It must be called on the
// wheel's goroutine.
func (w *Wheel[T]) Now() time.Time { return w.start.Add(time.Duration(w.elapsed)) }

// Len returns the number of armed timers. It must be called on the wheel's
// goroutine.
func (w *Wheel[T]) Len() int { return w.n }

// Tick returns the wheel's tick, its unit of time. It is safe for concurrent
// use.
func (w *Wheel[T]) Tick() time.Duration { return time.Duration(w.tick) }

// Slots returns the number of slots (a power of two): a revolution lasts
// Slots() × Tick(). It is safe for concurrent use.
func (w *Wheel[T]) Slots() int { return int(w.mask + 1) }
