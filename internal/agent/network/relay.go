package network

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// DNSRelay answers on the cluster DNS address (198.19.0.10:53, UDP and TCP)
// by passing each query to the cluster DNS server wherever it listens
// (127.0.0.1:10053 by default), so pods reach it at the address their
// resolv.conf names.
type DNSRelay struct {
	udp      *net.UDPConn
	tcp      *net.TCPListener
	upstream string
	// local is the relay's own address: queries are passed on from it, so
	// the DNS server sees a cluster address (one it offers recursion to)
	// rather than loopback.
	local netip.Addr
	log   *slog.Logger
}

// ListenDNSRelay binds listen (UDP and TCP) for relaying to upstream.
func ListenDNSRelay(listen netip.AddrPort, upstream string, log *slog.Logger) (*DNSRelay, error) {
	u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(listen))
	if err != nil {
		return nil, err
	}
	t, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(listen))
	if err != nil {
		u.Close()
		return nil, err
	}
	return &DNSRelay{udp: u, tcp: t, upstream: upstream, local: listen.Addr(), log: log}, nil
}

// Run relays until ctx ends, then closes the sockets.
func (r *DNSRelay) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		r.udp.Close()
		r.tcp.Close()
	}()
	go func() { defer wg.Done(); r.serveUDP(ctx, &wg) }()
	go func() { defer wg.Done(); r.serveTCP(ctx, &wg) }()
	wg.Wait()
}

func (r *DNSRelay) serveUDP(ctx context.Context, wg *sync.WaitGroup) {
	buf := make([]byte, 65535)
	for {
		n, from, err := r.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				r.log.Warn("DNS relay stopped", "err", err)
			}
			return
		}
		q := append([]byte(nil), buf[:n]...)
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.local, 0))}
			c, err := d.Dial("udp", r.upstream)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(q); err != nil {
				return
			}
			ans := make([]byte, 65535)
			m, err := c.Read(ans)
			if err != nil {
				return
			}
			r.udp.WriteToUDPAddrPort(ans[:m], from)
		}()
	}
}

func (r *DNSRelay) serveTCP(ctx context.Context, wg *sync.WaitGroup) {
	for {
		c, err := r.tcp.Accept()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				r.log.Warn("DNS relay stopped", "err", err)
			}
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(r.local, 0))}
			up, err := d.Dial("tcp", r.upstream)
			if err != nil {
				return
			}
			defer up.Close()
			stop := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
			defer stop()
			done := make(chan struct{})
			go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); close(done) }()
			io.Copy(c, up)
			c.Close()
			<-done
		}()
	}
}
