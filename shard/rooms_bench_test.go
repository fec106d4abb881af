package shard

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
)

// The room benchmarks work at the scale of the issue: 100 rooms of
// 10,000 members each, members being pointers (as *Conn in the engine)
// and rooms strings.
//
//	go test -run '^$' -bench Rooms ./shard
const (
	benchRooms       = 100
	benchRoomMembers = 10_000
)

type benchConn struct {
	id   uint64
	sent int
}

func benchRoomNames() []string {
	names := make([]string, benchRooms)
	for i := range names {
		names[i] = "room-" + strconv.Itoa(i)
	}
	return names
}

func benchConns(n int) []*benchConn {
	conns := make([]*benchConn, n)
	for i := range conns {
		conns[i] = &benchConn{id: uint64(i)}
	}
	return conns
}

// fillRooms puts every member in perMember rooms, so that each of the 100
// rooms ends up with 10,000 members: member i joins rooms
// (i*perMember + j) % 100 for j < perMember.
func fillRooms(r *Rooms[string, *benchConn], names []string, conns []*benchConn, perMember int) {
	for i, c := range conns {
		for j := range perMember {
			r.Join(names[(i*perMember+j)%benchRooms], c)
		}
	}
}

// BenchmarkRoomsJoin times one Join while an index grows from empty to
// 100 rooms x 10,000 members (one room per member); then it starts over.
func BenchmarkRoomsJoin(b *testing.B) {
	names := benchRoomNames()
	conns := benchConns(benchRooms * benchRoomMembers)
	r := NewRooms[string, *benchConn]()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(conns) {
			b.StopTimer()
			r, i = NewRooms[string, *benchConn](), 0
			b.StartTimer()
		}
		r.Join(names[i%benchRooms], conns[i])
		i++
	}
}

// BenchmarkRoomsLeave times one Leave while a full index (100 rooms x
// 10,000 members, one room per member) drains to empty; then it refills.
func BenchmarkRoomsLeave(b *testing.B) {
	names := benchRoomNames()
	conns := benchConns(benchRooms * benchRoomMembers)
	r := NewRooms[string, *benchConn]()
	fillRooms(r, names, conns, 1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(conns) {
			b.StopTimer()
			fillRooms(r, names, conns, 1)
			i = 0
			b.StartTimer()
		}
		r.Leave(names[i%benchRooms], conns[i])
		i++
	}
}

// BenchmarkRoomsChurn times a Leave and a Join of the same member in a
// full index: the steady state of viewers hopping between rooms.
func BenchmarkRoomsChurn(b *testing.B) {
	names := benchRoomNames()
	conns := benchConns(benchRooms * benchRoomMembers)
	r := NewRooms[string, *benchConn]()
	fillRooms(r, names, conns, 1)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := conns[i]
		r.Leave(names[i%benchRooms], c)
		r.Join(names[(i+1)%benchRooms], c) // move to the next room
		i++
		if i == len(conns) {
			i = 0
			names = append(names[1:], names[0]) // so the next pass moves them on again
		}
	}
}

// BenchmarkRoomsLeaveAll times LeaveAll of a member in 5 rooms, in an
// index of 100 rooms x 10,000 members (200,000 members); when all have
// left it refills.
func BenchmarkRoomsLeaveAll(b *testing.B) {
	const perMember = 5
	names := benchRoomNames()
	conns := benchConns(benchRooms * benchRoomMembers / perMember)
	r := NewRooms[string, *benchConn]()
	fillRooms(r, names, conns, perMember)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(conns) {
			b.StopTimer()
			fillRooms(r, names, conns, perMember)
			i = 0
			b.StartTimer()
		}
		if r.LeaveAll(conns[i]) != perMember {
			b.Fatal("member was not in 5 rooms")
		}
		i++
	}
}

// BenchmarkRoomsPublishWalk times the loop's side of a publish: walk the
// members of one 10,000-member room and do a trivial per-member step. It
// reports ns/member too. "map" walks a map[*benchConn]struct{} instead,
// for comparison.
func BenchmarkRoomsPublishWalk(b *testing.B) {
	names := benchRoomNames()
	conns := benchConns(benchRooms * benchRoomMembers)
	r := NewRooms[string, *benchConn]()
	fillRooms(r, names, conns, 1)
	room := names[42]
	b.Run("rooms", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, c := range r.Members(room) {
				c.sent++
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRoomMembers), "ns/member")
	})
	b.Run("map", func(b *testing.B) {
		set := make(map[*benchConn]struct{}, benchRoomMembers)
		for _, c := range r.Members(room) {
			set[c] = struct{}{}
		}
		b.ReportAllocs()
		for b.Loop() {
			for c := range set {
				c.sent++
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchRoomMembers), "ns/member")
	})
}

// BenchmarkRoomsMemory builds 1,000,000 memberships (100 rooms x 10,000
// members) and reports the heap they hold per membership: with each member
// in one room (1,000,000 members) and in five (200,000 members). The
// members themselves are allocated beforehand and not counted. "naive" is
// a map of sets plus a set of rooms per member (map[R]map[M]struct{} and
// map[M]map[R]struct{}), for comparison. ns/op is the time to build.
func BenchmarkRoomsMemory(b *testing.B) {
	names := benchRoomNames()
	for _, perMember := range []int{1, 5} {
		conns := benchConns(benchRooms * benchRoomMembers / perMember)
		memberships := float64(len(conns) * perMember)
		b.Run(fmt.Sprintf("index=rooms/perMember=%d", perMember), func(b *testing.B) {
			measureHeap(b, memberships, func() any {
				r := NewRooms[string, *benchConn]()
				fillRooms(r, names, conns, perMember)
				return r
			})
		})
		b.Run(fmt.Sprintf("index=naive/perMember=%d", perMember), func(b *testing.B) {
			measureHeap(b, memberships, func() any {
				rooms := make(map[string]map[*benchConn]struct{})
				of := make(map[*benchConn]map[string]struct{})
				for i, c := range conns {
					for j := range perMember {
						name := names[(i*perMember+j)%benchRooms]
						if rooms[name] == nil {
							rooms[name] = make(map[*benchConn]struct{})
						}
						rooms[name][c] = struct{}{}
						if of[c] == nil {
							of[c] = make(map[string]struct{})
						}
						of[c][name] = struct{}{}
					}
				}
				return [2]any{rooms, of}
			})
		})
	}
}

// measureHeap reports the live heap that build's result holds, per
// membership, averaged over b.N builds.
func measureHeap(b *testing.B, memberships float64, build func() any) {
	var total float64
	var before, after runtime.MemStats
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		idx := build()
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(idx)
		total += float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.StartTimer()
	}
	b.ReportMetric(total/float64(b.N)/memberships, "B/membership")
}
