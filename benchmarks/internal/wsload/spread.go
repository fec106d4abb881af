package wsload

import "math"

// Spread summarises how evenly a closed loop served its connections: the
// round trips each one completed in the same measured phase. A server
// that answers in the order requests arrived gives every connection the
// same count, give or take one; a server that serves some connections
// again before others have had their turn gives a spread, and the
// connections left waiting see longer round trips. Spreads from several
// load generator processes merge exactly (sums and extremes).
type Spread struct {
	Conns uint64  `json:"conns"`
	Sum   float64 `json:"sum"`
	SumSq float64 `json:"sum_sq"`
	Min   uint64  `json:"min"`
	Max   uint64  `json:"max"`
}

// Add counts one connection that completed n round trips.
func (s *Spread) Add(n uint64) {
	if s.Conns == 0 || n < s.Min {
		s.Min = n
	}
	s.Max = max(s.Max, n)
	s.Conns++
	f := float64(n)
	s.Sum += f
	s.SumSq += f * f
}

// Merge adds o's connections to s.
func (s *Spread) Merge(o *Spread) {
	if o == nil || o.Conns == 0 {
		return
	}
	if s.Conns == 0 || o.Min < s.Min {
		s.Min = o.Min
	}
	s.Max = max(s.Max, o.Max)
	s.Conns += o.Conns
	s.Sum += o.Sum
	s.SumSq += o.SumSq
}

// Mean is the average round trips per connection.
func (s *Spread) Mean() float64 {
	if s.Conns == 0 {
		return 0
	}
	return s.Sum / float64(s.Conns)
}

// CV is the coefficient of variation of the round trips per connection:
// the standard deviation over the mean (0 when every connection completed
// the same number).
func (s *Spread) CV() float64 {
	m := s.Mean()
	if m == 0 {
		return 0
	}
	v := s.SumSq/float64(s.Conns) - m*m
	return math.Sqrt(max(v, 0)) / m
}
