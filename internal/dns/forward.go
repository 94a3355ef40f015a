package dns

import (
	"context"
	"net/netip"
	"time"

	mdns "github.com/miekg/dns"
)

// async answers a query that needs the network: names outside the cluster
// zones go upstream, and ExternalName CNAMEs are followed.
func (h *Handler) async(ctx context.Context, req []byte, src netip.Addr, udp bool) []byte {
	var q query
	if parseQuery(req, &q) != 0 {
		return nil
	}
	r := new(mdns.Msg)
	if err := r.Unpack(req); err != nil || len(r.Question) != 1 {
		return nil
	}
	ix := h.idx.Load()
	n := h.lookup(ix, q.keyBytes())
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
		n = h.lookup(ix, []byte(wireKey(target)))
		if n != nil {
			if n.cname != "" {
				continue
			}
			if slot := slotOf(qtype); slot >= 0 && n.has(slot) {
				m.Answer = append(m.Answer, h.msgFor(n, qtype).Answer...)
			}
			break
		}
		if zoneOf(h.zones, target) != nil || h.fwd == nil || !h.fwd.allowed(src) {
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
