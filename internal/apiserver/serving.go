package apiserver

// What clients can hold of the server: connections, requests in flight,
// time to send a request. Flooding it with connections or requests gets
// the flood shed; the health endpoints keep answering.

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// ServingLimits bound what clients can hold of the server. Zero fields
// take the defaults (DefaultServingLimits); a negative limit turns it off.
type ServingLimits struct {
	// MaxConnections caps the open client connections. When it is reached
	// a new connection closes the oldest one that is idle or has not sent
	// a request yet; when every connection is busy the new one is closed.
	MaxConnections int
	// MaxRequestsInFlight and MaxMutatingRequestsInFlight cap the requests
	// being served, reads and writes, as kube-apiserver's
	// --max-requests-inflight and --max-mutating-requests-inflight do:
	// past them a request gets 429 with Retry-After: 1. Long-running
	// requests (watches, exec, attach, port-forward, logs, proxy) and the
	// health endpoints are not counted.
	MaxRequestsInFlight         int
	MaxMutatingRequestsInFlight int
	// IdleTimeout closes a keep-alive connection that has no request.
	IdleTimeout time.Duration
	// ReadHeaderTimeout bounds the TLS handshake and a request's headers.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds the reading of a request's body.
	BodyTimeout time.Duration
}

// DefaultServingLimits are kube-apiserver's (in-flight limits, the HTTP
// server's timeouts), with a connection cap well within a default
// descriptor limit.
func DefaultServingLimits() ServingLimits {
	return ServingLimits{
		MaxConnections:              4096,
		MaxRequestsInFlight:         400,
		MaxMutatingRequestsInFlight: 200,
		IdleTimeout:                 90 * time.Second,
		ReadHeaderTimeout:           32 * time.Second,
		BodyTimeout:                 60 * time.Second,
	}
}

func (l *ServingLimits) defaults() {
	d := DefaultServingLimits()
	if l.MaxConnections == 0 {
		l.MaxConnections = d.MaxConnections
	}
	if l.MaxRequestsInFlight == 0 {
		l.MaxRequestsInFlight = d.MaxRequestsInFlight
	}
	if l.MaxMutatingRequestsInFlight == 0 {
		l.MaxMutatingRequestsInFlight = d.MaxMutatingRequestsInFlight
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.ReadHeaderTimeout == 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.BodyTimeout == 0 {
		l.BodyTimeout = d.BodyTimeout
	}
}

var (
	connectionsShed = promauto.NewCounter(prometheus.CounterOpts{
		Name: "headway_apiserver_connections_shed_total",
		Help: "Client connections closed because the connection limit was reached.",
	})
	requestsDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "apiserver_dropped_requests_total",
		Help: "Requests answered 429 because the in-flight limit was reached.",
	}, []string{"request_kind"})
)

// connLimiter tracks the server's connections, oldest first, with the
// state the HTTP server last reported for each.
type connLimiter struct {
	max   int // no cap when not positive
	mu    sync.Mutex
	conns *list.List // of *limitedConn
}

// limitedConn is a connection the limiter tracks.
type limitedConn struct {
	net.Conn
	l     *connLimiter
	elem  *list.Element // nil once removed
	state http.ConnState
	once  sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.elem != nil {
			c.l.conns.Remove(c.elem)
			c.elem = nil
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// limitListener accepts through a connLimiter.
type limitListener struct {
	net.Listener
	l *connLimiter
}

func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		raw, err := ln.Listener.Accept()
		if err != nil {
			if isFDExhaustion(err) {
				// Out of descriptors after all (other files of the
				// process): let some close rather than spin.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return nil, err
		}
		c := &limitedConn{Conn: newRecordConn(raw), l: ln.l, state: http.StateNew}
		victim, ok := ln.l.add(c)
		if victim != nil {
			connectionsShed.Inc()
			victim.Close()
		}
		if !ok {
			connectionsShed.Inc()
			c.Close()
			continue
		}
		return c, nil
	}
}

func isFDExhaustion(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se) && (strings.Contains(se.Err.Error(), "too many open files"))
}

// add tracks c. At the limit it returns the oldest connection that is
// idle or new to close in its place, or ok=false when every connection is
// busy (c must then be closed).
func (l *connLimiter) add(c *limitedConn) (victim *limitedConn, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.conns.Len() >= l.max {
		for e := l.conns.Front(); e != nil; e = e.Next() {
			o := e.Value.(*limitedConn)
			if o.state == http.StateNew || o.state == http.StateIdle {
				victim = o
				l.conns.Remove(e)
				o.elem = nil
				break
			}
		}
		if victim == nil {
			return nil, false
		}
	}
	c.elem = l.conns.PushBack(c)
	return victim, true
}

// setState is the HTTP server's ConnState hook.
func (l *connLimiter) setState(nc net.Conn, st http.ConnState) {
	if wc, ok := nc.(*windowConn); ok {
		nc = wc.Conn
	}
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, ok := nc.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	c.state = st
	l.mu.Unlock()
}

// closeIdle closes every tracked connection that is idle (no request in
// flight): the server's stop does not wait for those.
func (l *connLimiter) closeIdle() {
	l.mu.Lock()
	var idle []*limitedConn
	for e := l.conns.Front(); e != nil; e = e.Next() {
		if c := e.Value.(*limitedConn); c.state == http.StateIdle {
			idle = append(idle, c)
		}
	}
	l.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// open is the number of tracked connections.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns.Len()
}

// OpenConnections is the number of client connections the server holds
// (-1 without a connection limit, or before Serve).
func (s *Server) OpenConnections() int {
	s.connsMu.Lock()
	l := s.conns
	s.connsMu.Unlock()
	if l == nil || l.max <= 0 {
		return -1
	}
	return l.open()
}

// inflight caps the requests being served, as kube-apiserver's
// WithMaxInFlightLimit does.
type inflight struct {
	reads, writes chan struct{}
}

func newInflight(l ServingLimits) *inflight {
	f := &inflight{}
	if l.MaxRequestsInFlight > 0 {
		f.reads = make(chan struct{}, l.MaxRequestsInFlight)
	}
	if l.MaxMutatingRequestsInFlight > 0 {
		f.writes = make(chan struct{}, l.MaxMutatingRequestsInFlight)
	}
	return f
}

// longRunning are the requests kube-apiserver does not count in flight:
// watches and the streaming subresources.
func longRunning(r *http.Request) bool {
	info, ok := parseRequestInfo(r)
	if !ok {
		return false
	}
	if info.Verb == "watch" {
		return true
	}
	switch info.Subresource {
	case "exec", "attach", "portforward", "log", "proxy":
		return true
	}
	return false
}

// mutating tells a write from a read, by method as kube-apiserver's verbs
// do (get, list, watch are reads).
func mutating(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

func (s *Server) limitInflight(next http.Handler) http.Handler {
	f := s.inflight
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if anonymousPath(r.URL.Path) || longRunning(r) {
			next.ServeHTTP(w, r)
			return
		}
		c, kind := f.reads, "readOnly"
		if mutating(r) {
			c, kind = f.writes, "mutating"
		}
		if c == nil {
			next.ServeHTTP(w, r)
			return
		}
		select {
		case c <- struct{}{}:
			defer func() { <-c }()
			next.ServeHTTP(w, r)
		default:
			requestsDropped.WithLabelValues(kind).Inc()
			w.Header().Set("Retry-After", "1")
			http.Error(w, "Too many requests, please try again later.", http.StatusTooManyRequests)
		}
	})
}

// bodyDeadline gives a request body BodyTimeout to arrive (a client that
// sends headers and then trickles or stalls holds nothing longer). The
// deadline is lifted once the body is read, so a slow answer is not cut.
// Streams (exec, attach, port-forward upgrades) are left alone.
func (s *Server) bodyDeadline(w http.ResponseWriter, r *http.Request) {
	d := s.cfg.Limits.BodyTimeout
	if d <= 0 || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 || r.Header.Get("Upgrade") != "" || longRunning(r) {
		return
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(d)) != nil {
		return
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc, timeout: d}
}

// bodyTimeoutOf is the body deadline of r, for the message.
func bodyTimeoutOf(r *http.Request) time.Duration {
	if b, ok := r.Body.(*deadlineBody); ok {
		return b.timeout
	}
	return 0
}

// deadlineBody lifts the read deadline when the body has been read.
type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	done    bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// serverLog is the HTTP server's error log: its lines at Warn, but for the
// ones a client causes at will (a connection closed or shed mid-handshake)
// at Debug, so a flood of connections is not also a flood of log lines.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	l.log.Log(context.Background(), level, msg)
	return len(p), nil
}
