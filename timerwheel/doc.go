// Package timerwheel is a hashed timing wheel: O(1) schedule, reschedule and
// cancel of a very large number of timers, with no allocation, driven by an
// explicit clock.
//
// It is built for event loops that keep one timer per connection (ping,
// idle eviction, handshake and close deadlines) for up to millions of
// connections. Embed a [Timer] in the per-connection state and set its
// Owner; create one [Wheel] per event loop with [New], giving it a tick, a
// number of slots and the function to call when a timer comes due; arm,
// re-arm and disarm timers with [Wheel.Schedule], [Wheel.ScheduleAt] and
// [Wheel.Cancel]; and call [Wheel.Advance] once per tick with the current
// time. Due timers fire from inside Advance, in tick order, never before
// their due time and at most about one tick after it. [Wheel.Now] is the
// time of the last Advance: a coarse clock that costs nothing to read.
//
// The wheel has two levels: timers due within about a revolution
// (slots × tick) sit in their tick's list until they fire; later ones wait
// in a coarser ring and are moved down once, a few per tick. Advancing
// across a long gap costs a bounded number of list visits, not one per
// tick elapsed.
//
// Apart from [Wheel.Tick] and [Wheel.Slots], nothing in the package is safe
// for concurrent use: a wheel and its timers belong to the one goroutine
// that advances it. That is what makes it cheap (no locks, no goroutine and
// no runtime timer per timer). Code on other goroutines reaches a wheel by
// asking its owner to run a function.
//
// Start with [Wheel]'s documentation for the exact rules of time, and with
// [Wheel.Advance] for what fire may do. The files: timer.go (the node and
// its lists), wheel.go (the wheel, scheduling, cancelling), advance.go
// (moving time and firing).
package timerwheel
