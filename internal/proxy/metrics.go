package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics, in the default registry (the API server serves it on /metrics).
var (
	latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

	syncDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "headway_proxy_sync_duration_seconds",
		Help:    "Time one proxy sync takes: computing the changed Services' rules and applying them (nftables: one transaction).",
		Buckets: latencyBuckets,
	}, []string{"mode"})
	programmingLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "headway_proxy_programming_latency_seconds",
		Help:    "Time from the proxy receiving a Service or EndpointSlice change to the rules for it being in place.",
		Buckets: latencyBuckets,
	}, []string{"mode"})
	networkProgramming = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "headway_proxy_network_programming_duration_seconds",
		Help:    "Time from an EndpointSlice's last-change-trigger-time (the change in the cluster) to the rules for it being in place.",
		Buckets: latencyBuckets,
	}, []string{"mode"})
	syncsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "headway_proxy_syncs_total",
		Help: "Proxy syncs by mode and result (ok, error).",
	}, []string{"mode", "result"})
	servicePortsGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "headway_proxy_service_ports",
		Help: "Service ports the proxy has programmed (with endpoints or rejecting).",
	}, []string{"mode"})
	modeGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "headway_proxy_mode",
		Help: "1 for the mechanism the proxy runs with (nftables or userspace).",
	}, []string{"mode"})
)
