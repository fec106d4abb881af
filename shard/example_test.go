package shard_test

import (
	"fmt"
	"slices"

	"github.com/wsloop/wsloop/shard"
)

type conn struct {
	id   uint64
	user string
}

// A registry of connections by id and by user, readable from any
// goroutine. A user's key is released on close only if it still names the
// closing connection: the user may have reconnected since.
func ExampleMap() {
	byID := shard.NewMap[uint64, *conn](0)
	byUser := shard.NewMap[string, *conn](0)

	first := &conn{id: 1, user: "alice"}
	byID.Set(first.id, first)
	byUser.Set(first.user, first)

	second := &conn{id: 2, user: "alice"} // alice reconnects
	byID.Set(second.id, second)
	if old, ok := byUser.Swap(second.user, second); ok {
		fmt.Println("alice moved from connection", old.id)
	}

	// The first connection closes late.
	byID.Delete(first.id)
	released := byUser.DeleteIf(first.user, func(c *conn) bool { return c == first })
	fmt.Println("released alice:", released)

	if c, ok := byUser.Get("alice"); ok {
		fmt.Println("alice is on connection", c.id)
	}
	fmt.Println("open:", byID.Len())
	// Output:
	// alice moved from connection 1
	// released alice: false
	// alice is on connection 2
	// open: 1
}

// One event loop's rooms. Only the loop's goroutine touches them: a
// publish reaches the loop as one task and walks the room's members.
func ExampleRooms() {
	rooms := shard.NewRooms[string, *conn]()
	a, b, c := &conn{id: 1}, &conn{id: 2}, &conn{id: 3}
	rooms.Join("match-7", a)
	rooms.Join("match-7", b)
	rooms.Join("lobby", b)
	rooms.Join("lobby", c)

	publish := func(room, msg string) {
		for _, m := range rooms.Members(room) {
			fmt.Printf("to %d: %s\n", m.id, msg) // the engine writes one pre-encoded frame here
		}
	}
	publish("match-7", "goal")

	// b closes: it leaves every room at once.
	fmt.Println("b left", rooms.LeaveAll(b), "rooms")
	fmt.Println("match-7:", rooms.Len("match-7"), "lobby:", rooms.Len("lobby"))

	rooms.Leave("lobby", c)
	names := rooms.RoomsOf(a)
	slices.Sort(names)
	fmt.Println("rooms left:", rooms.NumRooms(), names)
	// Output:
	// to 1: goal
	// to 2: goal
	// b left 2 rooms
	// match-7: 1 lobby: 1
	// rooms left: 1 [match-7]
}

// Set keeps a dense, unordered collection with O(1) removal.
func ExampleSet() {
	var s shard.Set[string]
	s.Add("a")
	s.Add("b")
	s.Add("c")
	s.Remove("a") // "c" moves into its place
	fmt.Println(s.Items(), s.Has("a"), s.Len())
	// Output: [c b] false 2
}
