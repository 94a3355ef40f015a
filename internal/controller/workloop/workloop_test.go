package workloop

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// start runs l in the background; the returned stop cancels it and waits
// for Run to return.
func start[K comparable](t *testing.T, l *Loop[K], workers int) (context.Context, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx, workers) }()
	stop := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return ctx, stop
}

func TestSuccessForgetsAndDuplicatesCollapse(t *testing.T) {
	var mu sync.Mutex
	synced := map[string]int{}
	l := New("test", nil, func(_ context.Context, key string) error {
		mu.Lock()
		synced[key]++
		mu.Unlock()
		return nil
	})
	// Added many times before any worker runs: synced once each.
	for range 5 {
		l.Add("a")
		l.Add("b")
	}
	start(t, l, 2)
	waitFor(t, "a and b synced", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return synced["a"] == 1 && synced["b"] == 1
	})
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if synced["a"] != 1 || synced["b"] != 1 || len(synced) != 2 {
		t.Fatalf("synced %v, want a and b once each", synced)
	}
	if n := l.queue.NumRequeues("a"); n != 0 {
		t.Fatalf("a succeeded but has %d requeues", n)
	}
}

func TestErrorRetriesWithBackoffThenForgets(t *testing.T) {
	var calls atomic.Int32
	var times []time.Time
	var mu sync.Mutex
	l := New("test", nil, func(_ context.Context, key string) error {
		mu.Lock()
		times = append(times, time.Now())
		mu.Unlock()
		if calls.Add(1) <= 4 {
			return errors.New("not yet")
		}
		return nil
	})
	l.Add("k")
	start(t, l, 1)
	waitFor(t, "five attempts", func() bool { return calls.Load() == 5 })
	time.Sleep(50 * time.Millisecond)
	if n := calls.Load(); n != 5 {
		t.Fatalf("sync ran %d times, want 5 (4 failures, then success, then nothing)", n)
	}
	if n := l.queue.NumRequeues("k"); n != 0 {
		t.Fatalf("after success the key still has %d requeues", n)
	}
	// Backoff: 5ms, 10ms, 20ms, 40ms between attempts (at least).
	mu.Lock()
	defer mu.Unlock()
	for i, want := range []time.Duration{5, 10, 20, 40} {
		if gap := times[i+1].Sub(times[i]); gap < want*time.Millisecond {
			t.Errorf("retry %d came after %v, want at least %v", i+1, gap, want*time.Millisecond)
		}
	}
}

func TestOneWorkerPerKey(t *testing.T) {
	var running, overlap, total atomic.Int32
	var l *Loop[int]
	l = New("test", nil, func(_ context.Context, key int) error {
		if running.Add(1) > 1 {
			overlap.Add(1)
		}
		if total.Add(1) < 20 {
			l.Add(key) // re-added while being synced: synced again after
		}
		time.Sleep(time.Millisecond)
		running.Add(-1)
		return nil
	})
	l.Add(7)
	start(t, l, 8)
	waitFor(t, "20 syncs", func() bool { return total.Load() >= 20 })
	if n := overlap.Load(); n != 0 {
		t.Fatalf("a key was synced by two workers at once %d times", n)
	}
}

func TestAddAfter(t *testing.T) {
	got := make(chan time.Time, 1)
	l := New("test", nil, func(_ context.Context, key string) error {
		got <- time.Now()
		return nil
	})
	start(t, l, 1)
	at := time.Now()
	l.AddAfter("k", 50*time.Millisecond)
	select {
	case when := <-got:
		if d := when.Sub(at); d < 50*time.Millisecond {
			t.Fatalf("synced after %v, want at least 50ms", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("never synced")
	}
}

func TestNewAfter(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	l := NewAfter("test", nil, func(_ context.Context, key string) (time.Duration, error) {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		switch len(times) {
		case 1:
			return 80 * time.Millisecond, nil // look again later
		case 2:
			return 10 * time.Millisecond, errors.New("boom") // an error wins: backoff, not the delay
		}
		return 0, nil
	})
	l.Add("k")
	start(t, l, 1)
	waitFor(t, "three syncs", func() bool { mu.Lock(); defer mu.Unlock(); return len(times) == 3 })
	time.Sleep(150 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 3 {
		t.Fatalf("%d syncs, want 3 (the last asked for no more)", len(times))
	}
	if d := times[1].Sub(times[0]); d < 80*time.Millisecond {
		t.Errorf("synced again after %v, want the 80ms asked for", d)
	}
	if d := times[2].Sub(times[1]); d > 60*time.Millisecond {
		t.Errorf("retry after the error took %v, want the first backoff step (5ms)", d)
	}
	if n := l.queue.NumRequeues("k"); n != 0 {
		t.Errorf("%d requeues left after success", n)
	}
}

func TestWaitsForCaches(t *testing.T) {
	var ready atomic.Bool
	var early atomic.Bool
	var calls atomic.Int32
	l := New("test", nil, func(_ context.Context, key string) error {
		if !ready.Load() {
			early.Store(true)
		}
		calls.Add(1)
		return nil
	})
	l.Add("k")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); l.Run(ctx, 1, ready.Load) }()
	time.Sleep(150 * time.Millisecond) // WaitForCacheSync polls every 100ms
	if calls.Load() != 0 {
		t.Fatal("synced before the caches were")
	}
	ready.Store(true)
	waitFor(t, "sync after the caches", func() bool { return calls.Load() == 1 })
	cancel()
	<-done
	if early.Load() {
		t.Fatal("synced before the caches were")
	}
}

func TestCachesNeverSyncedRunReturns(t *testing.T) {
	var calls atomic.Int32
	l := New("test", nil, func(context.Context, string) error { calls.Add(1); return nil })
	l.Add("k")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	l.Run(ctx, 2, func() bool { return false })
	if calls.Load() != 0 {
		t.Fatal("synced without caches")
	}
}

func TestShutdown(t *testing.T) {
	before := runtime.NumGoroutine()
	inSync := make(chan struct{})
	var calls atomic.Int32
	l := New("test", nil, func(ctx context.Context, key string) error {
		if calls.Add(1) == 1 {
			close(inSync)
		}
		<-ctx.Done() // blocks until shutdown, then fails
		return ctx.Err()
	})
	l.Add("a")
	_, stop := start(t, l, 4)
	<-inSync
	l.Add("b") // queued while shutting down: never synced
	for range 3 {
		l.Add("c")
	}
	stop()
	if n := calls.Load(); n > 3 {
		t.Fatalf("%d syncs, want a, b, c at most once each", n)
	}
	if n := l.queue.NumRequeues("a"); n != 0 {
		t.Fatalf("a sync that failed because of shutdown was requeued (%d)", n)
	}
	// Adding after shutdown is a no-op, not a panic.
	l.Add("d")
	if n := l.Len(); n != 0 {
		t.Fatalf("%d keys queued after shutdown", n)
	}
	waitFor(t, "workers to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestRunWithoutWorkersUsesOne(t *testing.T) {
	done := make(chan struct{})
	l := New("test", nil, func(context.Context, string) error { close(done); return nil })
	l.Add("k")
	start(t, l, 0)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run with 0 workers synced nothing")
	}
}

// records keeps what a logger was given.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func TestRetriesLogged(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		rec := &records{}
		var calls atomic.Int32
		l := New("things", slog.New(rec), func(context.Context, string) error {
			if calls.Add(1) == 1 {
				return errors.New("boom")
			}
			return nil
		})
		if level != slog.LevelDebug {
			l.LogRetriesAt(level)
		}
		l.Add("ns/x")
		_, stop := start(t, l, 1)
		waitFor(t, "the retry", func() bool { return calls.Load() == 2 })
		stop()
		rec.mu.Lock()
		if len(rec.recs) != 1 {
			t.Fatalf("%d log lines, want 1 (the failure)", len(rec.recs))
		}
		r := rec.recs[0]
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		if r.Level != level || attrs["queue"] != "things" || attrs["key"] != "ns/x" || attrs["err"] != "boom" {
			t.Errorf("logged %v %q %v, want level %v with queue, key and err", r.Level, r.Message, attrs, level)
		}
		rec.mu.Unlock()
	}
}
