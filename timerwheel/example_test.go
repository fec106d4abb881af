package timerwheel_test

import (
	"fmt"
	"time"

	"github.com/wsloop/wsloop/timerwheel"
)

// conn is per-connection state with its one timer embedded.
type conn struct {
	id       int
	timer    timerwheel.Timer[*conn]
	lastRead time.Time
}

// Example shows the intended shape: one timer per connection, embedded in
// it; one wheel per event loop, advanced once per tick; a fire function
// that looks at the connection and either evicts it or re-arms its timer.
func Example() {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	const idle = 3 * time.Second

	var wheel *timerwheel.Wheel[*conn]
	wheel = timerwheel.New(start, 100*time.Millisecond, 512, func(t *timerwheel.Timer[*conn]) {
		c := t.Owner
		now := wheel.Now()
		if silent := now.Sub(c.lastRead); silent < idle {
			wheel.Schedule(&c.timer, idle-silent) // heard from since: re-arm
			return
		}
		fmt.Printf("%v: evict conn %d\n", now.Sub(start), c.id)
	})

	conns := []*conn{{id: 1}, {id: 2}}
	for _, c := range conns {
		c.timer.Owner = c
		c.lastRead = wheel.Now()
		wheel.Schedule(&c.timer, idle)
	}
	// The event loop's ticker: advance every 100 ms; conn 2 reads at 2 s.
	for now := start; now.Sub(start) <= 6*time.Second; now = now.Add(100 * time.Millisecond) {
		wheel.Advance(now)
		if now.Sub(start) == 2*time.Second {
			conns[1].lastRead = wheel.Now()
		}
	}
	fmt.Println("armed:", wheel.Len())
	// Output:
	// 3s: evict conn 1
	// 5s: evict conn 2
	// armed: 0
}
