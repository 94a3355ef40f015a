// Package gcpace keeps a busy server from collecting garbage many times a
// second. Go starts a collection when the heap has grown by GOGC percent of
// what the last one found live; the server's live heap is small (about
// 10 MB idle), so under a burst of writes it collected every 20–40 ms and
// each collection marked the whole live heap: about a sixth of a durable
// create's CPU (bench/results-apiserver.md).
//
// While the process allocates fast (at least BusyRate bytes a second
// between two collections), Start raises GOGC so that the heap goal is at
// least Floor; as soon as it is quiet again (a slow collection, or none in
// twice the last interval, at most 5 s), GOGC goes back to what the process started with. The heap
// therefore never holds more than Floor (or twice the live heap, as
// before) before collecting, and an idle server's memory is what it was.
//
// Setting GOGC (off, or any value) in the environment turns pacing off, as
// does HEADWAY_GC_FLOOR_MIB=0; HEADWAY_GC_FLOOR_MIB=N sets the floor.
package gcpace

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"time"
)

const (
	// DefaultFloor is the heap goal while busy: about 2,000 durable
	// creates' garbage. 64 MiB gained 4 % of a 16-client create's CPU,
	// 128 MiB 12 %, 192 MiB 13 % (bench/results-apiserver.md).
	DefaultFloor = 128 << 20
	// DefaultBusyRate is the allocation rate from which the floor applies:
	// a few hundred API writes a second. An idle server allocates a few
	// KB a second; its start, about 100 MB/s for a fraction of a second.
	DefaultBusyRate = 32 << 20
	// maxPercent bounds GOGC when the live heap is tiny.
	maxPercent = 1000
	// minQuiet and maxQuiet bound how long busy pacing lasts without a
	// collection (twice the last interval between two).
	minQuiet, maxQuiet = 500 * time.Millisecond, 5 * time.Second
)

// Options are the pacer's settings; zero values take the defaults.
type Options struct {
	Floor    uint64 // bytes
	BusyRate uint64 // bytes a second
	Logger   *slog.Logger
}

// pacer is one process's pacing state; the finalizer goroutine and the
// quiet timer share it.
type pacer struct {
	floor, busyRate uint64
	base            int // GOGC the process started with
	log             *slog.Logger

	mu        sync.Mutex
	stopped   bool
	percent   int
	lastAt    time.Time
	lastAlloc uint64
	timer     *time.Timer
	samples   []metrics.Sample
}

// Start paces collections until ctx is done or stop is called; then GOGC
// is what it was. It does nothing (and stop is a no-op) when GOGC is set in
// the environment or the floor is 0.
func Start(ctx context.Context, o Options) (stop func()) {
	if _, set := os.LookupEnv("GOGC"); set {
		return func() {}
	}
	floor := o.Floor
	if v, ok := os.LookupEnv("HEADWAY_GC_FLOOR_MIB"); ok {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			floor = n << 20
		}
	} else if floor == 0 {
		floor = DefaultFloor
	}
	if floor == 0 {
		return func() {}
	}
	p := &pacer{floor: floor, busyRate: o.BusyRate, log: o.Logger}
	if p.busyRate == 0 {
		p.busyRate = DefaultBusyRate
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.base = debug.SetGCPercent(100)
	debug.SetGCPercent(p.base)
	if p.base <= 0 {
		return func() {}
	}
	p.percent = p.base
	p.samples = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	p.lastAt = time.Now()
	p.lastAlloc, _ = p.read()
	p.arm()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.stopped = true
			if p.timer != nil {
				p.timer.Stop()
			}
			p.set(p.base)
		})
	}
	context.AfterFunc(ctx, stop)
	return stop
}

// sentinel is garbage from birth: its finalizer runs once after the
// collection that finds it, and arms the next one.
type sentinel struct{ _ [16]byte }

func (p *pacer) arm() {
	s := &sentinel{}
	runtime.SetFinalizer(s, func(*sentinel) { p.collected() })
}

// read returns the bytes allocated so far and the live heap the last
// collection marked.
func (p *pacer) read() (allocs, live uint64) {
	metrics.Read(p.samples)
	if p.samples[0].Value.Kind() == metrics.KindUint64 {
		allocs = p.samples[0].Value.Uint64()
	}
	if p.samples[1].Value.Kind() == metrics.KindUint64 {
		live = p.samples[1].Value.Uint64()
	}
	return allocs, live
}

// collected runs after each collection: it sets GOGC for the next one from
// the allocation rate since the previous.
func (p *pacer) collected() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.arm()
	now := time.Now()
	allocs, live := p.read()
	elapsed := now.Sub(p.lastAt)
	rate := uint64(0)
	if elapsed > 0 && allocs >= p.lastAlloc {
		rate = uint64(float64(allocs-p.lastAlloc) / elapsed.Seconds())
	}
	p.lastAt, p.lastAlloc = now, allocs
	want := p.base
	if rate >= p.busyRate {
		want = p.percentFor(live)
	}
	p.set(want)
	if want != p.base {
		// No collection in twice the last interval: quiet again, back to
		// the base (which starts one if the heap is past its goal).
		wait := min(max(2*elapsed, minQuiet), maxQuiet)
		if p.timer == nil {
			p.timer = time.AfterFunc(wait, p.quiet)
		} else {
			p.timer.Reset(wait)
		}
	}
}

// percentFor returns the GOGC that puts the heap goal at the floor for
// this live heap, never below the base.
func (p *pacer) percentFor(live uint64) int {
	if live == 0 {
		return maxPercent
	}
	pct := int((p.floor*100)/live) - 100
	return min(max(pct, p.base), maxPercent)
}

func (p *pacer) quiet() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stopped {
		p.set(p.base)
	}
}

// set changes GOGC when it differs by more than a twentieth; p.mu held.
func (p *pacer) set(pct int) {
	if pct == p.percent || (pct != p.base && abs(pct-p.percent)*20 < p.percent) {
		return
	}
	p.log.Debug("garbage collection pacing", "gogc", pct, "was", p.percent)
	p.percent = pct
	debug.SetGCPercent(pct)
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
