// Package hist is a log-linear latency histogram (HDR style): 128 linear
// sub-buckets per power of two, so a quantile is off by less than 1% (at
// most 1/128 below the true value) from 128 ns to centuries, exact below,
// in a fixed 64 KiB array. Histograms from several processes merge
// exactly, through their JSON form (the non-empty buckets only).
package hist

import (
	"encoding/json"
	"math/bits"
	"time"
)

const subBits = 7 // 128 sub-buckets per power of two

// Hist counts durations. The zero value is ready; it is not safe for
// concurrent use.
type Hist struct {
	counts [64 << subBits]uint64
	n      uint64
	max    int64
}

func index(v int64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits - 1 // shift that leaves subBits+1 bits
	return (e+1)<<subBits + int(uint64(v)>>uint(e)) - 1<<subBits
}

// lower returns the smallest value of bucket i (its representative).
func lower(i int) int64 {
	if i < 1<<subBits {
		return int64(i)
	}
	e := i>>subBits - 1
	m := int64(i&(1<<subBits-1)) + 1<<subBits
	return m << uint(e)
}

// Record adds one duration in nanoseconds.
func (h *Hist) Record(ns int64) { h.RecordN(ns, 1) }

// RecordN adds n durations of ns nanoseconds each.
func (h *Hist) RecordN(ns int64, n uint64) {
	if n == 0 {
		return
	}
	if ns < 0 {
		ns = 0
	}
	h.counts[index(ns)] += n
	h.n += n
	if ns > h.max {
		h.max = ns
	}
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	if o.max > h.max {
		h.max = o.max
	}
}

// Count is the number of recorded values.
func (h *Hist) Count() uint64 { return h.n }

// Mean is the mean of the recorded values, each taken at its bucket's
// lower bound.
func (h *Hist) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	var sum float64
	for i, c := range h.counts {
		if c != 0 {
			sum += float64(c) * float64(lower(i))
		}
	}
	return time.Duration(sum / float64(h.n))
}

// Max is the largest recorded value.
func (h *Hist) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the value at quantile q (0..1), within 1%.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	if rank > h.n {
		rank = h.n
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			v := lower(i)
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}

type wire struct {
	Buckets map[int]uint64 `json:"buckets"`
	Max     int64          `json:"max_ns"`
}

// MarshalJSON writes the non-empty buckets.
func (h *Hist) MarshalJSON() ([]byte, error) {
	w := wire{Buckets: map[int]uint64{}, Max: h.max}
	for i, c := range h.counts {
		if c != 0 {
			w.Buckets[i] = c
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*h = Hist{max: w.Max}
	for i, c := range w.Buckets {
		if i >= 0 && i < len(h.counts) {
			h.counts[i] = c
			h.n += c
		}
	}
	return nil
}
