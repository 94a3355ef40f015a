package dns

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var typeNames = [...]string{"A", "AAAA", "SRV", "PTR", "TXT", "CNAME", "NS", "SOA", "MX", "ANY", "other"}
var rcodeNames = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "other"}

func typeBucket(qtype uint16) int {
	switch qtype {
	case 1:
		return 0
	case 28:
		return 1
	case 33:
		return 2
	case 12:
		return 3
	case 16:
		return 4
	case 5:
		return 5
	case 2:
		return 6
	case 6:
		return 7
	case 15:
		return 8
	case 255:
		return 9
	}
	return 10
}

// Metrics are the DNS server's Prometheus metrics. The query counters are
// plain atomics read at scrape time, so counting costs the hot path one
// atomic add.
type Metrics struct {
	counts [len(typeNames)][len(rcodeNames)]atomic.Uint64
	desc   *prometheus.Desc

	// ProgrammingLatency is the time from a change (an EndpointSlice's
	// endpoints.kubernetes.io/last-change-trigger-time, else when Headway
	// received it) to the first answer that carries it.
	ProgrammingLatency prometheus.Histogram
	// IndexUpdate is how long folding a batch of changes into a new index
	// and publishing it takes.
	IndexUpdate prometheus.Histogram
	// Names is how many names the published index holds.
	Names prometheus.Gauge
	// Forwarded counts queries sent to the upstream resolvers, by result.
	Forwarded *prometheus.CounterVec
	// tcpShed counts TCP connections closed to make room (MaxTCPConns).
	tcpShed prometheus.Counter
}

// NewMetrics returns unregistered metrics.
func NewMetrics() *Metrics {
	return &Metrics{
		desc: prometheus.NewDesc("headway_dns_requests_total", "DNS queries answered, by query type and response code.", []string{"type", "rcode"}, nil),
		ProgrammingLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "headway_dns_programming_latency_seconds",
			Help:    "Time from a cluster change (EndpointSlice trigger time, else receipt) to the first DNS answer that contains it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		IndexUpdate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "headway_dns_index_update_duration_seconds",
			Help:    "Time to fold a batch of informer events into a new DNS index and publish it.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
		}),
		Names: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "headway_dns_index_names",
			Help: "Names held by the published DNS index.",
		}),
		Forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headway_dns_forward_requests_total",
			Help: "Queries for names outside the cluster zones sent upstream, by result (ok, error, refused, busy).",
		}, []string{"result"}),
		tcpShed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "headway_dns_tcp_connections_shed_total",
			Help: "TCP connections closed because the connection limit was reached.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.desc
	m.ProgrammingLatency.Describe(ch)
	m.IndexUpdate.Describe(ch)
	m.Names.Describe(ch)
	m.Forwarded.Describe(ch)
	m.tcpShed.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for t := range m.counts {
		for r := range m.counts[t] {
			if v := m.counts[t][r].Load(); v > 0 {
				ch <- prometheus.MustNewConstMetric(m.desc, prometheus.CounterValue, float64(v), typeNames[t], rcodeNames[r])
			}
		}
	}
	m.ProgrammingLatency.Collect(ch)
	m.IndexUpdate.Collect(ch)
	m.Names.Collect(ch)
	m.Forwarded.Collect(ch)
	m.tcpShed.Collect(ch)
}

// Count returns how many queries of qtype were answered with rcode.
func (m *Metrics) Count(qtype uint16, rcode int) uint64 {
	r := rcode
	if r < 0 || r >= len(rcodeNames)-1 {
		r = len(rcodeNames) - 1
	}
	return m.counts[typeBucket(qtype)][r].Load()
}

func (m *Metrics) count(qtype uint16, rcode int) {
	r := rcode
	if r < 0 || r >= len(rcodeNames)-1 {
		r = len(rcodeNames) - 1
	}
	m.counts[typeBucket(qtype)][r].Add(1)
}

func (m *Metrics) observeChange(c *changeMark) {
	if c == nil || c.done.Load() || !c.done.CompareAndSwap(false, true) {
		return
	}
	m.ProgrammingLatency.Observe(time.Since(c.at).Seconds())
}

var (
	defaultMetricsOnce sync.Once
	defaultMetrics     *Metrics
)

// DefaultMetrics are the process's metrics, registered once with the default
// Prometheus registry (what /metrics serves).
func DefaultMetrics() *Metrics {
	defaultMetricsOnce.Do(func() {
		defaultMetrics = NewMetrics()
		prometheus.MustRegister(defaultMetrics)
	})
	return defaultMetrics
}
