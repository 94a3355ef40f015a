package gcpace

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func heapGoal() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

func gogc() int {
	v := debug.SetGCPercent(100)
	debug.SetGCPercent(v)
	return v
}

var sink []byte

// churn allocates garbage fast (a server under a burst of writes) until
// done says so or the deadline passes; it reports whether done did.
func churn(t *testing.T, deadline time.Duration, done func() bool) bool {
	t.Helper()
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		for range 2000 {
			sink = make([]byte, 1024)
		}
		if done() {
			return true
		}
	}
	return false
}

// TestBusyRaisesTheGoalAndQuietRestoresIt allocates fast until the heap
// goal reaches the floor (it would stay at about 8 MiB, twice this test's
// live heap, without pacing), then stops, waits for GOGC to return to the
// base, and checks that the next collection puts the goal back near the
// live heap.
func TestBusyRaisesTheGoalAndQuietRestoresIt(t *testing.T) {
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set in the environment: pacing is off by design")
	}
	t.Setenv("HEADWAY_GC_FLOOR_MIB", "96")
	base := gogc()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := Start(ctx, Options{BusyRate: 8 << 20})
	defer stop()

	floor := uint64(96 << 20)
	if !churn(t, 20*time.Second, func() bool { return heapGoal() >= floor*9/10 }) {
		t.Fatalf("allocating fast for 20 s: the heap goal stayed at %d MiB, want about the 96 MiB floor (GOGC %d)", heapGoal()>>20, gogc())
	}
	if g := gogc(); g <= base {
		t.Fatalf("busy: GOGC is %d, want above the base %d", g, base)
	}

	sink = nil
	deadline := time.Now().Add(15 * time.Second)
	for gogc() != base {
		if time.Now().After(deadline) {
			t.Fatalf("quiet for 15 s: GOGC %d, want the base %d back", gogc(), base)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
		runtime.Gosched()
	}
	// The goal follows the live heap from the next collection on. The one
	// before the quiet may have marked much of the churn as live (allocated
	// while it marked), and a quiet process collects again only when forced,
	// so the test forces it.
	runtime.GC()
	if g := gogc(); g != base {
		t.Fatalf("a quiet collection set GOGC to %d, want the base %d", g, base)
	}
	if goal := heapGoal(); goal >= floor/2 {
		t.Fatalf("quiet, after a collection: heap goal %d MiB, want it back under the floor (%d MiB)", goal>>20, floor>>20)
	}
}

// TestStopRestoresGOGC: after stop the process's GOGC is what it was, even
// when stopped while busy.
func TestStopRestoresGOGC(t *testing.T) {
	if _, set := os.LookupEnv("GOGC"); set {
		t.Skip("GOGC is set in the environment")
	}
	t.Setenv("HEADWAY_GC_FLOOR_MIB", "96")
	base := gogc()
	stop := Start(context.Background(), Options{BusyRate: 8 << 20})
	if !churn(t, 20*time.Second, func() bool { return gogc() != base }) {
		stop()
		t.Fatalf("allocating fast for 20 s never raised GOGC from %d", base)
	}
	stop()
	if g := gogc(); g != base {
		t.Fatalf("after stop GOGC is %d, want %d", g, base)
	}
	// Collections after stop change nothing.
	runtime.GC()
	runtime.GC()
	if g := gogc(); g != base {
		t.Fatalf("collections after stop set GOGC to %d, want %d", g, base)
	}
}

// TestOffWhenGOGCIsSet: a GOGC in the environment is the operator's choice.
func TestOffWhenGOGCIsSet(t *testing.T) {
	t.Setenv("GOGC", "100")
	base := gogc()
	stop := Start(context.Background(), Options{BusyRate: 1})
	defer stop()
	churn(t, 200*time.Millisecond, func() bool { return false })
	if g := gogc(); g != base {
		t.Fatalf("GOGC set in the environment, yet pacing set it to %d (was %d)", g, base)
	}
}

func TestPercentFor(t *testing.T) {
	p := &pacer{floor: 128 << 20, base: 100}
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, maxPercent},
		{8 << 20, 1000},  // 1500 capped
		{32 << 20, 300},  // goal 128 MiB
		{64 << 20, 100},  // twice the live heap is the floor
		{100 << 20, 100}, // never below the base
		{1 << 30, 100},
	} {
		if got := p.percentFor(c.live); got != c.want {
			t.Errorf("percentFor(%d MiB) = %d, want %d", c.live>>20, got, c.want)
		}
	}
}
