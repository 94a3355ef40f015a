package dns

import (
	"encoding/binary"
	"strings"

	mdns "github.com/miekg/dns"
)

// unpackQuery reads a query as parse does, with miekg/dns' Msg.Unpack doing
// the parsing instead of the hand-written code: the reference parse is
// checked against (query_test.go), and what bench/dnsparser measures parse
// against in the same server loop (built with -tags dnsunpack, the server
// parses every query with it).
func unpackQuery(req []byte, q *query) int {
	if len(req) < 12 {
		return -1
	}
	var m mdns.Msg
	err := m.Unpack(req)
	// The header is there whatever follows; error answers need it.
	q.id = m.Id
	q.flags = binary.BigEndian.Uint16(req[2:])
	if m.Response {
		return -1 // a response: never answer one
	}
	if m.Opcode != mdns.OpcodeQuery {
		return rcodeNotImp
	}
	if binary.BigEndian.Uint16(req[4:]) != 1 || binary.BigEndian.Uint16(req[6:]) != 0 ||
		binary.BigEndian.Uint16(req[8:]) != 0 || binary.BigEndian.Uint16(req[10:]) > 1 {
		return rcodeFormErr
	}
	q.edns = false
	// Unpack takes records the counts claim but the packet lacks as absent.
	if err != nil || len(m.Question) != 1 || len(m.Extra) != int(binary.BigEndian.Uint16(req[10:])) {
		return rcodeFormErr
	}
	qs := m.Question[0]
	// The index key: the name in lower-case wire form, as in the request
	// (a compressed question name is not taken).
	n, err := mdns.PackDomainName(strings.ToLower(qs.Name), q.key[:], 0, nil, false)
	if err != nil || 12+n+4 > len(req) || !sameName(req[12:12+n], q.key[:n]) {
		return rcodeFormErr
	}
	q.klen, q.nlabels = n, 0
	for off := 0; q.key[off] != 0; off += 1 + int(q.key[off]) {
		q.labels[q.nlabels] = uint8(off)
		q.nlabels++
	}
	q.nameEnd = 12 + n
	q.qtype, q.qclass = qs.Qtype, qs.Qclass
	q.qend = q.nameEnd + 4
	if opt := m.IsEdns0(); opt != nil {
		if opt.Hdr.Name != "." {
			return rcodeFormErr // OPT must be owned by the root
		}
		q.edns = true
		q.udpSize = int(opt.UDPSize())
		q.version = opt.Version()
		q.do = opt.Do()
		if q.version != 0 {
			return rcodeBadVers
		}
	}
	return 0
}

// sameName tells whether the wire name a is key but for ASCII case.
func sameName(a, key []byte) bool {
	for i, c := range a {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != key[i] {
			return false
		}
	}
	return true
}
