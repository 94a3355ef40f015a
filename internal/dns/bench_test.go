package dns_test

import (
	"fmt"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/headway/headway/internal/dns"
)

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
	for i := 0; i < b.N; i++ {
		sl := slices[i%10].DeepCopy()
		e := &sl.Endpoints[i%100]
		e.Conditions.Ready = ptr(!*e.Conditions.Ready)
		slices[i%10] = sl
		h.Apply(sl)
	}
}
