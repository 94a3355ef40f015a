package dns

import (
	"bytes"
	"container/list"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Server serves a Handler on one address over UDP (one socket and read
// loop per core, SO_REUSEPORT) and TCP.
type Server struct {
	h     *Handler
	addr  netip.AddrPort
	udp   []*net.UDPConn
	tcp   *net.TCPListener
	async chan struct{} // bounds the goroutines answering through the network

	mu    sync.Mutex
	conns map[net.Conn]*list.Element // open TCP connections, in order (oldest first)
	order *list.List
	wg    sync.WaitGroup
}

// Listen binds addr (ip:port; port 0 picks one) for UDP and TCP.
func (h *Handler) Listen(addr string) (*Server, error) {
	return h.listen(addr, reusePort, nil)
}

// ListenNonLocal is Listen for an address the host may not have yet (the
// DNS Service address, which the node agent puts on lo): the sockets are
// bound with IP_FREEBIND and answer once the address is there. Several
// servers may share one Handler.
func (h *Handler) ListenNonLocal(addr string) (*Server, error) {
	return h.listen(addr, func(network, address string, c syscall.RawConn) error {
		if err := reusePort(network, address, c); err != nil {
			return err
		}
		return freeBind(network, address, c)
	}, freeBind)
}

// ServerOn makes a Server of sockets bound elsewhere (a pod's, in its network
// namespace): one UDP socket and a TCP listener on the same address. Its
// Serve closes them when it returns.
func (h *Handler) ServerOn(udp *net.UDPConn, tcp *net.TCPListener) *Server {
	s := h.newServer()
	s.addr, s.udp, s.tcp = udp.LocalAddr().(*net.UDPAddr).AddrPort(), []*net.UDPConn{udp}, tcp
	return s
}

// newServer is a Server of h without sockets yet.
func (h *Handler) newServer() *Server {
	return &Server{h: h, async: make(chan struct{}, 1024), conns: map[net.Conn]*list.Element{}, order: list.New()}
}

// control sets socket options before a bind.
type control func(network, address string, c syscall.RawConn) error

// listen binds addr with udp's options on the UDP sockets and tcp's on the
// TCP listener (nil: none).
func (h *Handler) listen(addr string, udp, tcp control) (*Server, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("DNS listen address %q: want ip:port", addr)
	}
	s := h.newServer()
	n := runtime.GOMAXPROCS(0)
	if !reusePortSupported {
		n = 1
	}
	for attempt := 0; ; attempt++ {
		err := s.bind(ap, n, udp, tcp)
		if err == nil {
			return s, nil
		}
		if ap.Port() != 0 || attempt > 10 {
			return nil, err
		}
	}
}

func (s *Server) bind(ap netip.AddrPort, n int, udp, tcp control) error {
	lc := net.ListenConfig{Control: udp}
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
	ln, err := (&net.ListenConfig{Control: tcp}).Listen(ctx, "tcp", bound.String())
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
	if b := newUDPBatch(c); b != nil {
		s.udpBatchLoop(ctx, c, b)
		return
	}
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

// udpBatchLoop is udpLoop with the queries read and answered in batches
// (recvmmsg, sendmmsg): the queries waiting at once are answered in turn,
// then sent together.
func (s *Server) udpBatchLoop(ctx context.Context, c *net.UDPConn, b *udpBatch) {
	for {
		n, err := b.read()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			continue
		}
		for i := range n {
			req := b.query(i)
			from := b.source(i)
			resp, act := s.h.serve(req, b.answerBuf(i), from.Addr().Unmap(), true)
			switch act {
			case actReply:
				b.queue(i, resp)
			case actAsync:
				s.goAsync(ctx, req, from.Addr().Unmap(), true, b.answerBuf(i), func(r []byte) { c.WriteToUDPAddrPort(r, from) })
			}
		}
		if err := b.flush(); err != nil && (errors.Is(err, net.ErrClosed) || ctx.Err() != nil) {
			return
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
		if parseQuery(req, &q) == 0 {
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
		var oldest net.Conn
		if len(s.conns) >= s.h.cfg.MaxTCPConns {
			// At the cap the oldest connection makes room: a client
			// holding connections open cannot lock others out.
			e := s.order.Front()
			oldest = e.Value.(net.Conn)
			s.order.Remove(e)
			delete(s.conns, oldest)
		}
		s.conns[c] = s.order.PushBack(c)
		s.mu.Unlock()
		if oldest != nil {
			s.h.metrics.tcpShed.Inc()
			oldest.Close()
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.tcpConn(ctx, c)
			s.mu.Lock()
			if e, ok := s.conns[c]; ok {
				s.order.Remove(e)
				delete(s.conns, c)
			}
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// tcpConn answers the queries of one TCP connection until it is idle for
// TCPIdleTimeout. Its buffers start small and grow to the largest query
// and answer it has seen (a connection costs little until it asks much).
func (s *Server) tcpConn(ctx context.Context, c net.Conn) {
	idle := s.h.cfg.TCPIdleTimeout
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
		c.SetWriteDeadline(time.Now().Add(idle))
		c.Write(append(frame, b...))
	}
	var buf, out []byte
	var lenb [2]byte
	for ctx.Err() == nil {
		c.SetReadDeadline(time.Now().Add(idle))
		if _, err := io.ReadFull(c, lenb[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenb[:]))
		if cap(buf) < n {
			buf = make([]byte, max(n, 512))
		}
		if out == nil {
			out = make([]byte, 0, 512)
		}
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
