package shard

// Rooms is a room (topic) index: which members are in which room, with a
// reverse index so that a member leaves every room at once when it goes
// away (LeaveAll, on close).
//
// Each room is a dense slice of its members, so a publish walks Members at
// the speed of a slice. The reverse index holds, for each member, the rooms
// it is in and its position in each, so Leave removes it from a room in
// O(1) by moving the room's last member into the hole; no room keeps a map
// of its own. A member in one room (the common case: a viewer watching one
// stream) costs one map entry; a member in several costs one entry and a
// small slice. Join, Leave and Has cost O(rooms of that member), LeaveAll
// the same; the index suits members in a few rooms each.
//
// An emptied room is deleted and a member in no room leaves no entry. Room
// slices and the index's maps are compacted when they fall to a quarter of
// their peak, since Go maps never give back the memory of deleted entries,
// so the index holds memory for live memberships only. Measured with
// pointer members and string rooms at 1,000,000 memberships
// (BenchmarkRoomsMemory): 65 bytes per membership when each member is in
// one room, 45 when each is in five; a map of sets each way takes 323 and
// 85.
//
// Rooms is not safe for concurrent use. wsloop keeps one per event loop,
// changed and walked only by that loop's goroutine, so that a publish hands
// one task to each loop and each walks its own members without locks.
type Rooms[R comparable, M comparable] struct {
	rooms map[R]*roomSet[R, M]
	// Each member is in one of these. one holds members that have only
	// ever been in one room at a time; a member that joins a second room
	// moves to many and stays there while it is in any room, so hopping
	// between one and two rooms does not allocate.
	one  map[M]seat[R, M]
	many map[M][]seat[R, M]
	// The most entries each map has held since it was made (compactMap).
	peakRooms, peakOne, peakMany int
}

// roomSet is one room: its members, and its name, kept so that the reverse
// index can name the room without holding a copy of R per membership.
type roomSet[R comparable, M comparable] struct {
	name    R
	members []M
}

// seat is one membership as the reverse index sees it: the member is
// room.members[pos].
type seat[R comparable, M comparable] struct {
	room *roomSet[R, M]
	pos  int32
}

// NewRooms returns an empty index.
func NewRooms[R, M comparable]() *Rooms[R, M] {
	return &Rooms[R, M]{
		rooms: make(map[R]*roomSet[R, M]),
		one:   make(map[M]seat[R, M]),
		many:  make(map[M][]seat[R, M]),
	}
}

// Join adds m to room and reports whether it was not a member yet.
func (r *Rooms[R, M]) Join(room R, m M) bool {
	rm := r.rooms[room]
	if rm != nil && r.find(rm, m) >= 0 {
		return false
	}
	if rm == nil {
		rm = &roomSet[R, M]{name: room}
		r.rooms[room] = rm
		r.peakRooms = max(r.peakRooms, len(r.rooms))
	}
	s := seat[R, M]{rm, int32(len(rm.members))}
	rm.members = append(rm.members, m)
	if first, ok := r.one[m]; ok {
		delete(r.one, m)
		r.many[m] = []seat[R, M]{first, s}
		r.peakMany = max(r.peakMany, len(r.many))
	} else if seats, ok := r.many[m]; ok {
		r.many[m] = append(seats, s)
	} else {
		r.one[m] = s
		r.peakOne = max(r.peakOne, len(r.one))
	}
	return true
}

// find returns m's position in rm, or -1 if m is not a member of rm.
func (r *Rooms[R, M]) find(rm *roomSet[R, M], m M) int {
	if s, ok := r.one[m]; ok {
		if s.room == rm {
			return int(s.pos)
		}
		return -1
	}
	for _, s := range r.many[m] {
		if s.room == rm {
			return int(s.pos)
		}
	}
	return -1
}

// Leave removes m from room and reports whether it was a member.
func (r *Rooms[R, M]) Leave(room R, m M) bool {
	rm := r.rooms[room]
	if rm == nil {
		return false
	}
	if s, ok := r.one[m]; ok {
		if s.room != rm {
			return false
		}
		delete(r.one, m)
		r.one = compactMap(r.one, &r.peakOne)
		r.vacate(s)
		return true
	}
	seats := r.many[m]
	for i, s := range seats {
		if s.room != rm {
			continue
		}
		last := len(seats) - 1
		seats[i] = seats[last]
		seats[last] = seat[R, M]{}
		if last == 0 {
			delete(r.many, m)
			r.many = compactMap(r.many, &r.peakMany)
		} else {
			r.many[m] = seats[:last]
		}
		r.vacate(s)
		return true
	}
	return false
}

// LeaveAll removes m from every room it is in and returns how many rooms
// that was.
func (r *Rooms[R, M]) LeaveAll(m M) int {
	if s, ok := r.one[m]; ok {
		delete(r.one, m)
		r.one = compactMap(r.one, &r.peakOne)
		r.vacate(s)
		return 1
	}
	seats, ok := r.many[m]
	if !ok {
		return 0
	}
	delete(r.many, m)
	r.many = compactMap(r.many, &r.peakMany)
	for _, s := range seats {
		r.vacate(s)
	}
	return len(seats)
}

// vacate removes the member sitting at s from s.room, whose reverse entry
// is already gone: the room's last member moves into the hole and its
// reverse entry is told. An emptied room is deleted.
func (r *Rooms[R, M]) vacate(s seat[R, M]) {
	rm := s.room
	last := len(rm.members) - 1
	if int(s.pos) != last {
		moved := rm.members[last]
		rm.members[s.pos] = moved
		r.reseat(moved, rm, s.pos)
	}
	var zero M
	rm.members[last] = zero // the tail must not keep the member alive
	rm.members = rm.members[:last]
	switch {
	case last == 0:
		delete(r.rooms, rm.name)
		r.rooms = compactMap(r.rooms, &r.peakRooms)
	case cap(rm.members) >= shrinkMin && last*4 <= cap(rm.members):
		// Compact the slice; positions do not change.
		rm.members = append(make([]M, 0, 2*last), rm.members...)
	}
}

// reseat records that m now sits at pos in rm.
func (r *Rooms[R, M]) reseat(m M, rm *roomSet[R, M], pos int32) {
	if _, ok := r.one[m]; ok {
		r.one[m] = seat[R, M]{rm, pos}
		return
	}
	seats := r.many[m]
	for i := range seats {
		if seats[i].room == rm {
			seats[i].pos = pos
			return
		}
	}
	panic("shard: Rooms reverse index lost a member") // unreachable unless the index is corrupt
}

// compactMap returns m, or a fresh copy of it once m has fallen to a
// quarter of *peak entries (then *peak becomes its size): Go maps keep the
// memory of deleted entries, so after a burst of departures a copy is the
// only way to give it back. The copy costs O(live entries), paid for by
// the three times as many deletions that led to it.
func compactMap[K comparable, V any](m map[K]V, peak *int) map[K]V {
	n := len(m)
	if *peak < shrinkMin || n*4 > *peak {
		return m
	}
	fresh := make(map[K]V, n)
	for k, v := range m {
		fresh[k] = v
	}
	*peak = n
	return fresh
}

// Members returns room's members as a slice that is valid until the next
// change to that room (a Join, Leave or LeaveAll that adds or removes one
// of its members, which may reorder the slice in place or reallocate it);
// iterate it directly, and defer such changes until the walk is over. nil
// if the room has no members. The caller must not modify it.
func (r *Rooms[R, M]) Members(room R) []M {
	if rm := r.rooms[room]; rm != nil {
		return rm.members
	}
	return nil
}

// Len returns the number of members of room.
func (r *Rooms[R, M]) Len(room R) int {
	if rm := r.rooms[room]; rm != nil {
		return len(rm.members)
	}
	return 0
}

// Has reports whether m is a member of room.
func (r *Rooms[R, M]) Has(room R, m M) bool {
	rm := r.rooms[room]
	return rm != nil && r.find(rm, m) >= 0
}

// RoomsOf returns the rooms m is in, in no particular order, as a new
// slice; nil if none. AppendRoomsOf reuses a buffer instead.
func (r *Rooms[R, M]) RoomsOf(m M) []R { return r.AppendRoomsOf(nil, m) }

// AppendRoomsOf appends the rooms m is in to dst and returns the result.
func (r *Rooms[R, M]) AppendRoomsOf(dst []R, m M) []R {
	if s, ok := r.one[m]; ok {
		return append(dst, s.room.name)
	}
	for _, s := range r.many[m] {
		dst = append(dst, s.room.name)
	}
	return dst
}

// RoomCount returns the number of rooms m is in.
func (r *Rooms[R, M]) RoomCount(m M) int {
	if _, ok := r.one[m]; ok {
		return 1
	}
	return len(r.many[m])
}

// NumRooms returns the number of rooms, all of which have members.
func (r *Rooms[R, M]) NumRooms() int { return len(r.rooms) }

// NumMembers returns the number of members, each in at least one room.
func (r *Rooms[R, M]) NumMembers() int { return len(r.one) + len(r.many) }

// Each calls fn for every room, in no particular order, until fn returns
// false. members is valid only during the call and must not be modified.
// fn must not change the index.
func (r *Rooms[R, M]) Each(fn func(room R, members []M) bool) {
	for name, rm := range r.rooms {
		if !fn(name, rm.members) {
			return
		}
	}
}
