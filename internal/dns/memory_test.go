package dns_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/headway/headway/internal/dns"
)

// memoryFixture is bench/dns' memory run: services headless Services in
// namespace many, each with one EndpointSlice of per ready endpoints named
// p-<j>.
func memoryFixture(services, per int) []any {
	objs := []any{ns("many")}
	for i := 0; i < services; i++ {
		name := fmt.Sprintf("many-%d", i)
		var eps []ep
		for j := 0; j < per; j++ {
			k := i*per + j
			eps = append(eps, ep{addr: fmt.Sprintf("198.%d.%d.%d", 18+(k>>16), (k>>8)&255, k&255), hostname: fmt.Sprintf("p-%d", j)})
		}
		objs = append(objs, svc("many", name, "None", port("web", 80, corev1.ProtocolTCP)),
			slice("many", name+"-1", name, []discoveryv1.EndpointPort{slicePort("web", 80)}, eps...))
	}
	return objs
}

// BenchmarkIndexMemory: the heap the DNS index and its model keep for
// bench/dns' two memory fixtures (10,000 Services of 10 endpoints, 2,000 of
// 50), the objects themselves left out (they are the informers'). Run with
// -benchtime 1x; HEADWAY_DNS_HEAPPROFILE=dir writes each fixture's heap
// profile there (go tool pprof -sample_index inuse_space).
func BenchmarkIndexMemory(b *testing.B) {
	for _, f := range []struct{ services, per int }{{10000, 10}, {2000, 50}} {
		b.Run(fmt.Sprintf("%dx%d", f.services, f.per), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				objs := memoryFixture(f.services, f.per)
				h, err := dns.New(dns.Config{Zone: testZone, Metrics: dns.NewMetrics()})
				if err != nil {
					b.Fatal(err)
				}
				h.Apply(objs...)
				// What the objects hold is the informers' share.
				objs = nil
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				if dir := os.Getenv("HEADWAY_DNS_HEAPPROFILE"); dir != "" {
					f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%dx%d.pprof", f.services, f.per)))
					if err != nil {
						b.Fatal(err)
					}
					pprof.WriteHeapProfile(f)
					f.Close()
				}
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB")
				runtime.KeepAlive(h)
			}
		})
	}
}
