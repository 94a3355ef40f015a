package dns

import (
	"encoding/binary"

	mdns "github.com/miekg/dns"
)

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

// MaxUDPAnswer is the largest answer sent over UDP, whatever EDNS size
// the client advertises: DNS flag day 2020's 1232 bytes, which fit an IPv6
// packet without fragmentation. Larger answers are truncated (TC) and the
// client retries over TCP, as CoreDNS and BIND do by default.
const MaxUDPAnswer = 1232

// limit is the largest answer the client takes over this transport.
func (q *query) limit(udp bool) int {
	if !udp {
		return 65535
	}
	if q.edns && q.udpSize > 512 {
		return min(q.udpSize, MaxUDPAnswer)
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
