package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/storage/memory"
)

// TestFlushPaceReserve: below the rate every flush goes at once (a burst's
// worth too); above it each waits for its turn, never longer than max; once
// the load ends, flushes go at once again.
func TestFlushPaceReserve(t *testing.T) {
	p := &flushPace{interval: time.Millisecond, burst: 4 * time.Millisecond, max: 40 * time.Millisecond}
	t0 := time.Unix(1000, 0)
	// A quiet watch: one flush every 2 ms never waits.
	for i := range 10 {
		if d := p.reserve(t0.Add(time.Duration(2*i) * time.Millisecond)); d != 0 {
			t.Fatalf("flush %d, 2 ms apart at 1 a ms: waits %v", i, d)
		}
	}
	// 100 watches at once: the burst (5 turns: the one due now and 4 ms
	// made up) goes now, then one turn a millisecond, capped at 40 ms.
	now := t0.Add(time.Second)
	var waits []time.Duration
	for range 100 {
		waits = append(waits, p.reserve(now))
	}
	for i, d := range waits {
		want := min(max(0, time.Duration(i-4)*time.Millisecond), 40*time.Millisecond)
		if d != want {
			t.Fatalf("reservation %d at once: waits %v, want %v (all: %v)", i, d, want, waits)
		}
	}
	// The turns handed out never run more than max ahead: 41 ms after the
	// storm a flush goes at once.
	if d := p.reserve(now.Add(41 * time.Millisecond)); d != 0 {
		t.Fatalf("after the storm: waits %v", d)
	}
	// Negative rate: no pacing.
	if p := newFlushPace(-1); p.reserve(now) != 0 {
		t.Fatal("a nil pace waits")
	}
	if p := newFlushPace(0); p.interval <= 0 || p.max != watchPaceMax {
		t.Fatalf("default pace %+v", p)
	}
}

// TestDefaultPaceIsPerCore: the default rate counts cores, not the spare P
// headway server adds for fsync (GOMAXPROCS one above the cores).
func TestDefaultPaceIsPerCore(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.NumCPU() + 1))
	want := time.Second / time.Duration(watchFlushesPerCore*runtime.NumCPU())
	if p := newFlushPace(0); p.interval != want {
		t.Fatalf("with GOMAXPROCS %d on %d cores the default pace flushes every %v, want %v (%d a second per core)",
			runtime.GOMAXPROCS(0), runtime.NumCPU(), p.interval, want, watchFlushesPerCore)
	}
}

// TestWatchPacedFlushes: a watch that must wait for its turn to flush sends
// the events that arrive meanwhile, one at a time, in the same write and
// flush, every one of them and in order.
func TestWatchPacedFlushes(t *testing.T) {
	store := memory.New()
	// One flush an hour once the first is made, but nobody waits more than
	// 3 s: the events created one by one after e0 all come in that wait.
	pace := &flushPace{interval: time.Hour, max: 3 * time.Second}
	srv, cs := serveForTest(t, Config{Store: store, pace: pace})
	ctx := context.Background()
	mkNamespaces(t, cs, "paced")
	cms := cs.CoreV1().ConfigMaps("paced")
	if _, err := cms.List(ctx, metav1.ListOptions{ResourceVersion: "0"}); err != nil {
		t.Fatal(err)
	}
	wcs, rec := recordedWatches(t, srv.Handler(), "")
	w, err := wcs.CoreV1().ConfigMaps("paced").Watch(ctx, metav1.ListOptions{ResourceVersion: strconv.FormatInt(store.Revision(), 10)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	n0 := rec.count()
	create := func(i int) {
		t.Helper()
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("e%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, fmt.Sprintf("the cache to hold e%d", i), func() bool {
			srv.cache.mu.Lock()
			defer srv.cache.mu.Unlock()
			return srv.cache.rev >= store.Revision()
		})
	}
	// e0 takes the first turn, at once.
	create(0)
	if got, _ := nextEvents(t, w, 1, false); fmt.Sprint(got) != "[ADDED e0]" {
		t.Fatalf("got %v", got)
	}
	start := time.Now()
	for i := 1; i <= 5; i++ {
		create(i)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Skipf("creating 5 objects took %v, more than the pace's wait: nothing to check", took)
	}
	got, _ := nextEvents(t, w, 5, false)
	if want := "[ADDED e1 ADDED e2 ADDED e3 ADDED e4 ADDED e5]"; fmt.Sprint(got) != want {
		t.Fatalf("events %v, want %s", got, want)
	}
	waitUntil(t, "two flushes", func() bool { ops, _ := rec.since(n0); return len(ops) >= 4 })
	ops, writes := rec.since(n0)
	if fmt.Sprint(ops) != "[write flush write flush]" {
		t.Fatalf("the watch response's operations %v; want e0 written and flushed, then e1..e5 in one write and one flush", ops)
	}
	for i := 1; i <= 5; i++ {
		if !bytes.Contains(writes[1], []byte(fmt.Sprintf("\n\x02e%d\x12", i))) { // the protobuf name field
			t.Fatalf("the paced batch lacks e%d: %q", i, writes[1])
		}
	}
}
