package cri

import (
	"context"
	"testing"
	"time"
)

// TestGate: at most n inside; containers waiting go in before sandboxes
// waiting, each kind in order; a waiter whose context ends leaves the queue.
func TestGate(t *testing.T) {
	g := newGate(2)
	ctx := context.Background()
	for range 2 {
		if err := g.enter(ctx, forSandbox); err != nil {
			t.Fatal(err)
		}
	}
	order := make(chan string, 4)
	wait := func(name string, kind int) {
		go func() {
			if err := g.enter(ctx, kind); err != nil {
				t.Error(err)
				return
			}
			order <- name
		}()
	}
	wait("sandbox-1", forSandbox)
	waitQueued(t, g, forSandbox, 1)
	wait("sandbox-2", forSandbox)
	waitQueued(t, g, forSandbox, 2)
	wait("container-1", forContainer)
	waitQueued(t, g, forContainer, 1)

	cctx, cancel := context.WithCancel(ctx)
	gaveUp := make(chan error, 1)
	go func() { gaveUp <- g.enter(cctx, forContainer) }()
	waitQueued(t, g, forContainer, 2)
	cancel()
	if err := <-gaveUp; err != context.Canceled {
		t.Fatalf("enter with its context cancelled: %v, want context.Canceled", err)
	}

	select {
	case name := <-order:
		t.Fatalf("%s went in while the gate was full", name)
	case <-time.After(20 * time.Millisecond):
	}
	for _, want := range []string{"container-1", "sandbox-1", "sandbox-2"} {
		g.leave()
		if got := <-order; got != want {
			t.Fatalf("went in: %s, want %s", got, want)
		}
	}
	// The last two in leave and one more enters: one place is free.
	g.leave()
	g.leave()
	if err := g.enter(ctx, forSandbox); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	free := g.free
	g.mu.Unlock()
	if free != 1 {
		t.Fatalf("free places: %d, want 1", free)
	}
}

func waitQueued(t *testing.T, g *gate, kind, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		got := len(g.waiting[kind])
		g.mu.Unlock()
		if got == n {
			return
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	t.Fatalf("%d waiting, want %d", len(g.waiting[kind]), n)
}
