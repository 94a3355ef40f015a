package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// userspace is the fallback mechanism: a TCP and UDP forwarder listening on
// each cluster IP:port (the service range is routed locally, so the node
// owns those addresses) and on node ports, passing connections to the
// endpoints round robin, with ClientIP affinity. A port with no endpoints
// has no listener, so the kernel refuses connections to it at once.
type userspace struct {
	ns  NetNS
	log *slog.Logger

	mu       sync.Mutex
	ports    map[string]*usPort  // by ServicePort.ID()
	services map[string][]string // Service key → port IDs
	wg       sync.WaitGroup
}

// usUDPIdle is how long a UDP flow without traffic keeps its backend socket.
const usUDPIdle = 30 * time.Second

func newUserspace(ns NetNS, log *slog.Logger) *userspace {
	return &userspace{ns: ns, log: log, ports: map[string]*usPort{}, services: map[string][]string{}}
}

func (u *userspace) name() string { return ModeUserspace }

// usPort forwards one service port.
type usPort struct {
	u  *userspace
	sp atomic.Pointer[ServicePort]
	rr atomic.Uint32

	mu        sync.Mutex
	closers   []io.Closer // listeners and UDP sockets
	conns     map[io.Closer]struct{}
	affinity  map[netip.Addr]affinityEntry
	listening bool
	bound     ServicePort // the addresses the listeners are on
}

type affinityEntry struct {
	ep      Endpoint
	expires time.Time
}

func (u *userspace) Apply(changes map[string][]ServicePort) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	var errs []error
	for key, ports := range changes {
		want := map[string]bool{}
		for _, sp := range ports {
			id := sp.ID()
			want[id] = true
			p := u.ports[id]
			if p == nil {
				p = &usPort{u: u, conns: map[io.Closer]struct{}{}, affinity: map[netip.Addr]affinityEntry{}}
				u.ports[id] = p
			}
			if err := p.update(sp); err != nil {
				errs = append(errs, err)
			}
		}
		for _, id := range u.services[key] {
			if !want[id] {
				u.ports[id].close()
				delete(u.ports, id)
			}
		}
		if len(want) == 0 {
			delete(u.services, key)
			continue
		}
		ids := make([]string, 0, len(want))
		for id := range want {
			ids = append(ids, id)
		}
		u.services[key] = ids
	}
	return errors.Join(errs...)
}

// update switches the port to sp: listeners open while it has endpoints.
func (p *usPort) update(sp ServicePort) error {
	p.sp.Store(&sp)
	p.mu.Lock()
	defer p.mu.Unlock()
	moved := p.listening && (p.bound.ClusterIP != sp.ClusterIP || p.bound.NodePort != sp.NodePort)
	if p.listening && (len(sp.Endpoints) == 0 || moved) {
		p.closeListenersLocked()
	}
	if !p.listening && len(sp.Endpoints) > 0 {
		if err := p.listenLocked(sp); err != nil {
			p.closeListenersLocked()
			return err
		}
	}
	return nil
}

func (p *usPort) closeListenersLocked() {
	for _, c := range p.closers {
		c.Close()
	}
	p.closers = nil
	p.listening = false
}

// close stops listening and ends the port's connections.
func (p *usPort) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeListenersLocked()
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[io.Closer]struct{}{}
}

func freebind(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func (p *usPort) listenLocked(sp ServicePort) error {
	addrs := []string{netip.AddrPortFrom(sp.ClusterIP, sp.Port).String()}
	if sp.NodePort != 0 {
		addrs = append(addrs, fmt.Sprintf("0.0.0.0:%d", sp.NodePort))
	}
	lc := net.ListenConfig{Control: freebind}
	for _, a := range addrs {
		err := p.u.ns.Do(func() error {
			if sp.Protocol == corev1.ProtocolUDP {
				c, err := lc.ListenPacket(context.Background(), "udp4", a)
				if err != nil {
					return err
				}
				p.closers = append(p.closers, c)
				p.u.wg.Add(1)
				go func() { defer p.u.wg.Done(); p.serveUDP(c.(*net.UDPConn)) }()
				return nil
			}
			ln, err := lc.Listen(context.Background(), "tcp4", a)
			if err != nil {
				return err
			}
			p.closers = append(p.closers, ln)
			p.u.wg.Add(1)
			go func() { defer p.u.wg.Done(); p.serveTCP(ln) }()
			return nil
		})
		if err != nil {
			return fmt.Errorf("userspace proxy for %s: listening on %s: %w", sp.ID(), a, err)
		}
	}
	p.listening = true
	p.bound = sp
	return nil
}

// pick chooses the endpoint for a client: its affinity entry while fresh,
// else the next one round robin.
func (p *usPort) pick(client netip.Addr) (Endpoint, bool) {
	sp := p.sp.Load()
	if len(sp.Endpoints) == 0 {
		return Endpoint{}, false
	}
	if sp.AffinityTimeout > 0 {
		p.mu.Lock()
		defer p.mu.Unlock()
		now := time.Now()
		if e, ok := p.affinity[client]; ok && now.Before(e.expires) {
			for _, ep := range sp.Endpoints {
				if ep == e.ep {
					p.affinity[client] = affinityEntry{ep: ep, expires: now.Add(sp.AffinityTimeout)}
					return ep, true
				}
			}
		}
		ep := sp.Endpoints[int(p.rr.Add(1)-1)%len(sp.Endpoints)]
		p.affinity[client] = affinityEntry{ep: ep, expires: now.Add(sp.AffinityTimeout)}
		if len(p.affinity) > 4096 {
			for k, e := range p.affinity {
				if now.After(e.expires) {
					delete(p.affinity, k)
				}
			}
		}
		return ep, true
	}
	return sp.Endpoints[int(p.rr.Add(1)-1)%len(sp.Endpoints)], true
}

func (p *usPort) track(c io.Closer) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.listening {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *usPort) untrack(c io.Closer) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *usPort) serveTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		p.u.wg.Add(1)
		go func() { defer p.u.wg.Done(); p.forwardTCP(c.(*net.TCPConn)) }()
	}
}

func (p *usPort) forwardTCP(in *net.TCPConn) {
	defer in.Close()
	client := in.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	ep, ok := p.pick(client)
	var out net.Conn
	var err error
	if ok {
		err = p.u.ns.Do(func() error {
			out, err = net.DialTimeout("tcp4", ep.String(), 5*time.Second)
			return err
		})
	}
	if !ok || err != nil {
		in.SetLinger(0) // a reset, as a refused connection
		return
	}
	defer out.Close()
	if !p.track(in) {
		return
	}
	defer p.untrack(in)
	done := make(chan struct{})
	go func() {
		io.Copy(out, in)
		out.(*net.TCPConn).CloseWrite()
		close(done)
	}()
	io.Copy(in, out)
	in.CloseWrite()
	<-done
}

// serveUDP keeps one connected backend socket per client address.
func (p *usPort) serveUDP(c *net.UDPConn) {
	type flow struct{ out *net.UDPConn }
	var mu sync.Mutex
	flows := map[netip.AddrPort]*flow{}
	var wg sync.WaitGroup
	defer func() {
		mu.Lock()
		for _, f := range flows {
			f.out.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		mu.Lock()
		f := flows[from]
		mu.Unlock()
		if f == nil {
			ep, ok := p.pick(from.Addr().Unmap())
			if !ok {
				continue
			}
			var out *net.UDPConn
			err := p.u.ns.Do(func() error {
				var err error
				out, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ep.IP, ep.Port)))
				return err
			})
			if err != nil {
				continue
			}
			f = &flow{out: out}
			mu.Lock()
			flows[from] = f
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				rbuf := make([]byte, 65535)
				for {
					out.SetReadDeadline(time.Now().Add(usUDPIdle))
					n, err := out.Read(rbuf)
					if err != nil {
						break
					}
					if _, err := c.WriteToUDPAddrPort(rbuf[:n], from); err != nil {
						break
					}
				}
				mu.Lock()
				if flows[from] == f {
					delete(flows, from)
				}
				mu.Unlock()
				out.Close()
			}()
		}
		f.out.Write(buf[:n])
	}
}

// Cleanup closes every listener and connection and waits for them.
func (u *userspace) Cleanup() error {
	u.mu.Lock()
	for id, p := range u.ports {
		p.close()
		delete(u.ports, id)
	}
	u.services = map[string][]string{}
	u.mu.Unlock()
	u.wg.Wait()
	return nil
}

// Close is Cleanup: a userspace forwarder cannot outlive its process.
func (u *userspace) Close() { u.Cleanup() }
