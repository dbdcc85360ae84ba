package main

import (
	"math"
	"slices"
)

// Stats summarises the runs of one figure. Median is the middle run (the mean
// of the two middle runs when N is even).
type Stats struct {
	N      int       `json:"n"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"` // in the order they ran
}

// summarize returns the Stats of runs; the zero Stats when there are none.
func summarize(runs []float64) Stats {
	if len(runs) == 0 {
		return Stats{}
	}
	s := slices.Clone(runs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Stats{N: n, Median: med, Min: s[0], Max: s[n-1], Runs: slices.Clone(runs)}
}

// ratio returns a ÷ b, or NaN when either is missing or b is zero.
func ratio(a, b Stats) float64 {
	if a.N == 0 || b.N == 0 || b.Median == 0 {
		return math.NaN()
	}
	return a.Median / b.Median
}
