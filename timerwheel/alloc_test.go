package timerwheel

import (
	"testing"
	"time"
)

// TestNoAllocs checks that the hot paths never allocate: Schedule (of an
// idle timer and of an armed one), ScheduleAt, Cancel, and Advance, both
// one tick at a time and across a long gap, with fire rescheduling.
func TestNoAllocs(t *testing.T) {
	const n = 4096
	timers := make([]Timer[int], n)
	var w *Wheel[int]
	w = New(t0, time.Millisecond, 64, func(t *Timer[int]) {
		w.Schedule(t, time.Duration(t.Owner%300)*time.Millisecond)
	})
	for i := range timers {
		timers[i].Owner = i
		w.Schedule(&timers[i], time.Duration(i%500)*time.Millisecond)
	}
	i := 0
	now := t0
	for name, f := range map[string]func(){
		"Schedule idle": func() {
			w.Cancel(&timers[i%n])
			w.Schedule(&timers[i%n], time.Duration(i%1000)*time.Millisecond)
			i++
		},
		"Schedule armed": func() {
			w.Schedule(&timers[i%n], time.Duration(i%1000)*time.Millisecond)
			i++
		},
		"ScheduleAt": func() {
			w.ScheduleAt(&timers[i%n], now.Add(time.Duration(i%5000)*time.Millisecond))
			i++
		},
		"Cancel": func() {
			w.Cancel(&timers[i%n])
			w.Schedule(&timers[i%n], time.Second)
			i++
		},
		"Advance one tick": func() {
			now = now.Add(time.Millisecond)
			w.Advance(now)
		},
		"Advance long gap": func() {
			now = now.Add(time.Hour)
			w.Advance(now)
		},
	} {
		if a := testing.AllocsPerRun(1000, f); a != 0 {
			t.Errorf("%s: %v allocations per run, want 0", name, a)
		}
	}
	if w.Len() != n {
		t.Fatalf("Len = %d, want %d", w.Len(), n)
	}
}
