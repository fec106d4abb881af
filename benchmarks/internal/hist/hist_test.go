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
