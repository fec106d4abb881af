package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// httpWorkers runs WithHTTPHandler's requests on at most max goroutines,
// started on demand; a worker that stays idle for workerIdle exits, and
// every idle one once the server has stopped. There is no queue: a
// request that finds every worker busy is answered with 503 at once by
// the loop, so a slow handler costs its own clients a retry,
// never the loops a wait or the server unbounded memory.
//
// Accounting, under mu: busy counts the requests held, running or handed
// to an idle worker that has not received it yet; idle counts the workers
// waiting for a request and not yet claimed; the workers alive are
// busy + idle <= max.
// A submitter that finds an idle worker claims it (idle--) and sends the
// request on jobs, which has room for every claim; a worker whose idle
// timer fires leaves only while an unclaimed one remains counted (idle >
// 0), else it has been claimed and must take the request on its way.
type httpWorkers struct {
	mu   sync.Mutex
	max  int
	busy int
	idle int
	jobs chan *exchange
	// taken counts the requests handed to workers (Stats.HTTPRequests),
	// counted before the hand-off: a handler that reads Stats (a
	// metrics scrape) then counts itself.
	taken atomic.Uint64
	stop  chan struct{} // closed once the server has stopped: idle workers exit at once
	once  sync.Once
}

// workerIdle is how long an idle worker waits for a request before it
// exits.
const workerIdle = 10 * time.Second

func (p *httpWorkers) init(max int) {
	p.max = max
	p.jobs = make(chan *exchange, max)
	p.stop = make(chan struct{})
}

// submit hands ex to a worker and reports whether one was free. Safe from
// any goroutine; it never blocks.
func (p *httpWorkers) submit(ex *exchange) bool {
	p.mu.Lock()
	if p.busy >= p.max {
		p.mu.Unlock()
		return false
	}
	p.busy++
	p.taken.Add(1)
	if p.idle > 0 {
		p.idle--
		p.mu.Unlock()
		p.jobs <- ex // never blocks: jobs has room for every claim
		return true
	}
	p.mu.Unlock()
	go p.work(ex)
	return true
}

func (p *httpWorkers) work(ex *exchange) {
	timer := time.NewTimer(workerIdle)
	defer timer.Stop()
	for {
		ex.serve()
		// The slot is free before the loop writes the answer: a client
		// that sends its next request once it has read this answer must
		// find it free (with as many clients as workers it saw 503s).
		p.mu.Lock()
		p.busy--
		p.idle++
		p.mu.Unlock()
		ex.handBack()
		timer.Reset(workerIdle)
		select {
		case ex = <-p.jobs:
			continue
		case <-timer.C:
		case <-p.stop:
		}
		p.mu.Lock()
		if p.idle > 0 {
			p.idle--
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ex = <-p.jobs // claimed as the timer fired: the request is on its way
	}
}

// close makes idle workers exit now, and busy ones once they are done.
func (p *httpWorkers) close() { p.once.Do(func() { close(p.stop) }) }

// counts returns the requests being served and the workers alive.
func (p *httpWorkers) counts() (busy, workers int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy, p.busy + p.idle
}
