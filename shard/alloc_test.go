package shard

import (
	"strconv"
	"testing"
)

// The allocation tests fail when a hot path starts allocating.

func TestMapHotPathsDoNotAllocate(t *testing.T) {
	type conn struct{ id uint64 }
	strs := NewMap[string, *conn](0)
	ints := NewMap[uint64, *conn](0)
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
		strs.Set(keys[i], &conn{uint64(i)})
		ints.Set(uint64(i), &conn{uint64(i)})
	}
	c := &conn{}
	i := 0
	next := func() int { i = (i + 1) % len(keys); return i }
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Get string key", func() { strs.Get(keys[next()]) }},
		{"Get missing string key", func() { strs.Get("nobody") }},
		{"Get uint64 key", func() { ints.Get(uint64(next())) }},
		{"Set existing string key", func() { strs.Set(keys[next()], c) }},
		{"Set existing uint64 key", func() { ints.Set(uint64(next()), c) }},
		{"Swap existing key", func() { strs.Swap(keys[next()], c) }},
		{"SetIfAbsent existing key", func() { strs.SetIfAbsent(keys[next()], c) }},
		{"DeleteIf false", func() { ints.DeleteIf(uint64(next()), func(v *conn) bool { return v == nil }) }},
		{"Delete then Set", func() { k := uint64(next()); v, _ := ints.Delete(k); ints.Set(k, v) }},
		{"Len", func() { strs.Len() }},
	} {
		if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", tc.name, n)
		}
	}
}

func TestRoomsHotPathsDoNotAllocate(t *testing.T) {
	type conn struct{ n int }
	r := NewRooms[string, *conn]()
	conns := make([]*conn, 1000)
	for i := range conns {
		conns[i] = &conn{i}
		r.Join("lobby", conns[i])
		r.Join("room-"+strconv.Itoa(i%10), conns[i])
	}
	sum := 0
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"publish walk", func() {
			for _, c := range r.Members("lobby") {
				sum += c.n
			}
		}},
		{"Len", func() { sum += r.Len("room-3") }},
		{"Members of a missing room", func() { sum += len(r.Members("nowhere")) }},
		{"Join existing member", func() { r.Join("lobby", conns[7]) }},
		{"Leave then Join, member in another room", func() {
			r.Leave("lobby", conns[9])
			r.Join("lobby", conns[9])
		}},
		{"Each", func() { r.Each(func(string, []*conn) bool { sum++; return true }) }},
	} {
		if n := testing.AllocsPerRun(1000, tc.fn); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", tc.name, n)
		}
	}
	_ = sum
}
