package greeter_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/headway/headway/examples/greeter"
	"github.com/headway/headway/pkg/headwaytest"
)

// Three greeter pods behind a headless Service; the client reaches every
// one of them through the resolver, round robin.
func Example() {
	p := newPods()
	c, err := headwaytest.StartE(headwaytest.Options{PodCIDR: netip.MustParsePrefix("127.77.1.0/24"), PodReady: p.ready})
	if err != nil {
		panic(err)
	}
	defer c.Stop()
	defer p.stopAll()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs, err := c.ApplyE(ctx, fmt.Sprintf(greeter.Manifest, 3))
	if err != nil {
		panic(err)
	}
	if err := c.WaitReadyE(ctx, objs[1]); err != nil {
		panic(err)
	}
	conn, err := greeter.Dial(c.Client)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	var seen []string
	for len(seen) < 3 {
		pod, err := greeter.Hello(ctx, conn)
		if err != nil {
			panic(err)
		}
		if !slices.Contains(seen, pod) {
			seen = append(seen, pod)
		}
	}
	slices.Sort(seen)
	fmt.Println("answered by", seen)
	// Output: answered by [greeter-0 greeter-1 greeter-2]
}

func (p *pods) stopAll() {
	p.mu.Lock()
	var names []string
	for n := range p.servers {
		names = append(names, n)
	}
	p.mu.Unlock()
	for _, n := range names {
		p.stop(n)
	}
}
