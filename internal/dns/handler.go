package dns

import (
	"context"
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	mdns "github.com/miekg/dns"
)

// action says what the transport does with a handled packet.
type action uint8

const (
	// actDrop: send nothing (not a query, or too short to answer).
	actDrop action = iota
	// actReply: send the returned bytes.
	actReply
	// actAsync: the answer needs the network (forwarding, or chasing a
	// CNAME outside the cluster); call Handler.async in a goroutine.
	actAsync
)

const (
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5
	rcodeBadVers  = 16
)

// Handler answers DNS queries from the published Index. It is safe for
// concurrent use; each transport goroutine passes its own buffers.
type Handler struct {
	cfg     Config
	ttl     uint32
	zones   []*zone
	cluster *zone
	// clusterLabels is how many labels the cluster zone has.
	clusterLabels int
	idx           atomic.Pointer[Index]
	metrics       *Metrics
	fwd           *forwarder
	// model is the builder's state: only Run's goroutine touches it.
	model *model
}

// query is a parsed question, with the client's raw bytes kept for echoing.
type query struct {
	id      uint16
	flags   uint16 // the request's header flags
	qtype   uint16
	qclass  uint16
	qend    int // end of the question section in the request
	nameEnd int // end of the question name in the request
	edns    bool
	udpSize int
	do      bool
	version uint8
	nlabels int
	klen    int
	labels  [128]uint8 // start of each label in key
	key     [256]byte  // lower-case wire name
}

func (q *query) keyBytes() []byte { return q.key[:q.klen] }

// parse reads a query from req. It returns -1 when the packet gets no
// answer at all, 0 when q is a well-formed query, else the rcode of the
// error answer (the header, and q.edns, are filled as far as they parsed).
func parse(req []byte, q *query) int {
	if len(req) < 12 {
		return -1
	}
	q.id = binary.BigEndian.Uint16(req)
	q.flags = binary.BigEndian.Uint16(req[2:])
	if q.flags&0x8000 != 0 {
		return -1 // a response: never answer one
	}
	qd := binary.BigEndian.Uint16(req[4:])
	an := binary.BigEndian.Uint16(req[6:])
	ns := binary.BigEndian.Uint16(req[8:])
	ar := binary.BigEndian.Uint16(req[10:])
	if (q.flags>>11)&0xf != 0 {
		return rcodeNotImp
	}
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return rcodeFormErr
	}
	off := 12
	q.klen, q.nlabels = 0, 0
	for {
		if off >= len(req) {
			return rcodeFormErr
		}
		l := int(req[off])
		if l == 0 {
			q.key[q.klen] = 0
			q.klen++
			off++
			break
		}
		if l > 63 || off+1+l > len(req) || q.klen+1+l+1 > 255 {
			return rcodeFormErr
		}
		q.labels[q.nlabels] = uint8(q.klen)
		q.nlabels++
		q.key[q.klen] = byte(l)
		for i := 0; i < l; i++ {
			c := req[off+1+i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			q.key[q.klen+1+i] = c
		}
		q.klen += 1 + l
		off += 1 + l
	}
	q.nameEnd = off
	if off+4 > len(req) {
		return rcodeFormErr
	}
	q.qtype = binary.BigEndian.Uint16(req[off:])
	q.qclass = binary.BigEndian.Uint16(req[off+2:])
	off += 4
	q.qend = off
	q.edns = false
	if ar == 1 {
		// The additional record: an OPT (EDNS0) or something we ignore.
		start := off
		for {
			if off >= len(req) {
				return rcodeFormErr
			}
			l := int(req[off])
			if l == 0 {
				off++
				break
			}
			if l&0xc0 == 0xc0 {
				off += 2
				break
			}
			if l > 63 {
				return rcodeFormErr
			}
			off += 1 + l
		}
		if off+10 > len(req) {
			return rcodeFormErr
		}
		t := binary.BigEndian.Uint16(req[off:])
		class := binary.BigEndian.Uint16(req[off+2:])
		ttl := binary.BigEndian.Uint32(req[off+4:])
		rdlen := int(binary.BigEndian.Uint16(req[off+8:]))
		if off+10+rdlen > len(req) {
			return rcodeFormErr
		}
		if t == mdns.TypeOPT {
			if off != start+1 {
				return rcodeFormErr // OPT must be owned by the root
			}
			q.edns = true
			q.udpSize = int(class)
			q.version = uint8(ttl >> 16)
			q.do = ttl&0x8000 != 0
			if q.version != 0 {
				return rcodeBadVers
			}
		}
	}
	return 0
}

// limit is the largest answer the client takes over this transport.
func (q *query) limit(udp bool) int {
	if !udp {
		return 65535
	}
	if q.edns && q.udpSize > 512 {
		return q.udpSize
	}
	return 512
}

// zoneFor is the most specific zone containing the query name, or nil.
func (h *Handler) zoneFor(q *query) *zone {
	var best *zone
	key := q.keyBytes()
	for _, z := range h.zones {
		if len(z.wire) > len(key) || (best != nil && len(z.wire) <= len(best.wire)) {
			continue
		}
		start := len(key) - len(z.wire)
		if string(key[start:]) != string(z.wire) {
			continue
		}
		if start == 0 || q.isLabelStart(start) {
			best = z
		}
	}
	return best
}

func (q *query) isLabelStart(off int) bool {
	for i := 0; i < q.nlabels; i++ {
		if int(q.labels[i]) == off {
			return true
		}
	}
	return false
}

// serve answers one packet. out must have capacity 65535; the returned
// bytes alias it.
func (h *Handler) serve(req, out []byte, src netip.Addr, udp bool) ([]byte, action) {
	var q query
	rc := parse(req, &q)
	if rc < 0 {
		return nil, actDrop
	}
	if rc > 0 {
		return h.errorReply(req, &q, rc, out), actReply
	}
	return h.answer(req, &q, out, src, udp)
}

func (h *Handler) answer(req []byte, q *query, out []byte, src netip.Addr, udp bool) ([]byte, action) {
	if q.qclass != mdns.ClassINET {
		return h.reply(req, q, out, rcodeNotImp, false), actReply
	}
	ix := h.idx.Load()
	n := ix.get(q.keyBytes())
	var z *zone
	if n != nil {
		z = n.zone
	} else {
		z = h.zoneFor(q)
	}
	if z == nil || (n == nil && z.fallthrough_) {
		if h.fwd != nil && h.fwd.allowed(src) {
			return nil, actAsync
		}
		return h.reply(req, q, out, rcodeRefused, false), actReply
	}
	if !ix.synced {
		return h.reply(req, q, out, rcodeServFail, false), actReply
	}
	switch q.qtype {
	case mdns.TypeAXFR, mdns.TypeIXFR:
		return h.reply(req, q, out, rcodeRefused, false), actReply
	}
	if n == nil && h.cfg.PodMode == PodsInsecure && z == h.cluster {
		n = h.insecurePod(ix, q)
	}
	if n == nil {
		if q.qtype == mdns.TypeSOA {
			return h.negative(req, q, out, z, 0), actReply
		}
		return h.negative(req, q, out, z, rcodeNXDomain), actReply
	}
	if n.cname != "" && (q.qtype == mdns.TypeA || q.qtype == mdns.TypeAAAA || q.qtype == mdns.TypeTXT) {
		return nil, actAsync
	}
	slot := slotOf(q.qtype)
	if slot >= 0 && n.has(slot) {
		return h.positive(req, q, out, n, slot, udp), actReply
	}
	rcode := rcodeNXDomain
	switch {
	case q.qtype == mdns.TypeSOA:
		rcode = 0
	case q.qtype == mdns.TypeTXT:
		if n.flags&flagHasRecords != 0 {
			rcode = 0
		}
	case q.qtype == mdns.TypePTR && n.flags&flagPTRNX != 0:
	case n.flags&flagExists != 0:
		rcode = 0
	}
	return h.negative(req, q, out, z, rcode), actReply
}

// insecurePod answers a-b-c-d.<ns>.pod.<zone> for any address when the
// namespace exists (pod records mode insecure).
func (h *Handler) insecurePod(ix *Index, q *query) *node {
	if q.nlabels != h.clusterLabels+3 {
		return nil
	}
	key := q.keyBytes()
	podLabel := key[q.labels[2]:q.labels[3]]
	if string(podLabel) != "\x03pod" {
		return nil
	}
	if ix.get(key[q.labels[1]:]) == nil {
		return nil // namespace does not exist
	}
	label := string(key[q.labels[0]+1 : q.labels[1]])
	a, ok := podAddr(label)
	if !ok {
		return nil
	}
	name := mdns.CanonicalName(string(presentation(key)))
	n := &node{name: name, zone: h.cluster, flags: flagExists | flagHasRecords}
	if a.Is4() {
		n.a = []netip.Addr{a}
	} else {
		n.aaaa = []netip.Addr{a}
	}
	return n
}

// presentation is the text form of a wire name.
func presentation(key []byte) string {
	s, _, err := mdns.UnpackDomainName(key, 0)
	if err != nil {
		return "."
	}
	return s
}

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

// ServePacket answers one query packet as the server would over UDP (udp
// true) or TCP, from src; nil when the packet gets no answer. Answers that
// need the network (forwarding) are waited for.
func (h *Handler) ServePacket(ctx context.Context, req []byte, src netip.Addr, udp bool) []byte {
	out := make([]byte, 0, 65535)
	resp, act := h.serve(req, out, src, udp)
	switch act {
	case actReply:
		return resp
	case actAsync:
		return h.async(ctx, req, src, udp)
	}
	return nil
}
