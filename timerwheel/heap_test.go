package timerwheel

import "container/heap"

// heapQueue is the usual alternative to a wheel, for the benchmarks: a
// binary min-heap of timers (container/heap) whose entries know their index,
// so that rescheduling and cancelling are O(log n) heap.Fix and heap.Remove.
// Entries would be embedded in the connection state, like Timer.
type heapQueue struct {
	h   entryHeap
	now int64 // nanoseconds
}

type heapEntry struct {
	when  int64 // nanoseconds
	index int   // in the heap; -1 when idle
	owner int
}

func (q *heapQueue) schedule(e *heapEntry, d int64) {
	e.when = q.now + max(d, 0)
	if e.index >= 0 {
		heap.Fix(&q.h, e.index)
		return
	}
	heap.Push(&q.h, e)
}

func (q *heapQueue) cancel(e *heapEntry) bool {
	if e.index < 0 {
		return false
	}
	heap.Remove(&q.h, e.index)
	return true
}

// advance fires every entry due by now, in order; fire may reschedule.
func (q *heapQueue) advance(now int64, fire func(*heapEntry)) (fired int) {
	q.now = max(q.now, now)
	for len(q.h) > 0 && q.h[0].when <= q.now {
		e := heap.Pop(&q.h).(*heapEntry)
		fired++
		fire(e)
	}
	return fired
}

type entryHeap []*heapEntry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].when < h[j].when }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}

func (h *entryHeap) Push(x any) {
	e := x.(*heapEntry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}
