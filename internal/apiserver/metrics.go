package apiserver

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	requestsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "apiserver_request_total",
		Help: "API requests by verb, resource and HTTP code.",
	}, []string{"verb", "group", "resource", "subresource", "code"})
	requestDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "apiserver_request_duration_seconds",
		Help:    "API request latency by verb and resource (watches excluded).",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
	}, []string{"verb", "group", "resource"})
	undecodableObjects = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "headway_apiserver_undecodable_objects_total",
		Help: "Stored objects that could not be decoded when read (skipped in lists and watches).",
	}, []string{"group", "resource"})
)

// statusRecorder remembers the response code.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack hands the connection over (SPDY and WebSocket upgrades).
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("the connection cannot be upgraded (HTTP/2?)")
	}
	s.code = http.StatusSwitchingProtocols
	return h.Hijack()
}

// Unwrap lets http.ResponseController reach the underlying writer (hijack).
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument counts and times a resource request.
func instrument(w http.ResponseWriter, info requestInfo, serve func(http.ResponseWriter)) {
	rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
	start := time.Now()
	serve(rec)
	requestsTotal.WithLabelValues(info.Verb, info.Group, info.Resource, info.Subresource, strconv.Itoa(rec.code)).Inc()
	if info.Verb != "watch" {
		requestDuration.WithLabelValues(info.Verb, info.Group, info.Resource).Observe(time.Since(start).Seconds())
	}
}

// metricsHandler serves /metrics from the default registry (every
// component registers there).
func metricsHandler() http.Handler { return promhttp.Handler() }
