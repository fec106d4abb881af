package hist

import (
	"encoding/json"
	"math/rand/v2"
	"sort"
	"testing"
	"time"
)

func TestQuantilesWithinOnePercent(t *testing.T) {
	var h Hist
	vals := make([]int64, 100000)
	for i := range vals {
		vals[i] = int64(rand.ExpFloat64() * 200e3) // ~200 µs mean
		h.Record(vals[i])
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := vals[int(q*float64(len(vals)))-1]
		got := int64(h.Quantile(q))
		if d := float64(got-want) / float64(want); d > 0.01 || d < -0.01 {
			t.Errorf("q%v = %v, want %v (±1%%)", q, time.Duration(got), time.Duration(want))
		}
	}
	if h.Max() != time.Duration(vals[len(vals)-1]) {
		t.Errorf("max %v, want %v", h.Max(), vals[len(vals)-1])
	}
}

func TestBucketsRoundTrip(t *testing.T) {
	for v := int64(0); v < 1<<20; v += 7 {
		if l := lower(index(v)); l > v || float64(v-l) > 0.01*float64(v)+1 {
			t.Fatalf("value %d in bucket %d starting at %d", v, index(v), l)
		}
	}
}

func TestMergeThroughJSON(t *testing.T) {
	var a, b Hist
	for i := int64(1); i <= 1000; i++ {
		a.Record(i * 1000)
		b.Record(i * 1000000)
	}
	js, err := json.Marshal(&b)
	if err != nil {
		t.Fatal(err)
	}
	var c Hist
	if err := json.Unmarshal(js, &c); err != nil {
		t.Fatal(err)
	}
	a.Merge(&c)
	if a.Count() != 2000 || a.Max() != time.Second {
		t.Fatalf("count %d max %v", a.Count(), a.Max())
	}
	if q := a.Quantile(0.5); q < 990*time.Microsecond || q > 1010*time.Microsecond {
		t.Fatalf("median %v, want ~1ms", q)
	}
}

// TestRelativeErrorRange sweeps 1 µs to 100 s: every value's bucket starts
// within 1% below it, and a histogram of one value reports it within 1%.
func TestRelativeErrorRange(t *testing.T) {
	for v := int64(1000); v <= 100e9; v += v/997 + 1 {
		l := lower(index(v))
		if l > v || float64(v-l) > 0.01*float64(v) {
			t.Fatalf("value %d in bucket %d starting at %d", v, index(v), l)
		}
	}
	var h Hist
	h.Record(123456789)
	h.Record(123456789)
	h.RecordN(5, 0)
	if q := h.Quantile(0.5); float64(123456789-q) > 0.01*123456789 || h.Count() != 2 {
		t.Fatalf("median %v count %d", q, h.Count())
	}
}

func TestRecordN(t *testing.T) {
	var a, b Hist
	for i := 0; i < 16; i++ {
		a.Record(5000)
	}
	b.RecordN(5000, 16)
	if a != b {
		t.Fatal("RecordN(v, 16) differs from 16 Record(v)")
	}
	if m := b.Mean(); m < 4950 || m > 5000 {
		t.Fatalf("mean %v", m)
	}
}
