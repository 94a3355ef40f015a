package dns

import (
	"encoding/binary"
)

// positive copies n's packed answer into out, with the client's ID, flags,
// spelling of the name and EDNS, truncated to what the client takes.
func (h *Handler) positive(req []byte, q *query, out []byte, n *node, slot int, udp bool) []byte {
	p := h.packed(n, slot, q.qtype)
	limit := q.limit(udp)
	opt := 0
	if q.edns {
		opt = 11
	}
	if len(p)+opt > limit {
		p = h.truncatedFor(n, slot, q.qtype, p, limit-opt)
	}
	out = append(out[:0], p...)
	h.finish(req, q, out)
	out = h.appendOPT(q, out, 0)
	h.metrics.count(q.qtype, int(out[3]&0xf))
	if n.change != nil {
		h.metrics.observeChange(n.change)
	}
	return out
}

// finish stamps the client's ID, RD/CD flags and name spelling on a
// prepared answer.
func (h *Handler) finish(req []byte, q *query, out []byte) {
	binary.BigEndian.PutUint16(out, q.id)
	if q.flags&0x0100 != 0 {
		out[2] |= 0x01 // RD
	}
	if q.flags&0x0010 != 0 {
		out[3] |= 0x10 // CD
	}
	copy(out[12:q.nameEnd], req[12:q.nameEnd])
}

// negative answers NXDOMAIN (rcode 3) or NODATA (rcode 0) with the zone's
// SOA in the authority section.
func (h *Handler) negative(req []byte, q *query, out []byte, z *zone, rcode int) []byte {
	out = out[:12]
	binary.BigEndian.PutUint16(out, q.id)
	out[2] = 0x80 | 0x04 | byte(q.flags>>8)&0x01 // QR AA RD
	out[3] = byte(q.flags)&0x10 | byte(rcode)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], 0)
	binary.BigEndian.PutUint16(out[8:], 1)
	binary.BigEndian.PutUint16(out[10:], 0)
	out = append(out, req[12:q.qend]...)
	out = append(out, z.soa...)
	out = h.appendOPT(q, out, 0)
	h.metrics.count(q.qtype, rcode)
	return out
}

// reply answers with rcode, the question, and nothing else.
func (h *Handler) reply(req []byte, q *query, out []byte, rcode int, aa bool) []byte {
	out = out[:12]
	binary.BigEndian.PutUint16(out, q.id)
	out[2] = 0x80 | byte(q.flags>>8)&0x01
	if aa {
		out[2] |= 0x04
	}
	out[3] = byte(q.flags)&0x10 | byte(rcode&0xf)
	binary.BigEndian.PutUint16(out[4:], 1)
	binary.BigEndian.PutUint16(out[6:], 0)
	binary.BigEndian.PutUint16(out[8:], 0)
	binary.BigEndian.PutUint16(out[10:], 0)
	out = append(out, req[12:q.qend]...)
	out = h.appendOPT(q, out, 0)
	h.metrics.count(q.qtype, rcode)
	return out
}

// errorReply answers a packet that did not parse as a query we take: the
// header only (the question may be what is wrong), with the rcode.
func (h *Handler) errorReply(req []byte, q *query, rcode int, out []byte) []byte {
	out = out[:12]
	binary.BigEndian.PutUint16(out, q.id)
	out[2] = 0x80 | byte(q.flags>>8)&0x79 // QR, the opcode, RD
	out[3] = byte(rcode & 0xf)
	for i := 4; i < 12; i++ {
		out[i] = 0
	}
	if rcode == rcodeBadVers {
		out[3] = 0
		out = h.appendOPT(q, out, rcodeBadVers)
	}
	h.metrics.count(0, rcode)
	return out
}

// appendOPT adds our OPT record when the client sent one: its UDP size
// echoed (as CoreDNS does), its DO bit copied, no options.
func (h *Handler) appendOPT(q *query, out []byte, extRcode int) []byte {
	if !q.edns {
		return out
	}
	size := q.udpSize
	if size < 512 {
		size = 512
	}
	var flags uint16
	if q.do {
		flags = 0x8000
	}
	out = append(out, 0, 0, 41, byte(size>>8), byte(size), byte(extRcode>>4), 0, byte(flags>>8), byte(flags), 0, 0)
	ar := binary.BigEndian.Uint16(out[10:])
	binary.BigEndian.PutUint16(out[10:], ar+1)
	return out
}
