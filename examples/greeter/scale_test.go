package greeter_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/headway/headway/examples/greeter"
	"github.com/headway/headway/pkg/discovery"
	"github.com/headway/headway/pkg/discovery/grpcresolver"
	"github.com/headway/headway/pkg/headwaytest"
)

// calls records the client's calls: which pod answered each, and when the
// call started.
type calls struct {
	mu    sync.Mutex
	last  map[string]time.Time // latest call start answered by each pod
	n     map[string]int
	errs  int
	all   int
	calls []call
}

type call struct {
	start time.Time
	pod   string
}

// between counts the calls started in [from, to) and, of those, the ones
// pod answered.
func (c *calls) between(from, to time.Time, pod string) (all, byPod int) {
	for _, x := range c.calls {
		if !x.start.Before(from) && x.start.Before(to) {
			all++
			if x.pod == pod {
				byPod++
			}
		}
	}
	return all, byPod
}

// TestScaleWhileCalling runs the greeter at 3 replicas, scales it to 5 and
// then to 2 while a client calls it without pause through the resolver.
// Pods are simulated (headwaytest): each has a loopback address on which a
// greeter serves in this process, and a deleted pod keeps serving for a
// second while it terminates, as a real pod shutting down would. A second,
// independent discovery.Watch says when each endpoint became ready and
// when it turned terminating; the test logs those delays (the issue's
// figures: first call within 100 ms of ready, no call after terminating),
// and bench/discovery measures them on a quiet machine. Tests do not
// assert wall-clock speed, so what it asserts is counted in calls, which
// slow down with the machine as the watch does: once the client's resolver
// lists a new pod, the pod answers one of the next 100 calls (with five
// pods round robin, a call in five once connected); once the resolver
// drops a terminating pod, at most one call per caller (picked before the
// balancer took the new list) still reaches it; and no call fails.
func TestScaleWhileCalling(t *testing.T) {
	p := newPods()
	c := headwaytest.Start(t, headwaytest.Options{
		PodCIDR: netip.MustParsePrefix("127.77.2.0/24"), PodReady: p.ready, PodTerminationDelay: time.Second,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p.follow(t, ctx, c.Client)

	// The reference: when each endpoint turned ready, and terminating (or
	// went away without terminating).
	var mu sync.Mutex
	readyAt, goneAt := map[string]time.Time{}, map[string]time.Time{}
	_, err := discovery.Watch(ctx, c.Client, "greeter", "default", discovery.Options{OnChange: func(s discovery.Snapshot) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		present := map[string]bool{}
		for _, e := range s.Endpoints {
			present[e.Pod] = true
			if e.Ready {
				if _, ok := readyAt[e.Pod]; !ok {
					readyAt[e.Pod] = now
				}
			}
			if e.Terminating {
				if _, ok := goneAt[e.Pod]; !ok {
					goneAt[e.Pod] = now
				}
			}
		}
		for pod := range readyAt {
			if _, ok := goneAt[pod]; !ok && !present[pod] {
				goneAt[pod] = now
			}
		}
	}})
	if err != nil {
		t.Fatal(err)
	}

	objs := c.Apply(fmt.Sprintf(greeter.Manifest, 3))
	c.WaitReady(objs[1])
	// When the client's resolver first listed each address (diagnostics).
	listedAt, droppedAt := map[string]time.Time{}, map[string]time.Time{}
	b := grpcresolver.NewBuilder(c.Client)
	b.OnUpdate = func(_ string, addrs []string) {
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		for _, a := range addrs {
			if _, ok := listedAt[a]; !ok {
				listedAt[a] = now
			}
		}
		for a := range listedAt {
			if _, ok := droppedAt[a]; !ok && !slices.Contains(addrs, a) {
				droppedAt[a] = now
			}
		}
	}
	conn, err := greeter.DialWith(b)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	rec := &calls{last: map[string]time.Time{}, n: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const callers = 2
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				pod, err := greeter.Hello(cctx, conn)
				ccancel()
				rec.mu.Lock()
				rec.all++
				if err != nil {
					rec.errs++
					if rec.errs <= 5 {
						t.Errorf("call failed: %v", err)
					}
				} else {
					rec.calls = append(rec.calls, call{start, pod})
					rec.n[pod]++
					if start.After(rec.last[pod]) {
						rec.last[pod] = start
					}
				}
				rec.mu.Unlock()
			}
		}()
	}
	served := func(pods ...string) func() (bool, error) {
		return func() (bool, error) {
			for _, pod := range pods {
				if p.firstCall(pod).IsZero() {
					return false, fmt.Errorf("%s has served no call", pod)
				}
			}
			return true, nil
		}
	}
	waitFor(t, "the first three pods serving", served("greeter-0", "greeter-1", "greeter-2"))

	c.WaitReady(c.Apply(fmt.Sprintf(greeter.Manifest, 5))[1])
	waitFor(t, "the new pods serving", served("greeter-3", "greeter-4"))

	c.WaitReady(c.Apply(fmt.Sprintf(greeter.Manifest, 2))[1])
	waitFor(t, "three pods terminated and a second more of calls", func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		for _, pod := range []string{"greeter-2", "greeter-3", "greeter-4"} {
			if goneAt[pod].IsZero() || time.Since(goneAt[pod]) < time.Second {
				return false, fmt.Errorf("%s not terminating for a second yet", pod)
			}
		}
		return true, nil
	})
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	rec.mu.Lock()
	defer rec.mu.Unlock()
	t.Logf("%d calls, %d failed, by pod %v", rec.all, rec.errs, rec.n)
	for _, pod := range []string{"greeter-3", "greeter-4"} {
		listed := listedAt[p.addr(pod)]
		before, _ := rec.between(listed, p.firstCall(pod), pod)
		t.Logf("%s: first call %v after its endpoint turned ready; the client's resolver listed it after %v, and %d calls went elsewhere until it answered",
			pod, p.firstCall(pod).Sub(readyAt[pod]).Round(10*time.Microsecond), listed.Sub(readyAt[pod]).Round(10*time.Microsecond), before)
		if listed.IsZero() || before > 100 {
			t.Errorf("%s answered no call among the %d after the resolver listed it (at %v); want one within 100", pod, before, listed)
		}
	}
	for _, pod := range []string{"greeter-2", "greeter-3", "greeter-4"} {
		dropped := droppedAt[p.addr(pod)]
		_, late := rec.between(dropped, time.Now(), pod)
		t.Logf("%s: last call started %v after its endpoint turned terminating; the client's resolver dropped it %v after; %d calls reached it after that",
			pod, rec.last[pod].Sub(goneAt[pod]).Round(10*time.Microsecond), dropped.Sub(goneAt[pod]).Round(10*time.Microsecond), late)
		if dropped.IsZero() || late > callers {
			t.Errorf("%s: %d calls started after the resolver dropped it (at %v) reached it; want at most %d (in flight)", pod, late, dropped, callers)
		}
	}
	for _, pod := range []string{"greeter-0", "greeter-1"} {
		if !goneAt[pod].IsZero() {
			t.Errorf("%s, kept by the scale-down, turned terminating", pod)
		}
	}
	if rec.errs > 0 {
		t.Errorf("%d of %d calls failed", rec.errs, rec.all)
	}
	if got := slices.Sorted(func(yield func(string) bool) {
		for pod := range rec.n {
			if !yield(pod) {
				return
			}
		}
	}); len(got) != 5 {
		t.Errorf("calls reached %v; want the five pods", got)
	}
}

func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok && err == nil {
			return
		}
		last = err
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	t.Fatalf("timed out waiting for %s: %v", what, last)
}
