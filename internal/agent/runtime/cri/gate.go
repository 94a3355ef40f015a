package cri

import (
	"context"
	"sync"
)

// gate bounds how many sandboxes and containers are being made at once.
// Each one is a handful of processes (the shim, runc create and start, the
// CNI plugins) that the runtime starts together: a 100-pod StatefulSet
// asked for all at once has hundreds of them share the CPUs, and the time
// they spend waiting for each other, switching and missing caches adds up
// to more CPU than making the pods a few at a time. Containers go before
// sandboxes (a pod whose sandbox is ready is the closest to Ready), each
// kind in the order asked.
type gate struct {
	mu   sync.Mutex
	free int
	// waiting, by priority: containers [0], sandboxes [1].
	waiting [2][]chan struct{}
}

const (
	forContainer = 0
	forSandbox   = 1
)

func newGate(n int) *gate { return &gate{free: max(n, 1)} }

// enter waits for a free place (kind is forContainer or forSandbox), or
// for ctx to end.
func (g *gate) enter(ctx context.Context, kind int) error {
	g.mu.Lock()
	if g.free > 0 { // then nobody waits: leave hands places to waiters
		g.free--
		g.mu.Unlock()
		return nil
	}
	ch := make(chan struct{})
	g.waiting[kind] = append(g.waiting[kind], ch)
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		g.mu.Lock()
		defer g.mu.Unlock()
		for i, w := range g.waiting[kind] {
			if w == ch {
				g.waiting[kind] = append(g.waiting[kind][:i], g.waiting[kind][i+1:]...)
				return ctx.Err()
			}
		}
		// Let in meanwhile: pass the place on.
		g.leaveLocked()
		return ctx.Err()
	}
}

// leave frees the place taken by enter.
func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leaveLocked()
}

func (g *gate) leaveLocked() {
	for k := range g.waiting {
		if len(g.waiting[k]) > 0 {
			ch := g.waiting[k][0]
			g.waiting[k] = g.waiting[k][1:]
			close(ch)
			return
		}
	}
	g.free++
}
