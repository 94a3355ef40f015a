package dns_test

import (
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/headway/headway/internal/dns"
)

// processCPU is the CPU time the process has used (user and system, every
// thread, the garbage collector's included), in nanoseconds: the
// benchmarks' figure that a loaded machine does not inflate.
func processCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkIndexUpdate: one endpoint of a 1,000-endpoint headless Service
// (10 slices of 100) changes readiness; the index is updated and published.
func BenchmarkIndexUpdate(b *testing.B) { benchIndexUpdate(b, false) }

// BenchmarkIndexUpdateAnswer: the same change, and then the first query
// for the changed endpoint's name (what a client waiting for the change
// pays on top of the update: the names built for the Service's new
// version).
func BenchmarkIndexUpdateAnswer(b *testing.B) { benchIndexUpdate(b, true) }

func benchIndexUpdate(b *testing.B, answer bool) {
	objs := []runtime.Object{ns("default"), svc("default", "churn", "None", port("web", 80, "TCP"))}
	var slices []*discoveryv1.EndpointSlice
	queries := make([][]byte, 1000)
	for s := 0; s < 10; s++ {
		var eps []ep
		for j := 0; j < 100; j++ {
			k := s*100 + j
			eps = append(eps, ep{addr: fmt.Sprintf("198.18.%d.%d", 200+k/250, 1+k%250), hostname: fmt.Sprintf("churn-%d", k), ready: ptr(true)})
			q, err := query(fmt.Sprintf("churn-%d.churn.default.svc.%s.", k, testZone), mdns.TypeA).Pack()
			if err != nil {
				b.Fatal(err)
			}
			queries[k] = q
		}
		sl := slice("default", fmt.Sprintf("churn-%d", s), "churn", []discoveryv1.EndpointPort{slicePort("web", 80)}, eps...)
		slices = append(slices, sl)
		objs = append(objs, sl)
	}
	h, addr := serve(b, dns.Config{}, objs...)
	// The answers come over UDP, as a client gets them (the socket's cost
	// is the same before and after a change).
	c, err := net.Dial("udp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	resp := make([]byte, 512)
	ask := func(k int) []byte {
		if _, err := c.Write(queries[k]); err != nil {
			b.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(resp)
		if err != nil {
			b.Fatal(err)
		}
		return resp[:n]
	}
	for k := range queries {
		ask(k) // every name asked once, as under queries
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N)/1e3, "cpu-µs/op") }()
	for i := 0; i < b.N; i++ {
		k := (i%10)*100 + i%100
		sl := slices[k/100].DeepCopy()
		e := &sl.Endpoints[k%100]
		ready := !*e.Conditions.Ready
		e.Conditions.Ready = ptr(ready)
		slices[k/100] = sl
		h.Apply(sl)
		if answer {
			r := ask(k)
			if ready != (len(r) > 12 && r[6] == 0 && r[7] == 1) { // ANCOUNT: one address once ready
				b.Fatalf("churn-%d ready=%v: answer %x", k, ready, r)
			}
		}
	}
}
