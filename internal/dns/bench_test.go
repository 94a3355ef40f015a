package dns_test

import (
	"fmt"
	"syscall"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

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
func BenchmarkIndexUpdate(b *testing.B) {
	h, err := dns.New(dns.Config{Zone: testZone, Metrics: dns.NewMetrics()})
	if err != nil {
		b.Fatal(err)
	}
	objs := []any{ns("default"), svc("default", "churn", "None", port("web", 80, "TCP"))}
	var slices []*discoveryv1.EndpointSlice
	for s := 0; s < 10; s++ {
		var eps []ep
		for j := 0; j < 100; j++ {
			k := s*100 + j
			eps = append(eps, ep{addr: fmt.Sprintf("198.18.%d.%d", 200+k/250, 1+k%250), hostname: fmt.Sprintf("churn-%d", k), ready: ptr(true)})
		}
		sl := slice("default", fmt.Sprintf("churn-%d", s), "churn", []discoveryv1.EndpointPort{slicePort("web", 80)}, eps...)
		slices = append(slices, sl)
		objs = append(objs, sl)
	}
	h.Apply(objs...)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N)/1e3, "cpu-µs/op") }()
	for i := 0; i < b.N; i++ {
		sl := slices[i%10].DeepCopy()
		e := &sl.Endpoints[i%100]
		e.Conditions.Ready = ptr(!*e.Conditions.Ready)
		slices[i%10] = sl
		h.Apply(sl)
	}
}
