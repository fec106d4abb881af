package timerwheel

import (
	"math/bits"
	"time"
)

// Advance moves the wheel's time to now and fires every timer that is due,
// each exactly once, and reports how many fired. A time at or before Now()
// is a no-op (the wheel's clock never goes backwards); a time in the same
// tick as Now() moves the clock but fires nothing.
//
// Timers fire in tick order: all timers due in one tick fire before any
// timer due in a later tick; timers due in the same tick fire in no
// particular order. Advance first takes every timer due at or before now
// out of the wheel, then fires them one by one; meanwhile Now() already
// reports now. Hence, from inside fire:
//   - Cancel on a timer that has been taken but has not fired yet (due in
//     the same tick, or in a later one up to now) removes it: it does not
//     fire, and Cancel reports true;
//   - Schedule of any timer, including the one firing, with any delay
//     (even ≤ 0), arms it relative to now, so it is due at a tick after now
//     and fires on a later Advance, never in this one; a timer that had
//     been taken and not yet fired is moved accordingly.
//
// The work does not grow with the ticks elapsed. An Advance of less than
// about two revolutions visits one list per tick. A longer one (after the
// process was stopped for an hour, say) visits each of the wheel's
// 3 × Slots() lists once, looks at the timers due by now or within two
// revolutions after it (and at any very distant ones sharing their far
// lists), and sorts the due ones by tick: a merge sort below 2 × Slots()
// timers, else a radix sort in passes of O(timers + 2 × Slots()), one per
// log2(2 × Slots()) bits of the gap (two for a gap under 2 × Slots()²
// ticks). Advance never allocates.
//
// Advance must be called on the wheel's goroutine, and not from fire (it
// panics if it is). If fire panics, the timers taken but not yet fired stay
// armed and fire on the next Advance that reaches a new tick.
func (w *Wheel[T]) Advance(now time.Time) (fired int) {
	e := int64(now.Sub(w.start))
	if e <= w.elapsed {
		return 0
	}
	if w.firing {
		panic("timerwheel: Advance called from fire")
	}
	w.elapsed = e
	target := e / w.tick
	if target == w.cur {
		return 0
	}
	if target>>w.shift-w.cur>>w.shift <= 1 {
		w.step(target)
	} else {
		w.jump(target)
	}
	if w.due.empty() {
		return 0
	}
	w.firing = true
	defer w.endFiring()
	for !w.due.empty() {
		t := w.due.next
		t.unlink()
		w.n--
		fired++
		w.fire(t)
	}
	return fired
}

// step processes the ticks from cur+1 to target, in the current or the
// next block, one by one: their near lists hold exactly their timers.
func (w *Wheel[T]) step(target int64) {
	for w.cur < target { // not k <= target: target may be math.MaxInt64
		k := w.cur + 1
		if k&w.mask == 0 {
			w.beginBlock(k >> w.shift)
		} else {
			w.drain(w.quota)
		}
		w.visited++
		w.due.spliceBack(&w.near[k&(2*w.mask+1)])
		w.cur = k
	}
}

// beginBlock is called as block b begins (cur is its first tick - 1): the
// rest of b's timers go to the near level, and the far list of block b+1
// becomes pending. It holds at most Len() timers, so a quota of Len()/(S-1)
// per tick, over the block's other S-1 ticks, moves all of them before the
// next block begins (unless timers are scheduled into it meanwhile).
func (w *Wheel[T]) beginBlock(b int64) {
	w.drain(-1) // a safety net: the quota has emptied pending already
	w.quota = w.n/int(w.mask) + w.quotaFloor
	w.visited++
	w.pending.spliceBack(&w.far[(b+1)&w.mask])
}

// drain moves up to limit timers (all if limit < 0) out of pending: those
// of the next block to the near level, those due rounds later back to far.
func (w *Wheel[T]) drain(limit int) {
	next := w.cur>>w.shift + 1
	for ; limit != 0 && !w.pending.empty(); limit-- {
		t := w.pending.next
		if b := t.expiry >> w.shift; b == next {
			t.moveTo(&w.near[t.expiry&(2*w.mask+1)])
		} else {
			t.moveTo(&w.far[b&w.mask])
		}
		w.moved++
	}
}

// jump takes every timer due by target, in the block two or more after
// cur's, into w.due in tick order, and leaves the wheel as if it had stepped
// through every tick to target, visiting each list once.
func (w *Wheel[T]) jump(target int64) {
	nmask := 2*w.mask + 1
	c, bt := w.cur>>w.shift, target>>w.shift
	// Near timers are due before block c+2 ≤ bt: all of them fire. They are
	// in the 2S-1 lists after cur's, which is empty.
	k := 0
	for i := range nmask {
		w.visited++
		s := &w.near[(w.cur+1+i)&nmask]
		if !s.empty() {
			k++ // at least; enough to choose the sort
			w.due.spliceBack(s)
		}
	}
	// Far timers are in blocks ≥ c+2, pending ones in c+1 or rounds later:
	// take the due ones, set aside those of blocks bt and bt+1 for the near
	// level, leave the rest in (or return it to) far. maxDue is the latest
	// expiry among them (the near ones, in order already, have sort keys
	// below 2S: the radix sort's first digit covers them).
	maxDue := w.cur + 1
	for b := c + 2; b <= min(bt+1, c+1+w.mask+1); b++ {
		w.visited++
		s := &w.far[b&w.mask]
		for t := s.next; t != s; {
			next := t.next
			if t.expiry <= target {
				t.moveTo(&w.due)
				maxDue = max(maxDue, t.expiry)
				k++
			} else if t.expiry>>w.shift <= bt+1 {
				t.moveTo(&w.spare)
			}
			t = next
		}
	}
	for !w.pending.empty() {
		t := w.pending.next
		if b := t.expiry >> w.shift; t.expiry <= target {
			t.moveTo(&w.due)
			maxDue = max(maxDue, t.expiry)
			k++
		} else if b <= bt+1 {
			t.moveTo(&w.spare)
		} else {
			t.moveTo(&w.far[b&w.mask])
		}
	}
	if k > 1 {
		w.sortDue(maxDue-w.cur-1, k)
	}
	w.cur = target
	for !w.spare.empty() {
		t := w.spare.next
		t.moveTo(&w.near[t.expiry&nmask])
	}
}

// sortDue sorts w.due by expiry, stably. Its keys, expiry-cur-1, are at
// most maxKey; k estimates its length from below. With many timers it is
// an LSD radix sort that uses the (empty) near lists as buckets.
func (w *Wheel[T]) sortDue(maxKey int64, k int) {
	nb := len(w.near)
	if k < nb {
		w.due.mergeSort()
		return
	}
	width := w.shift + 1
	for sh := uint(0); sh < uint(bits.Len64(uint64(maxKey))); sh += width {
		for !w.due.empty() {
			t := w.due.next
			t.moveTo(&w.near[((t.expiry-w.cur-1)>>sh)&int64(nb-1)])
		}
		for i := range w.near {
			w.visited++
			w.due.spliceBack(&w.near[i])
		}
	}
}

// endFiring ends Advance's fire loop. Normally the due list is empty by
// now; if fire panicked, what is left goes back into the wheel, due at the
// next tick, so that no armed timer is lost.
func (w *Wheel[T]) endFiring() {
	w.firing = false
	for !w.due.empty() {
		t := w.due.next
		t.unlink()
		t.expiry = w.cur + 1
		w.place(t)
	}
}
