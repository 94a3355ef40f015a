package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// Probe asks the server, over UDP on its own address, for the cluster
// zone's SOA: nil when it answers NOERROR, an error naming the address
// otherwise (SERVFAIL until the index has listed the cluster once).
func (s *Server) Probe(ctx context.Context) error {
	addr := s.addr
	if addr.Addr().IsUnspecified() {
		lo := netip.IPv6Loopback()
		if addr.Addr().Is4() {
			lo = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
		addr = netip.AddrPortFrom(lo, addr.Port())
	}
	m := new(mdns.Msg)
	m.SetQuestion(s.h.cfg.Zone, mdns.TypeSOA)
	c := &mdns.Client{Net: "udp", Timeout: time.Second}
	if d, ok := ctx.Deadline(); ok {
		c.Timeout = time.Until(d)
	}
	r, _, err := c.ExchangeContext(ctx, m, net.JoinHostPort(addr.Addr().String(), fmt.Sprint(addr.Port())))
	if err != nil {
		return fmt.Errorf("cluster DNS on %s does not answer: %w", s.addr, err)
	}
	if r.Rcode != mdns.RcodeSuccess {
		return fmt.Errorf("cluster DNS on %s answers %s for %s SOA", s.addr, mdns.RcodeToString[r.Rcode], s.h.cfg.Zone)
	}
	return nil
}
