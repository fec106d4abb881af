package main

import (
	"slices"
	"strings"
)

// medians folds the rounds of each configuration and server into one Run
// whose figures are the medians over its rounds (each figure on its own),
// with the p99's range over the rounds. Runs without rounds pass through.
// A configuration with a failed round is shown as failed: a wrong byte in
// any round fails the whole figure.
func medians(runs []Run) []Run {
	type key struct {
		scenario, server, variant    string
		conns, size, depth, inflight int
	}
	var out []Run
	idx := map[key]int{}
	var rounds [][]Run
	for _, r := range runs {
		if r.Round == 0 {
			out = append(out, r)
			rounds = append(rounds, nil)
			continue
		}
		k := key{r.Scenario, r.Server, r.Variant, r.Conns, r.Size, r.Depth, r.Inflight}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, r)
			rounds = append(rounds, nil)
		}
		rounds[i] = append(rounds[i], r)
	}
	for i, rs := range rounds {
		if rs != nil {
			out[i] = fold(rs)
		}
	}
	return out
}

func fold(rs []Run) Run {
	m := rs[0]
	m.Round = 0
	m.Rounds = len(rs)
	m.Errors = 0
	var failures []string
	for _, r := range rs {
		m.Errors += r.Errors
		if r.Failure != "" {
			failures = append(failures, r.Failure)
		}
	}
	m.Failure = strings.Join(failures, "\n")
	med := func(get func(Run) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		slices.Sort(v)
		n := len(v)
		if n%2 == 1 {
			return v[n/2]
		}
		return (v[n/2-1] + v[n/2]) / 2
	}
	m.DurationS = med(func(r Run) float64 { return r.DurationS })
	m.Messages = uint64(med(func(r Run) float64 { return float64(r.Messages) }))
	m.Publishes = uint64(med(func(r Run) float64 { return float64(r.Publishes) }))
	m.MsgsPerS = med(func(r Run) float64 { return r.MsgsPerS })
	m.ConnectsPerS = med(func(r Run) float64 { return r.ConnectsPerS })
	m.P50us = med(func(r Run) float64 { return r.P50us })
	m.P99us = med(func(r Run) float64 { return r.P99us })
	m.P999us = med(func(r Run) float64 { return r.P999us })
	m.MaxUs = med(func(r Run) float64 { return r.MaxUs })
	m.MsgP99us = med(func(r Run) float64 { return r.MsgP99us })
	m.SpreadCV = med(func(r Run) float64 { return r.SpreadCV })
	m.ServerCPUS = med(func(r Run) float64 { return r.ServerCPUS })
	m.CPUPerMsgUs = med(func(r Run) float64 { return r.CPUPerMsgUs })
	m.AllocsPerMsg = med(func(r Run) float64 { return r.AllocsPerMsg })
	m.ServerCores = med(func(r Run) float64 { return r.ServerCores })
	m.LoadgenCPUS = med(func(r Run) float64 { return r.LoadgenCPUS })
	m.LoadgenCores = med(func(r Run) float64 { return r.LoadgenCores })
	m.RSSBefore = int64(med(func(r Run) float64 { return float64(r.RSSBefore) }))
	m.RSSAfter = int64(med(func(r Run) float64 { return float64(r.RSSAfter) }))
	m.P99Min, m.P99Max = rs[0].P99us, rs[0].P99us
	m.CPUMin, m.CPUMax = rs[0].CPUPerMsgUs, rs[0].CPUPerMsgUs
	m.RateMin, m.RateMax = rs[0].ConnectsPerS, rs[0].ConnectsPerS
	for _, r := range rs[1:] {
		m.CPUMin, m.CPUMax = min(m.CPUMin, r.CPUPerMsgUs), max(m.CPUMax, r.CPUPerMsgUs)
		m.RateMin, m.RateMax = min(m.RateMin, r.ConnectsPerS), max(m.RateMax, r.ConnectsPerS)
		m.FDsAfter = max(m.FDsAfter, r.FDsAfter)
		m.P99Min = min(m.P99Min, r.P99us)
		m.P99Max = max(m.P99Max, r.P99us)
	}
	m.Raw = nil
	return m
}
