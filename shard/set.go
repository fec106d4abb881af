package shard

// shrinkMin is the capacity under which a Set, a room or a Rooms reverse
// map is never compacted: small ones cost little and would only churn.
const shrinkMin = 64

// Set is a dense set: O(1) Add, Remove and Has, and iteration over a plain
// slice (Items) at the speed of a slice. It is a slice of the members plus
// a map from member to its position; Remove moves the last member into the
// hole, so the order of Items is not insertion order.
//
// A Set whose members drop to a quarter of its capacity is compacted (its
// slice reallocated at twice the live size, its map rebuilt), so a set
// that was once large does not hold its peak memory; emptied, it holds
// none. The cost is amortized over the removals that led there. A Set
// holds at most 1<<31 - 1 members.
//
// The zero value is an empty set ready to use. Set is not safe for
// concurrent use: one goroutine owns it, or the caller locks.
type Set[M comparable] struct {
	items []M
	index map[M]int32
}

// Add inserts m and reports whether it was absent.
func (s *Set[M]) Add(m M) bool {
	if _, ok := s.index[m]; ok {
		return false
	}
	if s.index == nil {
		s.index = make(map[M]int32)
	}
	s.index[m] = int32(len(s.items))
	s.items = append(s.items, m)
	return true
}

// Remove deletes m and reports whether it was present.
func (s *Set[M]) Remove(m M) bool {
	i, ok := s.index[m]
	if !ok {
		return false
	}
	delete(s.index, m)
	last := len(s.items) - 1
	if int(i) != last {
		moved := s.items[last]
		s.items[i] = moved
		s.index[moved] = i
	}
	var zero M
	s.items[last] = zero // let the slice's tail not keep m alive
	s.items = s.items[:last]
	switch {
	case last == 0:
		s.items, s.index = nil, nil
	case cap(s.items) >= shrinkMin && last*4 <= cap(s.items):
		s.compact()
	}
	return true
}

// compact reallocates the slice and the map at twice the live size: Go
// maps never give back the memory of deleted entries, so a fresh map is
// the only way to shrink one.
func (s *Set[M]) compact() {
	items := make([]M, len(s.items), 2*len(s.items))
	copy(items, s.items)
	index := make(map[M]int32, len(items))
	for i, m := range items {
		index[m] = int32(i)
	}
	s.items, s.index = items, index
}

// Has reports whether m is in the set.
func (s *Set[M]) Has(m M) bool {
	_, ok := s.index[m]
	return ok
}

// Len returns the number of members.
func (s *Set[M]) Len() int { return len(s.items) }

// Items returns the members as a slice that is valid until the next Add or
// Remove; iterate it directly. The caller must not modify it. nil when the
// set is empty.
func (s *Set[M]) Items() []M { return s.items }
