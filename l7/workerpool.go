package l7

// The worker pool HTTP/2 streams' handlers run on.

import (
	"net/http"
	"slices"
	"sync"
	"time"
)

// h2Job is a stream's request, for a worker.
type h2Job struct {
	c         *h2Conn
	st        *h2Stream
	r         *http.Request
	truncated bool
}

// workerIdle is how long a worker waits for its next job before it ends.
const workerIdle = 10 * time.Second

// workerPool runs jobs on goroutines that wait for the next once done,
// the most recently parked first: a new goroutine's stack grows by copying
// to the depth of the proxy's handler (about 5% of the h2 path's CPU), a
// parked one's has grown already. Workers idle for workerIdle end, so an
// idle proxy holds none for long.
type workerPool struct {
	mu       sync.Mutex
	idle     []*worker // oldest first
	cleaning bool      // a clean is scheduled
}

type worker struct {
	jobs   chan h2Job // one at a time; a zero job ends the worker
	parked time.Time
}

func (p *workerPool) run(j h2Job) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		w.jobs <- j
		return
	}
	p.mu.Unlock()
	w := &worker{jobs: make(chan h2Job, 1)}
	go w.loop(p, j)
}

func (w *worker) loop(p *workerPool, j h2Job) {
	for j.c != nil {
		j.c.runHandler(j.st, j.r, j.truncated)
		j = h2Job{} // a parked worker keeps no connection or request alive
		p.park(w)
		j = <-w.jobs
	}
}

func (p *workerPool) park(w *worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.parked = time.Now()
	p.idle = append(p.idle, w)
	if !p.cleaning {
		p.cleaning = true
		time.AfterFunc(workerIdle, p.clean)
	}
}

// clean ends the workers parked for workerIdle or longer.
func (p *workerPool) clean() {
	p.mu.Lock()
	defer p.mu.Unlock()
	cut := time.Now().Add(-workerIdle)
	n := 0
	for n < len(p.idle) && !p.idle[n].parked.After(cut) {
		p.idle[n].jobs <- h2Job{}
		n++
	}
	p.idle = slices.Delete(p.idle, 0, n)
	p.cleaning = len(p.idle) > 0
	if p.cleaning {
		time.AfterFunc(workerIdle, p.clean)
	}
}
