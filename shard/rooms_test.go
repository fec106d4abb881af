package shard

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
)

// checkSet checks every invariant of s against the reference set ref.
func checkSet[M comparable](t *testing.T, s *Set[M], ref map[M]bool) {
	t.Helper()
	if s.Len() != len(ref) {
		t.Fatalf("Len = %d, want %d", s.Len(), len(ref))
	}
	items := s.Items()
	if len(items) != len(ref) {
		t.Fatalf("len(Items) = %d, want %d", len(items), len(ref))
	}
	if len(ref) == 0 && (items != nil || s.index != nil) {
		t.Fatalf("an empty set holds memory: items %v, index %v", items, s.index)
	}
	if len(s.index) != len(items) {
		t.Fatalf("index has %d entries for %d items", len(s.index), len(items))
	}
	for i, m := range items {
		if !ref[m] {
			t.Fatalf("Items holds %v, not in the set", m)
		}
		if j, ok := s.index[m]; !ok || int(j) != i {
			t.Fatalf("Items[%d] = %v but index says %d, %v (duplicate or stale)", i, m, j, ok)
		}
	}
	for m := range ref {
		if !s.Has(m) {
			t.Fatalf("Has(%v) = false for a member", m)
		}
	}
	if c := cap(items); c >= shrinkMin && len(items)*4 < c/2 {
		t.Fatalf("%d members in a slice of capacity %d: not compacted", len(items), c)
	}
}

func TestSetMatchesReference(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 3))
			universe := []int{3, 40, 2000}[seed%3]
			var s Set[int]
			ref := make(map[int]bool)
			for op := range 20000 {
				m := rng.IntN(universe)
				// Phases that mostly add, then mostly remove, so sets grow
				// large and shrink (exercising compaction) and empty out.
				addBias := []int{8, 2, 5}[op/1000%3]
				switch x := rng.IntN(10); {
				case x < addBias:
					if got, want := s.Add(m), !ref[m]; got != want {
						t.Fatalf("op %d: Add(%d) = %v, want %v", op, m, got, want)
					}
					ref[m] = true
				case x < 9:
					if got, want := s.Remove(m), ref[m]; got != want {
						t.Fatalf("op %d: Remove(%d) = %v, want %v", op, m, got, want)
					}
					delete(ref, m)
				default:
					if got, want := s.Has(m), ref[m]; got != want {
						t.Fatalf("op %d: Has(%d) = %v, want %v", op, m, got, want)
					}
				}
				if op%31 == 0 || len(ref) < 3 {
					checkSet(t, &s, ref)
				}
			}
			checkSet(t, &s, ref)
		})
	}
}

func TestSetCompactsAfterShrinking(t *testing.T) {
	var s Set[int]
	for i := range 10000 {
		s.Add(i)
	}
	for i := 100; i < 10000; i++ {
		s.Remove(i)
	}
	if c := cap(s.Items()); c > 400 {
		t.Fatalf("100 members left of 10,000 hold a slice of capacity %d", c)
	}
	ref := make(map[int]bool)
	for i := range 100 {
		ref[i] = true
	}
	checkSet(t, &s, ref)
	for i := range 100 {
		s.Remove(i)
	}
	checkSet(t, &s, map[int]bool{})
}

// refRooms is the naive reference: a map of sets.
type refRooms map[string]map[int]bool

func (ref refRooms) join(room string, m int) bool {
	if ref[room][m] {
		return false
	}
	if ref[room] == nil {
		ref[room] = make(map[int]bool)
	}
	ref[room][m] = true
	return true
}

func (ref refRooms) leave(room string, m int) bool {
	if !ref[room][m] {
		return false
	}
	delete(ref[room], m)
	if len(ref[room]) == 0 {
		delete(ref, room)
	}
	return true
}

func (ref refRooms) roomsOf(m int) []string {
	var out []string
	for room, ms := range ref {
		if ms[m] {
			out = append(out, room)
		}
	}
	slices.Sort(out)
	return out
}

// checkRooms checks every invariant of r against ref, for members drawn
// from [0, universe).
func checkRooms(t *testing.T, r *Rooms[string, int], ref refRooms, universe int) {
	t.Helper()
	if r.NumRooms() != len(ref) {
		t.Fatalf("NumRooms = %d, want %d", r.NumRooms(), len(ref))
	}
	for name, rm := range r.rooms {
		if len(rm.members) == 0 {
			t.Fatalf("room %q is empty but still indexed", name)
		}
		if rm.name != name {
			t.Fatalf("room indexed as %q calls itself %q", name, rm.name)
		}
		for i, m := range rm.members {
			if got := r.find(rm, m); got != i {
				t.Fatalf("room %q holds %d at %d; the reverse index says %d", name, m, i, got)
			}
		}
		if c := cap(rm.members); c >= shrinkMin && len(rm.members)*4 < c/2 {
			t.Fatalf("room %q: %d members in a slice of capacity %d: not compacted", name, len(rm.members), c)
		}
	}
	checkSeat := func(m int, s seat[string, int]) {
		t.Helper()
		if r.rooms[s.room.name] != s.room {
			t.Fatalf("member %d has a seat in room %q, which is not indexed", m, s.room.name)
		}
		if int(s.pos) >= len(s.room.members) || s.room.members[s.pos] != m {
			t.Fatalf("member %d has a seat at %d in room %q, which holds someone else", m, s.pos, s.room.name)
		}
	}
	for m, s := range r.one {
		if _, also := r.many[m]; also {
			t.Fatalf("member %d is in both reverse maps", m)
		}
		checkSeat(m, s)
	}
	for m, seats := range r.many {
		if len(seats) == 0 {
			t.Fatalf("member %d in no room is still in the reverse index", m)
		}
		for _, s := range seats {
			checkSeat(m, s)
		}
	}
	for room, ms := range ref {
		if r.Len(room) != len(ms) {
			t.Fatalf("Len(%q) = %d, want %d", room, r.Len(room), len(ms))
		}
		got := r.Members(room)
		if len(got) != len(ms) {
			t.Fatalf("Members(%q) has %d members, want %d", room, len(got), len(ms))
		}
		seen := make(map[int]bool)
		for _, m := range got {
			if !ms[m] || seen[m] {
				t.Fatalf("Members(%q) holds %d: member %v, seen before %v", room, m, ms[m], seen[m])
			}
			seen[m] = true
		}
	}
	rooms := 0
	r.Each(func(room string, members []int) bool {
		rooms++
		if len(members) == 0 || len(members) != len(ref[room]) {
			t.Fatalf("Each showed %q with %d members, want %d", room, len(members), len(ref[room]))
		}
		return true
	})
	if rooms != len(ref) {
		t.Fatalf("Each showed %d rooms, want %d", rooms, len(ref))
	}
	members := 0
	for m := range universe {
		want := ref.roomsOf(m)
		got := r.RoomsOf(m)
		slices.Sort(got)
		if !slices.Equal(got, want) { // m is in R iff R is in RoomsOf(m)
			t.Fatalf("RoomsOf(%d) = %v, want %v", m, got, want)
		}
		if r.RoomCount(m) != len(want) {
			t.Fatalf("RoomCount(%d) = %d, want %d", m, r.RoomCount(m), len(want))
		}
		_, inOne := r.one[m]
		_, inMany := r.many[m]
		traced := inOne || inMany
		if traced != (len(want) > 0) {
			t.Fatalf("member %d in %d rooms: reverse entry present = %v", m, len(want), traced)
		}
		if traced {
			members++
		}
	}
	if r.NumMembers() != members {
		t.Fatalf("NumMembers = %d, want %d", r.NumMembers(), members)
	}
}

func TestRoomsMatchReference(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 5))
			nRooms := []int{1, 5, 40}[seed%3]
			universe := []int{4, 60, 300}[seed%3]
			r := NewRooms[string, int]()
			ref := make(refRooms)
			for op := range 6000 {
				room := fmt.Sprint("r", rng.IntN(nRooms))
				m := rng.IntN(universe)
				joinBias := []int{7, 4}[op/1500%2] // grow, then drain
				switch x := rng.IntN(10); {
				case x < joinBias:
					if got, want := r.Join(room, m), ref.join(room, m); got != want {
						t.Fatalf("op %d: Join(%q, %d) = %v, want %v", op, room, m, got, want)
					}
				case x < 9:
					if got, want := r.Leave(room, m), ref.leave(room, m); got != want {
						t.Fatalf("op %d: Leave(%q, %d) = %v, want %v", op, room, m, got, want)
					}
				default:
					want := 0
					for _, room := range ref.roomsOf(m) {
						ref.leave(room, m)
						want++
					}
					if got := r.LeaveAll(m); got != want {
						t.Fatalf("op %d: LeaveAll(%d) = %d, want %d", op, m, got, want)
					}
				}
				if got, want := r.Has(room, m), ref[room][m]; got != want {
					t.Fatalf("op %d: Has(%q, %d) = %v, want %v", op, room, m, got, want)
				}
				if op%53 == 0 {
					checkRooms(t, r, ref, universe)
				}
			}
			checkRooms(t, r, ref, universe)
			for m := range universe {
				r.LeaveAll(m)
			}
			checkRooms(t, r, refRooms{}, universe)
		})
	}
}

func TestRoomsLeaveNoTrace(t *testing.T) {
	r := NewRooms[string, int]()
	const n = 10000
	for m := range n {
		r.Join("big", m)
		r.Join(fmt.Sprint("own", m), m)
	}
	if r.NumRooms() != n+1 || r.NumMembers() != n {
		t.Fatalf("NumRooms, NumMembers = %d, %d; want %d, %d", r.NumRooms(), r.NumMembers(), n+1, n)
	}
	for m := range n - 10 {
		if got := r.LeaveAll(m); got != 2 {
			t.Fatalf("LeaveAll(%d) = %d, want 2", m, got)
		}
	}
	if r.NumRooms() != 11 || r.NumMembers() != 10 || r.Len("big") != 10 {
		t.Fatalf("NumRooms, NumMembers, Len(big) = %d, %d, %d; want 11, 10, 10",
			r.NumRooms(), r.NumMembers(), r.Len("big"))
	}
	if r.peakOne > 40 || r.peakMany > 40 || r.peakRooms > 44 {
		t.Fatalf("maps not rebuilt: peaks %d, %d and %d for 10 members in 11 rooms", r.peakOne, r.peakMany, r.peakRooms)
	}
	if c := cap(r.Members("big")); c >= shrinkMin {
		t.Fatalf("room of 10 members holds a slice of capacity %d", c)
	}
	for m := n - 10; m < n; m++ {
		r.LeaveAll(m)
	}
	if r.NumRooms() != 0 || r.NumMembers() != 0 || r.Members("big") != nil {
		t.Fatalf("after everyone left: NumRooms %d, NumMembers %d, Members(big) %v",
			r.NumRooms(), r.NumMembers(), r.Members("big"))
	}
	if r.LeaveAll(0) != 0 || r.Leave("big", 0) {
		t.Fatal("leaving again reports rooms left")
	}
}

func TestRoomsInternRoomNames(t *testing.T) {
	r := NewRooms[string, int]()
	name := string([]byte("lobby"))
	r.Join(name, 1)
	other := string([]byte("lobby")) // same name, other bytes
	r.Join(other, 2)
	if got := r.RoomsOf(2); len(got) != 1 || got[0] != "lobby" {
		t.Fatalf("RoomsOf(2) = %v", got)
	}
	if r.one[2].room != r.rooms["lobby"] {
		t.Fatal("member 2's reverse entry is not the room's own record")
	}
}

func TestCompactMapRebuildsAtAQuarterOfPeak(t *testing.T) {
	m := make(map[int]int)
	peak := 0
	for i := range 1000 {
		m[i] = -i
		peak = max(peak, len(m))
	}
	for i := range 749 {
		delete(m, i)
	}
	if got := compactMap(m, &peak); reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(m).UnsafePointer() || peak != 1000 {
		t.Fatalf("251 of a peak of 1000: rebuilt (peak now %d), want kept", peak)
	}
	delete(m, 749)
	got := compactMap(m, &peak)
	if reflect.ValueOf(got).UnsafePointer() == reflect.ValueOf(m).UnsafePointer() {
		t.Fatal("250 of a peak of 1000: kept, want a fresh map")
	}
	if peak != 250 || len(got) != 250 {
		t.Fatalf("after rebuilding: peak %d, %d entries; want 250, 250", peak, len(got))
	}
	for k, v := range m {
		if got[k] != v {
			t.Fatalf("rebuilt map has %d=%d, want %d", k, got[k], v)
		}
	}
	small, speak := map[int]int{1: 1}, shrinkMin-1
	if compactMap(small, &speak); speak != shrinkMin-1 {
		t.Fatal("a map that never reached shrinkMin was rebuilt")
	}
}
