package dns

import (
	"net/netip"

	mdns "github.com/miekg/dns"
)

// msgFor builds the positive answer of n for qtype, with n's lower-case name
// in the question (the wire path copies the client's spelling over it).
func (h *Handler) msgFor(n *node, qtype uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.Response, m.Authoritative = true, true
	m.Question = []mdns.Question{{Name: n.name, Qtype: qtype, Qclass: mdns.ClassINET}}
	hdr := func(name string, t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: h.ttl}
	}
	addr := func(name string, a netip.Addr) mdns.RR {
		if a.Is4() {
			return &mdns.A{Hdr: hdr(name, mdns.TypeA), A: a.AsSlice()}
		}
		return &mdns.AAAA{Hdr: hdr(name, mdns.TypeAAAA), AAAA: a.AsSlice()}
	}
	switch qtype {
	case mdns.TypeA:
		for _, a := range n.a {
			m.Answer = append(m.Answer, addr(n.name, a))
		}
	case mdns.TypeAAAA:
		for _, a := range n.aaaa {
			m.Answer = append(m.Answer, addr(n.name, a))
		}
	case mdns.TypeSRV:
		for _, s := range n.srv {
			m.Answer = append(m.Answer, &mdns.SRV{Hdr: hdr(n.name, mdns.TypeSRV), Priority: 0, Weight: s.weight, Port: s.port, Target: s.target})
		}
		for _, e := range n.extra {
			m.Extra = append(m.Extra, addr(e.name, e.addr))
		}
	case mdns.TypePTR:
		for _, p := range n.ptr {
			m.Answer = append(m.Answer, &mdns.PTR{Hdr: hdr(n.name, mdns.TypePTR), Ptr: p})
		}
	case mdns.TypeTXT:
		m.Answer = append(m.Answer, &mdns.TXT{Hdr: hdr(n.name, mdns.TypeTXT), Txt: []string{n.txt}})
	case mdns.TypeCNAME:
		m.Answer = append(m.Answer, &mdns.CNAME{Hdr: hdr(n.name, mdns.TypeCNAME), Target: n.cname})
	case mdns.TypeNS:
		seen := map[string]bool{}
		for _, ns := range n.ns {
			if !seen[ns.name] {
				seen[ns.name] = true
				m.Answer = append(m.Answer, &mdns.NS{Hdr: hdr(n.name, mdns.TypeNS), Ns: ns.name})
			}
			m.Extra = append(m.Extra, addr(ns.name, ns.addr))
		}
	case mdns.TypeSOA:
		soa := *n.zone.soaRR
		soa.Hdr.Name = n.name
		m.Answer = append(m.Answer, &soa)
	}
	return m
}

// packed is n's packed positive answer for qtype, built on first use.
func (h *Handler) packed(n *node, slot int, qtype uint16) []byte {
	if p := n.packed[slot].Load(); p != nil {
		return *p
	}
	m := h.msgFor(n, qtype)
	m.Compress = true
	b, err := m.Pack()
	if err != nil {
		// Only an impossible record (a name too long) gets here; answer
		// SERVFAIL rather than something wrong.
		m = new(mdns.Msg)
		m.Response = true
		m.Rcode = mdns.RcodeServerFailure
		m.Question = []mdns.Question{{Name: n.name, Qtype: qtype, Qclass: mdns.ClassINET}}
		b, _ = m.Pack()
	}
	n.packed[slot].Store(&b)
	return b
}

// truncatedFor is n's answer for qtype cut to fit limit bytes, TC set.
func (h *Handler) truncatedFor(n *node, slot int, qtype uint16, full []byte, limit int) []byte {
	if t := n.trunc[slot].Load(); t != nil && t.limit == limit {
		return t.data
	}
	b := truncate(full, limit)
	n.trunc[slot].Store(&truncated{limit: limit, data: b})
	return b
}

// truncate cuts a packed message to limit bytes the way miekg/dns (and so
// CoreDNS) does: whole records only, TC set when any was left out.
func truncate(full []byte, limit int) []byte {
	m := new(mdns.Msg)
	if err := m.Unpack(full); err != nil {
		return full[:12]
	}
	m.Truncate(limit)
	b, err := m.Pack()
	if err != nil || len(b) > limit {
		m.Answer, m.Ns, m.Extra = nil, nil, nil
		m.Truncated = true
		b, _ = m.Pack()
	}
	return b
}
