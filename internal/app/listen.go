package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// podAPIAddr is the address pods reach the API on, as the kubernetes
// Service's endpoint: the bridge's gateway address on a node that runs
// pods, at the API's port. It is not valid with --runtime none (no pods)
// and when the gateway is unknown.
func podAPIAddr(cfg Config, port int) netip.AddrPort {
	if cfg.Runtime == "none" || !cfg.Gateway.IsValid() {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(cfg.Gateway, uint16(port))
}

// listenUnspecified reports whether host (of --listen) is every address.
func listenUnspecified(host string) bool {
	if host == "" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsUnspecified()
}

// listenFreebind listens on addr even before the address exists on this
// machine (IP_FREEBIND): the gateway address appears when the node agent
// makes the bridge, after the API has started.
func listenFreebind(ctx context.Context, addr netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if addr.Addr().Is4() {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			}
		})
		return errors.Join(err, serr)
	}}
	return lc.Listen(ctx, "tcp", addr.String())
}

// multiListener accepts on several listeners as one: the API's own
// address and the address pods reach it on.
type multiListener struct {
	lns    []net.Listener
	conns  chan net.Conn
	errs   chan error
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// joinListeners serves lns as one listener; its Addr is the first's.
func joinListeners(lns ...net.Listener) net.Listener {
	if len(lns) == 1 {
		return lns[0]
	}
	m := &multiListener{lns: lns, conns: make(chan net.Conn), errs: make(chan error, len(lns)), closed: make(chan struct{})}
	for _, ln := range lns {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			for {
				c, err := ln.Accept()
				if err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue
					}
					select {
					case m.errs <- err:
					case <-m.closed:
					}
					return
				}
				select {
				case m.conns <- c:
				case <-m.closed:
					c.Close()
					return
				}
			}
		}()
	}
	return m
}

func (m *multiListener) Accept() (net.Conn, error) {
	select {
	case c := <-m.conns:
		return c, nil
	case err := <-m.errs:
		return nil, err
	case <-m.closed:
		return nil, net.ErrClosed
	}
}

func (m *multiListener) Close() error {
	var err error
	m.once.Do(func() {
		close(m.closed)
		for _, ln := range m.lns {
			err = errors.Join(err, ln.Close())
		}
		m.wg.Wait()
	})
	return err
}

func (m *multiListener) Addr() net.Addr { return m.lns[0].Addr() }

// listenAPI listens on --listen and, where pods run and --listen does not
// already cover it, on the address pods reach the API on (the same port).
// podAddr is that address, invalid when pods cannot reach the API.
func listenAPI(ctx context.Context, cfg Config) (ln net.Listener, podAddr netip.AddrPort, err error) {
	main, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, podAddr, fmt.Errorf("listening on %s: %w (is another server running? pick another address with --listen)", cfg.Listen, err)
	}
	port := main.Addr().(*net.TCPAddr).Port
	podAddr = podAPIAddr(cfg, port)
	if !podAddr.IsValid() {
		return main, podAddr, nil
	}
	host, _, _ := net.SplitHostPort(cfg.Listen)
	if listenUnspecified(host) || host == podAddr.Addr().String() {
		return main, podAddr, nil
	}
	pods, err := listenFreebind(ctx, podAddr)
	if err != nil {
		main.Close()
		return nil, netip.AddrPort{}, fmt.Errorf("listening on %s, where pods reach the API: %w (another server with the same --cluster-cidr and port? give it another --cluster-cidr, or --listen 0.0.0.0:PORT)", podAddr, err)
	}
	return joinListeners(main, pods), podAddr, nil
}
