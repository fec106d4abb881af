package shard

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/cespare/xxhash/v2"
)

func TestNewMapRoundsShardsToPowerOfTwo(t *testing.T) {
	def := 1
	for def < 4*runtime.GOMAXPROCS(0) {
		def <<= 1
	}
	for _, tc := range []struct {
		name      string
		in, shard int
	}{
		{"zero means four per proc", 0, def},
		{"negative means four per proc", -3, def},
		{"one stays one", 1, 1},
		{"three rounds to four", 3, 4},
		{"power of two kept", 16, 16},
		{"one past a power doubles", 17, 32},
		{"large", 1000, 1024},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMap[string, int](tc.in)
			if got := m.Shards(); got != tc.shard {
				t.Fatalf("NewMap(%d).Shards() = %d, want %d", tc.in, got, tc.shard)
			}
			if m.mask != uint64(tc.shard-1) {
				t.Fatalf("mask = %#x, want %#x", m.mask, tc.shard-1)
			}
		})
	}
}

func TestMapShardsFillCacheLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		size uintptr
	}{
		{"string to int", unsafe.Sizeof(mapShard[string, int]{})},
		{"uint64 to pointer", unsafe.Sizeof(mapShard[uint64, *int]{})},
		{"int8 to big struct", unsafe.Sizeof(mapShard[int8, [100]byte]{})},
	} {
		if tc.size == 0 || tc.size%cacheLine != 0 {
			t.Errorf("%s: shard is %d bytes, want a multiple of %d", tc.name, tc.size, cacheLine)
		}
		if tc.size < shardHead {
			t.Errorf("%s: shard is %d bytes, smaller than its lock and map (%d)", tc.name, tc.size, shardHead)
		}
	}
}

type connID uint32
type userKey string

// le8 is xxhash of v's 8-byte little-endian form: what Map must hash an
// integer key to.
func le8(v uint64) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], v)
	return xxhash.Sum64(b[:])
}

// checkKeyKind checks, for one key type, that the hash is the documented
// one and that a round trip works.
func checkKeyKind[K Key](t *testing.T, keys []K, want func(K) uint64) {
	t.Helper()
	m := NewMap[K, int](8)
	for i, k := range keys {
		if got, w := m.hash(k), want(k); got != w {
			t.Fatalf("hash(%v) = %#x, want %#x", k, got, w)
		}
		m.Set(k, i)
	}
	for i, k := range keys {
		if v, ok := m.Get(k); !ok || v != i {
			t.Fatalf("Get(%v) = %d, %v; want %d, true", k, v, ok, i)
		}
	}
	if m.Len() != len(keys) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(keys))
	}
}

func TestMapHashesEveryKeyKind(t *testing.T) {
	str := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = "room-" + strconv.Itoa(i)
		}
		return out
	}
	t.Run("string", func(t *testing.T) {
		checkKeyKind(t, str(100), func(k string) uint64 { return xxhash.Sum64String(k) })
	})
	t.Run("named string", func(t *testing.T) {
		keys := []userKey{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
			"mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", ""}
		checkKeyKind(t, keys, func(k userKey) uint64 { return xxhash.Sum64String(string(k)) })
	})
	t.Run("int", func(t *testing.T) {
		checkKeyKind(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, -1, -2, 1 << 40},
			func(k int) uint64 { return le8(uint64(k)) })
	})
	t.Run("int8 zero-extended", func(t *testing.T) {
		var keys []int8
		for i := -128; i < 128; i++ {
			keys = append(keys, int8(i))
		}
		checkKeyKind(t, keys, func(k int8) uint64 { return le8(uint64(uint8(k))) })
	})
	t.Run("int16", func(t *testing.T) {
		checkKeyKind(t, []int16{-300, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 300, 30000},
			func(k int16) uint64 { return le8(uint64(uint16(k))) })
	})
	t.Run("int32", func(t *testing.T) {
		checkKeyKind(t, []int32{-70000, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 70000},
			func(k int32) uint64 { return le8(uint64(uint32(k))) })
	})
	t.Run("int64", func(t *testing.T) {
		checkKeyKind(t, []int64{-1 << 62, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1 << 62},
			func(k int64) uint64 { return le8(uint64(k)) })
	})
	t.Run("uint8", func(t *testing.T) {
		var keys []uint8
		for i := range 256 {
			keys = append(keys, uint8(i))
		}
		checkKeyKind(t, keys, func(k uint8) uint64 { return le8(uint64(k)) })
	})
	t.Run("uint16", func(t *testing.T) {
		checkKeyKind(t, []uint16{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 65535},
			func(k uint16) uint64 { return le8(uint64(k)) })
	})
	t.Run("named uint32", func(t *testing.T) {
		checkKeyKind(t, []connID{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1 << 31},
			func(k connID) uint64 { return le8(uint64(k)) })
	})
	t.Run("uint64", func(t *testing.T) {
		checkKeyKind(t, []uint64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1<<64 - 1},
			func(k uint64) uint64 { return le8(k) })
	})
	t.Run("uint and uintptr", func(t *testing.T) {
		checkKeyKind(t, []uint{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, func(k uint) uint64 { return le8(uint64(k)) })
		checkKeyKind(t, []uintptr{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, func(k uintptr) uint64 { return le8(uint64(k)) })
	})
}

// checkSpread puts 16,000 sequential keys in 16 shards and wants each
// shard within 15% of the mean (the binomial deviation is about 3%).
func checkSpread[K Key](t *testing.T, key func(int) K) {
	t.Helper()
	const n, shards = 16000, 16
	m := NewMap[K, struct{}](shards)
	var count [shards]int
	for i := range n {
		count[m.hash(key(i))&m.mask]++
	}
	for i, c := range count {
		if c < n/shards*85/100 || c > n/shards*115/100 {
			t.Errorf("shard %d holds %d of %d sequential keys; want about %d", i, c, n, n/shards)
		}
	}
}

func TestMapSpreadsSequentialKeys(t *testing.T) {
	t.Run("string", func(t *testing.T) { checkSpread(t, func(i int) string { return "user:" + strconv.Itoa(i) }) })
	t.Run("uint64", func(t *testing.T) { checkSpread(t, func(i int) uint64 { return uint64(i) }) })
	t.Run("int16", func(t *testing.T) { checkSpread(t, func(i int) int16 { return int16(i) }) })
	t.Run("uint64 multiples of 4096", func(t *testing.T) { checkSpread(t, func(i int) uint64 { return uint64(i) << 12 }) })
}

func TestMapSingleKeyOperations(t *testing.T) {
	m := NewMap[string, int](4)
	step := func(what string, ok bool) {
		t.Helper()
		if !ok {
			t.Fatal(what)
		}
	}
	_, ok := m.Get("a")
	step("Get on an empty map finds nothing", !ok)
	v, loaded := m.SetIfAbsent("a", 1)
	step("SetIfAbsent of a new key stores it", v == 1 && !loaded)
	v, loaded = m.SetIfAbsent("a", 2)
	step("SetIfAbsent of a present key keeps and returns the old value", v == 1 && loaded)
	v, ok = m.Get("a")
	step("Get sees SetIfAbsent's value", v == 1 && ok)
	m.Set("a", 5)
	v, ok = m.Get("a")
	step("Set replaces", v == 5 && ok)
	v, loaded = m.Swap("a", 3)
	step("Swap returns the value it replaced", v == 5 && loaded)
	v, loaded = m.Swap("new", 9)
	step("Swap of a new key reports none", v == 0 && !loaded)
	m.Delete("new")
	step("DeleteIf with a false condition keeps the key", !m.DeleteIf("a", func(v int) bool { return v == 1 }))
	_, ok = m.Get("a")
	step("the key is still there", ok)
	calls := 0
	step("DeleteIf of an absent key reports false", !m.DeleteIf("zzz", func(int) bool { calls++; return true }))
	step("DeleteIf does not call cond for an absent key", calls == 0)
	step("DeleteIf with a true condition deletes", m.DeleteIf("a", func(v int) bool { return v == 3 }))
	_, ok = m.Get("a")
	step("the key is gone", !ok)
	m.Set("b", 4)
	v, ok = m.Delete("b")
	step("Delete returns the value", v == 4 && ok)
	v, ok = m.Delete("b")
	step("Delete of an absent key returns zero, false", v == 0 && !ok)
	step("Len is zero", m.Len() == 0)
}

func TestMapRangeStopsAndAllowsWrites(t *testing.T) {
	m := NewMap[int, int](8)
	for i := range 1000 {
		m.Set(i, i)
	}
	n := 0
	m.Range(func(int, int) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("Range called fn %d times after it returned false at 10", n)
	}
	// fn writes to the map it ranges over: deletes what it sees, adds
	// keys elsewhere. No deadlock, and every original key is seen once.
	seen := make(map[int]int)
	m.Range(func(k, v int) bool {
		seen[k]++
		if k < 1000 {
			m.Delete(k)
			m.Set(k+1000, v)
		}
		return true
	})
	for i := range 1000 {
		if seen[i] != 1 {
			t.Fatalf("key %d seen %d times, want once", i, seen[i])
		}
	}
	for k, c := range seen {
		if c != 1 {
			t.Fatalf("key %d seen %d times", k, c)
		}
	}
	if m.Len() != 1000 {
		t.Fatalf("Len = %d after moving every key, want 1000", m.Len())
	}
	for i := range 1000 {
		if _, ok := m.Get(i); ok {
			t.Fatalf("key %d deleted during Range is still there", i)
		}
		if v, ok := m.Get(i + 1000); !ok || v != i {
			t.Fatalf("Get(%d) = %d, %v; want %d, true", i+1000, v, ok, i)
		}
	}
}

// TestMapMatchesBuiltin runs random operations on a Map and a plain map
// side by side and checks every result and, often, the whole contents.
func TestMapMatchesBuiltin(t *testing.T) {
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, seed*7+1))
			shards := []int{1, 2, 4, 64}[seed%4]
			keySpace := []int{4, 50, 1000}[seed%3]
			m := NewMap[int64, int](shards)
			ref := make(map[int64]int)
			for op := range 5000 {
				k := int64(rng.IntN(keySpace)) - int64(keySpace/2)
				v := rng.Int()
				switch rng.IntN(7) {
				case 0, 1:
					m.Set(k, v)
					ref[k] = v
				case 2:
					got, gok := m.Get(k)
					want, wok := ref[k]
					if got != want || gok != wok {
						t.Fatalf("op %d: Get(%d) = %d, %v; want %d, %v", op, k, got, gok, want, wok)
					}
				case 3:
					got, gok := m.Delete(k)
					want, wok := ref[k]
					delete(ref, k)
					if got != want || gok != wok {
						t.Fatalf("op %d: Delete(%d) = %d, %v; want %d, %v", op, k, got, gok, want, wok)
					}
				case 4:
					got, loaded := m.SetIfAbsent(k, v)
					want, wok := ref[k]
					if !wok {
						want = v
						ref[k] = v
					}
					if got != want || loaded != wok {
						t.Fatalf("op %d: SetIfAbsent(%d) = %d, %v; want %d, %v", op, k, got, loaded, want, wok)
					}
				case 5:
					odd := func(v int) bool { return v%2 != 0 }
					want, wok := ref[k]
					wdel := wok && odd(want)
					if wdel {
						delete(ref, k)
					}
					if got := m.DeleteIf(k, odd); got != wdel {
						t.Fatalf("op %d: DeleteIf(%d) = %v, want %v", op, k, got, wdel)
					}
				case 6:
					want, wok := ref[k]
					ref[k] = v
					if got, loaded := m.Swap(k, v); got != want || loaded != wok {
						t.Fatalf("op %d: Swap(%d) = %d, %v; want %d, %v", op, k, got, loaded, want, wok)
					}
				}
				if op%97 == 0 {
					compareWhole(t, m, ref)
				}
			}
			compareWhole(t, m, ref)
		})
	}
}

func compareWhole[K Key, V comparable](t *testing.T, m *Map[K, V], ref map[K]V) {
	t.Helper()
	if m.Len() != len(ref) {
		t.Fatalf("Len = %d, want %d", m.Len(), len(ref))
	}
	seen := make(map[K]bool, len(ref))
	m.Range(func(k K, v V) bool {
		if seen[k] {
			t.Fatalf("Range showed %v twice", k)
		}
		seen[k] = true
		if w, ok := ref[k]; !ok || w != v {
			t.Fatalf("Range showed %v=%v; reference has %v, %v", k, v, w, ok)
		}
		return true
	})
	if len(seen) != len(ref) {
		t.Fatalf("Range showed %d keys, want %d", len(seen), len(ref))
	}
}

// TestMapConcurrent hammers one Map from many goroutines at once (run it
// under -race). Each writer owns a slice of the keys and keeps its own
// model of them, so its Gets can be checked exactly; all of them also
// fight over a shared range whose values must always match their key;
// a stable range is never written and must appear in every Range pass.
func TestMapConcurrent(t *testing.T) {
	const (
		writers    = 16
		rangers    = 4
		ownKeys    = 200
		sharedKeys = 64
		stableKeys = 100
		ops        = 4000
	)
	m := NewMap[string, uint64](8)
	key := func(i int) string { return "k" + strconv.Itoa(i) }
	val := func(i int, gen uint64) uint64 { return uint64(i)<<32 | gen&0xffffffff }
	stable := writers*ownKeys + sharedKeys
	for i := stable; i < stable+stableKeys; i++ {
		m.Set(key(i), val(i, 0))
	}

	var writersWG, rangersWG sync.WaitGroup
	var stop atomic.Bool
	errs := make(chan error, writers+rangers)
	models := make([]map[int]uint64, writers)
	for w := range writers {
		writersWG.Add(1)
		go func() {
			defer writersWG.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			model := make(map[int]uint64)
			models[w] = model
			for op := range ops {
				gen := uint64(op)
				if rng.IntN(4) == 0 { // the shared range: only check consistency
					i := writers*ownKeys + rng.IntN(sharedKeys)
					switch rng.IntN(4) {
					case 0:
						m.Set(key(i), val(i, gen))
					case 1:
						m.Delete(key(i))
					case 2:
						m.SetIfAbsent(key(i), val(i, gen))
					case 3:
						if v, ok := m.Get(key(i)); ok && int(v>>32) != i {
							errs <- fmt.Errorf("shared key %d holds a value for key %d", i, v>>32)
							return
						}
					}
					continue
				}
				i := w*ownKeys + rng.IntN(ownKeys)
				switch rng.IntN(6) {
				case 0, 1:
					m.Set(key(i), val(i, gen))
					model[i] = val(i, gen)
				case 2:
					want, wok := model[i]
					if v, ok := m.Delete(key(i)); v != want || ok != wok {
						errs <- fmt.Errorf("writer %d: Delete(%d) = %x, %v; want %x, %v", w, i, v, ok, want, wok)
						return
					}
					delete(model, i)
				case 3:
					want, wok := model[i]
					if v, ok := m.Get(key(i)); v != want || ok != wok {
						errs <- fmt.Errorf("writer %d: Get(%d) = %x, %v; want %x, %v", w, i, v, ok, want, wok)
						return
					}
				case 4:
					want, wok := model[i]
					del := m.DeleteIf(key(i), func(v uint64) bool { return v&1 == 0 })
					if wdel := wok && want&1 == 0; del != wdel {
						errs <- fmt.Errorf("writer %d: DeleteIf(%d) = %v, want %v", w, i, del, wdel)
						return
					}
					if del {
						delete(model, i)
					}
				case 5:
					want, wok := model[i]
					if v, ok := m.Swap(key(i), val(i, gen)); v != want || ok != wok {
						errs <- fmt.Errorf("writer %d: Swap(%d) = %x, %v; want %x, %v", w, i, v, ok, want, wok)
						return
					}
					model[i] = val(i, gen)
				}
			}
		}()
	}
	var passes atomic.Int64
	for range rangers {
		rangersWG.Add(1)
		go func() {
			defer rangersWG.Done()
			for !stop.Load() || passes.Load() < rangers {
				seen := make(map[string]bool)
				ok := true
				m.Range(func(k string, v uint64) bool {
					if seen[k] {
						errs <- fmt.Errorf("Range showed %q twice in one pass", k)
						ok = false
						return false
					}
					seen[k] = true
					i := int(v >> 32)
					if key(i) != k {
						errs <- fmt.Errorf("Range showed %q with a value for key %d", k, i)
						ok = false
						return false
					}
					if i >= stable {
						m.Set(k, v) // fn may write to m while others do
					}
					return true
				})
				if !ok {
					return
				}
				for i := stable; i < stable+stableKeys; i++ {
					if !seen[key(i)] {
						errs <- fmt.Errorf("Range missed key %d, present throughout", i)
						return
					}
				}
				passes.Add(1)
				_ = m.Len()
			}
		}()
	}
	writersWG.Wait()
	stop.Store(true)
	rangersWG.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	if passes.Load() < rangers {
		t.Fatalf("only %d Range passes completed", passes.Load())
	}

	// Quiescent: the map is exactly the union of the writers' models, the
	// stable range and whatever the shared range holds.
	want := stableKeys
	for w, model := range models {
		want += len(model)
		for i, v := range model {
			if got, ok := m.Get(key(i)); !ok || got != v {
				t.Fatalf("writer %d's key %d = %x, %v; want %x", w, i, got, ok, v)
			}
		}
	}
	for i := writers * ownKeys; i < writers*ownKeys+sharedKeys; i++ {
		if _, ok := m.Get(key(i)); ok {
			want++
		}
	}
	if m.Len() != want {
		t.Fatalf("Len = %d after quiescence, want %d", m.Len(), want)
	}
	n := 0
	m.Range(func(string, uint64) bool { n++; return true })
	if n != want {
		t.Fatalf("Range counted %d keys after quiescence, want %d", n, want)
	}
}
