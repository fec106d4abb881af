package mallocs

import "testing"

var sink []byte

func TestCountSeesAllocations(t *testing.T) {
	n0 := Count()
	for i := range 1000 {
		sink = make([]byte, 16+i%64)
	}
	if d := Count() - n0; d < 1000 {
		t.Fatalf("1000 allocations counted as %d", d)
	}
}
