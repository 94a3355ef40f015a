package apiserver

// Warm stacks for managedFields tracking.
//
// Every HTTP/2 request is served on a new goroutine, which starts with a
// small stack. structured-merge-diff, which tracks managedFields on every
// create, update and apply, walks the object recursively and needs tens of
// KiB of stack even for a small object: run on the request's goroutine, the
// stack grew (allocated, copied, frames adjusted) on every write, 5–9 % of
// the process's CPU in the 16-client create benchmark
// (bench/results-apiserver.md). A few long-lived goroutines, whose stacks
// have grown once and are kept from shrinking, run that walk instead.

import (
	"context"
	"fmt"
	goruntime "runtime"
	"runtime/debug"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/managedfields"
)

// warmReserve is stack a worker keeps in use while idle. The garbage
// collector halves a goroutine's stack when less than a quarter of it is in
// use; with this much held, a stack of up to four times it (enough for the
// walk of ordinary objects) survives idle periods.
const warmReserve = 16 << 10

// warmStacks hands functions to idle workers. With no idle worker (all
// busy, or none started: the server is not serving) the caller runs the
// function itself, as before: never a wait.
type warmStacks struct {
	jobs chan *warmJob
}

type warmJob struct {
	fn    func()
	done  chan struct{}
	panic *warmPanic
}

// warmPanic carries a worker's panic to the caller's goroutine, with the
// worker's stack for the log (recoverPanics).
type warmPanic struct {
	value any
	stack []byte
}

func (p *warmPanic) Error() string { return fmt.Sprint(p.value) }

var warmJobs = sync.Pool{New: func() any { return &warmJob{done: make(chan struct{}, 1)} }}

func newWarmStacks() *warmStacks { return &warmStacks{jobs: make(chan *warmJob)} }

// start runs n workers until ctx ends; wg is done when they have returned.
func (p *warmStacks) start(ctx context.Context, n int, wg *sync.WaitGroup) {
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.worker(ctx)
		}()
	}
}

// worker holds warmReserve bytes of its stack for as long as it runs.
//
//go:noinline
func (p *warmStacks) worker(ctx context.Context) {
	var reserve [warmReserve]byte
	p.loop(ctx, reserve[:])
}

//go:noinline
func (p *warmStacks) loop(ctx context.Context, reserve []byte) {
	reserve[0] = 0 // the reserve stays on this goroutine's stack, below the work
	for {
		select {
		case j := <-p.jobs:
			j.panic = runJob(j.fn)
			j.done <- struct{}{}
		case <-ctx.Done():
			return
		}
	}
}

func runJob(fn func()) (p *warmPanic) {
	defer func() {
		if v := recover(); v != nil {
			p = &warmPanic{value: v, stack: debug.Stack()}
		}
	}()
	fn()
	return nil
}

// run calls fn on an idle worker and waits for it, or calls it here when no
// worker is idle. A panic in fn is raised again here.
func (p *warmStacks) run(fn func()) {
	if p == nil {
		fn()
		return
	}
	j := warmJobs.Get().(*warmJob)
	j.fn = fn
	select {
	case p.jobs <- j:
		<-j.done
	default:
		j.fn = nil
		warmJobs.Put(j)
		fn()
		return
	}
	wp := j.panic
	j.fn, j.panic = nil, nil
	warmJobs.Put(j)
	if wp != nil {
		panic(wp)
	}
}

// warmWorkers is how many workers Serve starts: the walk is CPU-bound, so
// a few per core.
func warmWorkers() int { return 2 * goruntime.GOMAXPROCS(0) }

// updateFields is fm.UpdateNoErrors on a warm stack.
func (s *Server) updateFields(fm *managedfields.FieldManager, live, obj runtime.Object, manager string) runtime.Object {
	var out runtime.Object
	s.warm.run(func() { out = fm.UpdateNoErrors(live, obj, manager) })
	return out
}

// applyFields is fm.Apply (server-side apply) on a warm stack.
func (s *Server) applyFields(fm *managedfields.FieldManager, live, applied runtime.Object, opts writeOptions) (runtime.Object, error) {
	var out runtime.Object
	var err error
	s.warm.run(func() { out, err = fm.Apply(live, applied, opts.fieldManager, opts.force) })
	return out, err
}
