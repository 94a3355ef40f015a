package dns

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

// New returns a Handler for cfg. Its index is empty and unsynced (in-zone
// queries get SERVFAIL) until Run has listed the cluster once.
func New(cfg Config) (*Handler, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m := cfg.Metrics
	if m == nil {
		m = DefaultMetrics()
	}
	h := &Handler{cfg: cfg, ttl: uint32(cfg.TTL / time.Second), metrics: m}
	h.model = newModel(&h.cfg)
	h.zones = h.model.zones
	h.cluster = h.model.zone
	for off := 0; h.cluster.wire[off] != 0; off += 1 + int(h.cluster.wire[off]) {
		h.clusterLabels++
	}
	if len(cfg.Upstreams) > 0 {
		h.fwd = &forwarder{upstreams: cfg.Upstreams, allow: cfg.RecursionFrom, timeout: cfg.UpstreamTimeout, metrics: m}
	}
	h.idx.Store(h.model.cur)
	return h, nil
}

// Server serves a Handler on one address over UDP (one socket and read
// loop per core, SO_REUSEPORT) and TCP.
type Server struct {
	h     *Handler
	addr  netip.AddrPort
	udp   []*net.UDPConn
	tcp   *net.TCPListener
	async chan struct{} // bounds the goroutines answering through the network

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Listen binds addr (ip:port; port 0 picks one) for UDP and TCP.
func (h *Handler) Listen(addr string) (*Server, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("DNS listen address %q: want ip:port", addr)
	}
	s := &Server{h: h, async: make(chan struct{}, 1024), conns: map[net.Conn]struct{}{}}
	n := runtime.GOMAXPROCS(0)
	if !reusePortSupported {
		n = 1
	}
	for attempt := 0; ; attempt++ {
		err := s.bind(ap, n)
		if err == nil {
			return s, nil
		}
		if ap.Port() != 0 || attempt > 10 {
			return nil, err
		}
	}
}

func (s *Server) bind(ap netip.AddrPort, n int) error {
	lc := net.ListenConfig{Control: reusePort}
	ctx := context.Background()
	pc, err := lc.ListenPacket(ctx, "udp", ap.String())
	if err != nil {
		return fmt.Errorf("DNS over UDP on %s: %w", ap, err)
	}
	first := pc.(*net.UDPConn)
	port := first.LocalAddr().(*net.UDPAddr).Port
	bound := netip.AddrPortFrom(ap.Addr(), uint16(port))
	conns := []*net.UDPConn{first}
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for i := 1; i < n; i++ {
		pc, err := lc.ListenPacket(ctx, "udp", bound.String())
		if err != nil {
			break // one socket still serves
		}
		conns = append(conns, pc.(*net.UDPConn))
	}
	ln, err := net.Listen("tcp", bound.String())
	if err != nil {
		closeAll()
		return fmt.Errorf("DNS over TCP on %s: %w", bound, err)
	}
	s.udp, s.tcp, s.addr = conns, ln.(*net.TCPListener), bound
	return nil
}

// Addr is the bound address (UDP and TCP).
func (s *Server) Addr() netip.AddrPort { return s.addr }

// Serve answers queries until ctx ends, then closes the sockets and waits
// for every goroutine it started.
func (s *Server) Serve(ctx context.Context) error {
	for _, c := range s.udp {
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.udpLoop(ctx, c) }()
	}
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.acceptLoop(ctx) }()
	<-ctx.Done()
	for _, c := range s.udp {
		c.Close()
	}
	s.tcp.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) udpLoop(ctx context.Context, c *net.UDPConn) {
	buf := make([]byte, 65535)
	out := make([]byte, 0, 65535)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			continue
		}
		resp, act := s.h.serve(buf[:n], out, from.Addr().Unmap(), true)
		switch act {
		case actReply:
			c.WriteToUDPAddrPort(resp, from)
		case actAsync:
			s.goAsync(ctx, buf[:n], from.Addr().Unmap(), true, out, func(b []byte) { c.WriteToUDPAddrPort(b, from) })
		}
	}
}

// goAsync answers a query that needs the network in its own goroutine, or
// SERVFAIL at once when too many already wait.
func (s *Server) goAsync(ctx context.Context, req []byte, src netip.Addr, udp bool, out []byte, write func([]byte)) {
	select {
	case s.async <- struct{}{}:
	default:
		var q query
		if parse(req, &q) == 0 {
			write(s.h.reply(req, &q, out, rcodeServFail, false))
		}
		return
	}
	req = bytes.Clone(req)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.async }()
		if b := s.h.async(ctx, req, src, udp); b != nil {
			write(b)
		}
	}()
}

func (s *Server) acceptLoop(ctx context.Context) {
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors: back off
			continue
		}
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.tcpConn(ctx, c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

const tcpIdle = 10 * time.Second

func (s *Server) tcpConn(ctx context.Context, c net.Conn) {
	var src netip.Addr
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		src = ta.AddrPort().Addr().Unmap()
	}
	var wmu sync.Mutex
	write := func(b []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		frame := make([]byte, 2, 2+len(b))
		binary.BigEndian.PutUint16(frame, uint16(len(b)))
		c.SetWriteDeadline(time.Now().Add(tcpIdle))
		c.Write(append(frame, b...))
	}
	buf := make([]byte, 65535)
	out := make([]byte, 0, 65535)
	var lenb [2]byte
	for ctx.Err() == nil {
		c.SetReadDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, lenb[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenb[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		resp, act := s.h.serve(buf[:n], out, src, false)
		switch act {
		case actReply:
			write(resp)
		case actAsync:
			s.goAsync(ctx, buf[:n], src, false, out, write)
		case actDrop:
			return
		}
	}
}

// async answers a query that needs the network: names outside the cluster
// zones go upstream, and ExternalName CNAMEs are followed.
func (h *Handler) async(ctx context.Context, req []byte, src netip.Addr, udp bool) []byte {
	var q query
	if parse(req, &q) != 0 {
		return nil
	}
	r := new(mdns.Msg)
	if err := r.Unpack(req); err != nil || len(r.Question) != 1 {
		return nil
	}
	ix := h.idx.Load()
	n := ix.get(q.keyBytes())
	var resp *mdns.Msg
	if n != nil && n.cname != "" {
		resp = h.chase(ctx, ix, r, n, src)
	} else {
		resp = h.forward(ctx, r, !udp)
	}
	resp.Id = r.Id
	if udp {
		resp.Truncate(q.limit(true))
	}
	b, err := resp.Pack()
	if err != nil {
		return nil
	}
	if len(b) > 0 {
		h.metrics.count(q.qtype, int(b[3]&0xf))
	}
	return b
}

// forward sends r to the upstreams, in order, until one answers.
func (h *Handler) forward(ctx context.Context, r *mdns.Msg, tcp bool) *mdns.Msg {
	if resp := h.fwd.exchange(ctx, r, tcp); resp != nil {
		return resp
	}
	m := new(mdns.Msg)
	m.SetRcode(r, mdns.RcodeServerFailure)
	return m
}

// chase answers A, AAAA or TXT for an ExternalName Service: its CNAME,
// then the target's records — from the index when the target is in the
// cluster, from upstream otherwise (as CoreDNS does).
func (h *Handler) chase(ctx context.Context, ix *Index, r *mdns.Msg, n *node, src netip.Addr) *mdns.Msg {
	qtype := r.Question[0].Qtype
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	owner := r.Question[0].Name
	seen := map[string]bool{}
	for i := 0; i < 10 && n != nil && n.cname != ""; i++ {
		if seen[n.name] {
			break
		}
		seen[n.name] = true
		m.Answer = append(m.Answer, &mdns.CNAME{Hdr: mdns.RR_Header{Name: owner, Rrtype: mdns.TypeCNAME, Class: mdns.ClassINET, Ttl: h.ttl}, Target: n.cname})
		owner = n.cname
		target := n.cname
		n = ix.get([]byte(wireKey(target)))
		if n != nil {
			if n.cname != "" {
				continue
			}
			if slot := slotOf(qtype); slot >= 0 && n.has(slot) {
				m.Answer = append(m.Answer, h.msgFor(n, qtype).Answer...)
			}
			break
		}
		if h.model.zoneOf(target) != nil || h.fwd == nil || !h.fwd.allowed(src) {
			break
		}
		q := new(mdns.Msg)
		q.SetQuestion(target, qtype)
		if up := h.fwd.exchange(ctx, q, false); up != nil {
			m.Answer = append(m.Answer, up.Answer...)
		}
		break
	}
	return m
}

// forwarder sends queries for names outside the cluster zones upstream.
type forwarder struct {
	upstreams []string
	allow     []netip.Prefix
	timeout   time.Duration
	metrics   *Metrics
}

// allowed: only loopback and the configured ranges may recurse through us
// (no open resolver).
func (f *forwarder) allowed(src netip.Addr) bool {
	if src.IsLoopback() {
		return true
	}
	for _, p := range f.allow {
		if p.Contains(src) {
			return true
		}
	}
	return false
}

func (f *forwarder) exchange(ctx context.Context, r *mdns.Msg, tcp bool) *mdns.Msg {
	for _, u := range f.upstreams {
		c := &mdns.Client{Net: "udp", Timeout: f.timeout}
		if tcp {
			c.Net = "tcp"
		}
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		resp, _, err := c.ExchangeContext(ctx, r, u)
		if err == nil && resp.Truncated && !tcp {
			c.Net = "tcp"
			if r2, _, err2 := c.ExchangeContext(ctx, r, u); err2 == nil {
				resp = r2
			}
		}
		cancel()
		if err == nil && resp != nil {
			f.metrics.Forwarded.WithLabelValues("ok").Inc()
			return resp
		}
		f.metrics.Forwarded.WithLabelValues("error").Inc()
	}
	return nil
}

// Exchange sends one query to addr over "udp" or "tcp" (tests and tools).
func Exchange(ctx context.Context, network, addr string, m *mdns.Msg) (*mdns.Msg, error) {
	c := &mdns.Client{Net: network, Timeout: 5 * time.Second, UDPSize: 65535}
	r, _, err := c.ExchangeContext(ctx, m, addr)
	return r, err
}
