package main

import "testing"

func TestHeaderRoundTrip(t *testing.T) {
	p := make([]byte, 16)
	for _, seq := range []uint64{0, 1, 255, 256, 1<<39 - 1, probeBit | 7} {
		for _, d := range []int64{0, 1, 123456789, 1<<56 - 1} {
			putHeader(p, seq, epoch+d)
			s, ts, ok := getHeader(p)
			if !ok || s != seq || ts != epoch+d {
				t.Fatalf("seq %d d %d: got %d %d %v (%q)", seq, d, s, ts-epoch, ok, p)
			}
			for _, c := range p {
				if c < '0' || c > 'o' {
					t.Fatal(c)
				}
			}
		}
	}
}
