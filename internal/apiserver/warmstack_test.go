package apiserver

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestWarmStacks: a function runs on an idle worker, or on the caller when
// none is idle (never a wait); a worker's panic reaches the caller; the
// workers end with their context.
func TestWarmStacks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	p := newWarmStacks()
	p.start(ctx, 1, &wg)

	// A job goes to the idle worker: it runs while this goroutine waits.
	release := make(chan struct{})
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run(func() { close(started); <-release })
	}()
	<-started
	// The only worker is busy: the caller runs the function itself, now.
	ran := false
	p.run(func() { ran = true })
	if !ran {
		t.Fatal("with every worker busy, run did not call the function on the caller")
	}
	close(release)
	<-done

	// A panic on a worker is raised again on the caller, value unchanged,
	// with the worker's stack. (Until the worker is back waiting for work,
	// the caller runs the function and the panic is its own: try again.)
	boom := errors.New("boom")
	deadline := time.Now().Add(10 * time.Second)
	for {
		v := func() (v any) {
			defer func() { v = recover() }()
			p.run(func() { panic(boom) })
			return nil
		}()
		if wp, ok := v.(*warmPanic); ok {
			if wp.value != boom || wp.Error() != "boom" || len(wp.stack) == 0 {
				t.Fatalf("warm panic %+v, want boom with a stack", wp)
			}
			break
		}
		if v != boom {
			t.Fatalf("recovered %v (%T), want boom", v, v)
		}
		if time.Now().After(deadline) {
			t.Fatal("no job reached the idle worker in 10s")
		}
		time.Sleep(time.Millisecond)
	}

	// The workers end with the context.
	cancel()
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("workers still running 10s after their context ended")
	}
	// With no worker, run still calls the function (on the caller).
	ran = false
	p.run(func() { ran = true })
	if !ran {
		t.Fatal("with no workers, run did not call the function")
	}
	var none *warmStacks
	ran = false
	none.run(func() { ran = true })
	if !ran {
		t.Fatal("a nil pool did not call the function")
	}
}
