package apiserver

import (
	"runtime"
	"sync"
	"time"
)

// flushPace bounds how often the watches served from the object cache flush
// to their clients, all together. A flush costs about the same whatever it
// carries (a wake of the watch, a round trip to the HTTP/2 connection's
// writer, a TLS record and a write, then the client's read), so a burst of
// writes watched by many clients cost the machine a flush per watcher per
// group commit: with 100 watchers, most of the CPU the writes had.
//
// Below the rate nothing waits: a lone event goes out at once. Above it a
// watch that has events waits for its turn (at most maxPace) and sends what
// arrived meanwhile in the same flush: each flush carries more events, the
// watchers' delivery lags by up to maxPace, and the writers keep their CPU.
// kube-apiserver flushes a watch whenever its queue is empty, and so pays
// per flush under any load.
type flushPace struct {
	mu       sync.Mutex
	interval time.Duration // one flush per interval, across watches
	burst    time.Duration // flushes not made in the last burst are made up
	max      time.Duration // the longest a watch waits for its turn
	next     time.Time     // the turn the next reservation takes
}

// Default pacing: per core, flushes per second, the burst allowed at once
// (as a duration at that rate) and the longest wait.
const (
	watchFlushesPerCore = 1000
	watchPaceBurst      = 4 * time.Millisecond
	watchPaceMax        = 60 * time.Millisecond
)

// newFlushPace paces flushes at rate per second; rate 0 is
// watchFlushesPerCore per usable core, a negative rate paces nothing (nil).
func newFlushPace(rate int) *flushPace {
	if rate < 0 {
		return nil
	}
	if rate == 0 {
		rate = watchFlushesPerCore * usableCores()
	}
	return &flushPace{interval: time.Second / time.Duration(rate), burst: watchPaceBurst, max: watchPaceMax}
}

// usableCores is the cores the process may run on: GOMAXPROCS, which
// headway server sets one above the cores for the goroutines blocked in
// fsync (internal/procs), counts a P that is not a core.
func usableCores() int {
	return max(1, min(runtime.NumCPU(), runtime.GOMAXPROCS(0)))
}

// reserve takes the next turn to flush and says how long to wait for it (0:
// flush now).
func (p *flushPace) reserve(now time.Time) time.Duration {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if earliest := now.Add(-p.burst); p.next.Before(earliest) {
		p.next = earliest
	}
	wait := p.next.Sub(now)
	// Turns are never handed out further ahead than max: under more
	// watchers than the rate serves at max apart, each still flushes every
	// max, and the turns catch up with the clock within max of the load
	// ending.
	if wait > p.max {
		wait = p.max
		p.next = now.Add(p.max)
	}
	p.next = p.next.Add(p.interval)
	return max(0, wait)
}
