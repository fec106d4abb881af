package timerwheel

// Timer is an intrusive timer node. Embed it by value in the state it times
// (one per connection, say), set Owner once, and arm it with [Wheel.Schedule]
// or [Wheel.ScheduleAt]; the wheel links the node itself, so arming,
// re-arming and cancelling allocate nothing. The zero Timer (with Owner set)
// is idle.
//
// A Timer belongs to at most one Wheel at a time and, like the Wheel, is not
// safe for concurrent use: it must only be touched on the goroutine that
// drives its wheel. It must not be copied while armed. With a pointer-sized
// Owner it takes 32 bytes on 64-bit platforms.
type Timer[T any] struct {
	// Owner is the caller's handle on the timed state (typically a pointer
	// to the struct the Timer is embedded in). The wheel never reads it.
	Owner T

	prev, next *Timer[T] // list links; next == nil means idle
	expiry     int64     // tick at which the timer is due, valid while linked
}

// Active reports whether t is armed: scheduled and not yet fired or
// cancelled. A timer is no longer active when its fire function runs. Like
// every Timer method, Active must be called on the wheel's goroutine.
func (t *Timer[T]) Active() bool { return t.next != nil }

// The wheel's lists are circular and doubly linked around a sentinel Timer,
// so a node can leave whichever list it is in (a near or far slot, pending,
// or the timers due in the current Advance) in O(1) without knowing which.

// init makes the sentinel s an empty list.
func (s *Timer[T]) init() { s.prev, s.next = s, s }

// empty reports whether the list whose sentinel is s is empty.
func (s *Timer[T]) empty() bool { return s.next == s }

// pushBack appends t to the list whose sentinel is s.
func (s *Timer[T]) pushBack(t *Timer[T]) {
	t.prev, t.next = s.prev, s
	s.prev.next = t
	s.prev = t
}

// unlink removes t from its list and marks it idle.
func (t *Timer[T]) unlink() {
	t.prev.next, t.next.prev = t.next, t.prev
	t.prev, t.next = nil, nil
}

// spliceBack moves every node of the list whose sentinel is src to the end of
// the list whose sentinel is s, leaving src empty. O(1).
func (s *Timer[T]) spliceBack(src *Timer[T]) {
	if src.empty() {
		return
	}
	first, last := src.next, src.prev
	first.prev = s.prev
	s.prev.next = first
	last.next = s
	s.prev = last
	src.init()
}

// moveTo unlinks t from its list and appends it to the list whose sentinel
// is s.
func (t *Timer[T]) moveTo(s *Timer[T]) {
	t.prev.next, t.next.prev = t.next, t.prev
	s.pushBack(t)
}

// mergeSort sorts the list whose sentinel is s by expiry, stably, in
// O(k log k) for k nodes and without allocating: a bottom-up merge sort of
// the singly linked chain (Simon Tatham's), after which the prev links are
// rebuilt.
func (s *Timer[T]) mergeSort() {
	if s.empty() || s.next == s.prev {
		return
	}
	s.prev.next = nil
	list := s.next
	for width := 1; ; width *= 2 {
		var head, tail *Timer[T]
		merges := 0
		for p := list; p != nil; {
			merges++
			q, pn := p, 0
			for pn < width && q != nil {
				pn++
				q = q.next
			}
			qn := width
			for pn > 0 || (qn > 0 && q != nil) {
				var e *Timer[T]
				if pn > 0 && (qn == 0 || q == nil || p.expiry <= q.expiry) {
					e, p = p, p.next
					pn--
				} else {
					e, q = q, q.next
					qn--
				}
				if tail == nil {
					head = e
				} else {
					tail.next = e
				}
				tail = e
			}
			p = q
		}
		tail.next = nil
		list = head
		if merges <= 1 {
			break
		}
	}
	prev := s
	for e := list; e != nil; e = e.next {
		e.prev = prev
		prev = e
	}
	s.next = list
	prev.next = s
	s.prev = prev
}
