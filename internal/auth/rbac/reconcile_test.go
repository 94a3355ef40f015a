package rbac

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunAll: every step runs, at most n at once; the first failure in the
// steps' order is returned, and steps not started when one failed are
// skipped.
func TestRunAll(t *testing.T) {
	var running, most, ran atomic.Int32
	// The first four steps each wait until all four run: they finish only
	// if four run at once.
	var four sync.WaitGroup
	four.Add(4)
	allFour := make(chan struct{})
	go func() { four.Wait(); close(allFour) }()
	steps := make([]func() error, 20)
	for i := range steps {
		steps[i] = func() error {
			now := running.Add(1)
			for {
				m := most.Load()
				if now <= m || most.CompareAndSwap(m, now) {
					break
				}
			}
			defer running.Add(-1)
			ran.Add(1)
			if i < 4 {
				four.Done()
				select {
				case <-allFour:
				case <-time.After(10 * time.Second):
					return fmt.Errorf("step %d: the first four steps did not run at once", i)
				}
			}
			return nil
		}
	}
	if err := runAll(context.Background(), 4, steps); err != nil {
		t.Fatal(err)
	}
	if ran.Load() != 20 || most.Load() != 4 {
		t.Fatalf("%d steps ran, at most %d at once; want 20, 4", ran.Load(), most.Load())
	}

	ran.Store(0)
	failing := make([]func() error, 50)
	for i := range failing {
		failing[i] = func() error {
			ran.Add(1)
			if i == 1 || i == 2 {
				return fmt.Errorf("step %d", i)
			}
			return nil
		}
	}
	err := runAll(context.Background(), 1, failing)
	if err == nil || err.Error() != "step 1" {
		t.Fatalf("err %v, want step 1's", err)
	}
	if ran.Load() != 2 {
		t.Errorf("%d steps ran one at a time with step 1 failing; want 2 (none after it)", ran.Load())
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := runAll(ctx, 2, steps); !errors.Is(err, context.Canceled) {
		t.Errorf("with an ended context: %v, want context.Canceled", err)
	}
}
