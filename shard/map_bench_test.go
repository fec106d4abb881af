package shard

import (
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkMap compares Map with sync.Map and with one sync.RWMutex around
// a plain map: 100,000 keys present, values are pointers (as in a
// connection registry), each goroutine picks keys at random.
//
//	go test -run '^$' -bench Map ./shard
//
// Sub-benchmarks: map=shard|syncmap|rwmutex, key=string|uint64,
// mix=read90 (90% Get, 10% Set) or write50 (50/50), goroutines=2|8.
// ns/op is wall time per operation across all goroutines.
func BenchmarkMap(b *testing.B) {
	const n = 100_000
	vals := make([]*benchVal, n)
	strKeys := make([]string, n)
	intKeys := make([]uint64, n)
	for i := range n {
		vals[i] = &benchVal{id: uint64(i)}
		strKeys[i] = "user:" + strconv.Itoa(i)
		intKeys[i] = uint64(i) + 1 // connection ids count from 1
	}
	for _, impl := range []string{"shard", "syncmap", "rwmutex"} {
		for _, key := range []string{"string", "uint64"} {
			for _, mix := range []struct {
				name   string
				writes uint64 // percent
			}{{"read90", 10}, {"write50", 50}} {
				for _, g := range []int{2, 8} {
					name := fmt.Sprintf("map=%s/key=%s/mix=%s/goroutines=%d", impl, key, mix.name, g)
					b.Run(name, func(b *testing.B) {
						if key == "string" {
							runMix(b, newStore[string](impl, n), strKeys, vals, mix.writes, g)
						} else {
							runMix(b, newStore[uint64](impl, n), intKeys, vals, mix.writes, g)
						}
					})
				}
			}
		}
	}
}

type benchVal struct{ id uint64 }

// store is what the three maps under test have in common. Every
// implementation pays the same interface call.
type store[K Key] interface {
	get(K) (*benchVal, bool)
	set(K, *benchVal)
}

func newStore[K Key](impl string, n int) store[K] {
	switch impl {
	case "shard":
		return shardStore[K]{NewMap[K, *benchVal](0)}
	case "syncmap":
		return &syncStore[K]{}
	case "rwmutex":
		return &lockedStore[K]{m: make(map[K]*benchVal, n)}
	}
	panic(impl)
}

type shardStore[K Key] struct{ m *Map[K, *benchVal] }

func (s shardStore[K]) get(k K) (*benchVal, bool) { return s.m.Get(k) }
func (s shardStore[K]) set(k K, v *benchVal)      { s.m.Set(k, v) }

type syncStore[K Key] struct{ m sync.Map }

func (s *syncStore[K]) get(k K) (*benchVal, bool) {
	v, ok := s.m.Load(k)
	if !ok {
		return nil, false
	}
	return v.(*benchVal), true
}
func (s *syncStore[K]) set(k K, v *benchVal) { s.m.Store(k, v) }

type lockedStore[K Key] struct {
	mu sync.RWMutex
	m  map[K]*benchVal
}

func (s *lockedStore[K]) get(k K) (*benchVal, bool) {
	s.mu.RLock()
	v, ok := s.m[k]
	s.mu.RUnlock()
	return v, ok
}

func (s *lockedStore[K]) set(k K, v *benchVal) {
	s.mu.Lock()
	s.m[k] = v
	s.mu.Unlock()
}

// setGoroutines makes RunParallel use exactly g goroutines when
// GOMAXPROCS divides g, and says so otherwise.
func setGoroutines(b *testing.B, g int) {
	procs := runtime.GOMAXPROCS(0)
	if g%procs != 0 || g < procs {
		b.Skipf("cannot run %d goroutines with GOMAXPROCS=%d", g, procs)
	}
	b.SetParallelism(g / procs)
}

func runMix[K Key](b *testing.B, s store[K], keys []K, vals []*benchVal, writes uint64, g int) {
	for i, k := range keys {
		s.set(k, vals[i])
	}
	setGoroutines(b, g)
	var seed atomic.Uint64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		x := seed.Add(0x9e3779b97f4a7c15) | 1 // xorshift state, odd and distinct per goroutine
		n := uint64(len(keys))
		var hits int
		for pb.Next() {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			i := x % n
			if (x>>32)%100 < writes {
				s.set(keys[i], vals[i])
			} else if _, ok := s.get(keys[i]); ok {
				hits++
			}
		}
		if hits < 0 {
			b.Fatal("unreachable")
		}
	})
}
