package dns

import (
	"encoding/binary"
	"fmt"
	"testing"

	mdns "github.com/miekg/dns"
)

// queryPackets are well-formed and malformed queries the two parsers must
// read alike.
func queryPackets(t testing.TB) map[string][]byte {
	pack := func(m *mdns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	q := func(name string, qtype uint16) *mdns.Msg {
		m := new(mdns.Msg)
		m.SetQuestion(name, qtype)
		return m
	}
	out := map[string][]byte{}
	out["A"] = pack(q("web-0.nginx.default.svc.cluster.local.", mdns.TypeA))
	out["SRV mixed case"] = pack(q("_Web._TCP.Nginx.default.SVC.cluster.local.", mdns.TypeSRV))
	out["PTR"] = pack(q("5.0.18.198.in-addr.arpa.", mdns.TypePTR))
	out["root"] = pack(q(".", mdns.TypeNS))
	m := q("nginx.default.svc.cluster.local.", mdns.TypeAAAA)
	m.SetEdns0(1232, true)
	out["EDNS DO"] = pack(m)
	m = q("nginx.default.svc.cluster.local.", mdns.TypeA)
	m.SetEdns0(4096, false)
	m.IsEdns0().SetVersion(1)
	out["EDNS version 1"] = pack(m)
	m = q("nginx.default.svc.cluster.local.", mdns.TypeA)
	m.Opcode = mdns.OpcodeStatus
	out["opcode status"] = pack(m)
	m = q("nginx.default.svc.cluster.local.", mdns.TypeA)
	m.Response = true
	out["response"] = pack(m)
	m = q("nginx.default.svc.cluster.local.", mdns.TypeA)
	m.Question = append(m.Question, m.Question[0])
	out["two questions"] = pack(m)
	m = q("nginx.default.svc.cluster.local.", mdns.TypeA)
	m.Answer = []mdns.RR{&mdns.A{Hdr: mdns.RR_Header{Name: ".", Rrtype: mdns.TypeA, Class: mdns.ClassINET}, A: []byte{1, 2, 3, 4}}}
	out["an answer"] = pack(m)
	m = q("nginx.default.svc.cluster.local.", mdns.TypeA)
	m.Extra = []mdns.RR{&mdns.OPT{Hdr: mdns.RR_Header{Name: "x.", Rrtype: mdns.TypeOPT, Class: 1232}}}
	out["OPT not at the root"] = pack(m)
	m = q("nginx.default.svc.cluster.local.", mdns.TypeA)
	m.Extra = []mdns.RR{&mdns.TXT{Hdr: mdns.RR_Header{Name: "x.", Rrtype: mdns.TypeTXT, Class: mdns.ClassINET}, Txt: []string{"hi"}}}
	out["other additional record"] = pack(m)
	m = q("nginx.default.svc.cluster.local.", mdns.TypeA)
	m.Question[0].Qclass = mdns.ClassCHAOS
	out["class CH"] = pack(m)
	b := pack(q("nginx.default.svc.cluster.local.", mdns.TypeA))
	out["compressed name"] = append(append(b[:12:12], 0xc0, 12), b[len(b)-4:]...)
	long := pack(q("a123456789b123456789c123456789d123456789e123456789f123456789abc.x.", mdns.TypeA))
	long[12] = 64
	out["label too long"] = long
	return out
}

func TestParsersAgree(t *testing.T) {
	cases := queryPackets(t)
	full := cases["EDNS DO"]
	for i := 0; i < len(full); i++ {
		cases[fmt.Sprintf("EDNS DO cut to %d bytes", i)] = full[:i]
	}
	for name, req := range cases {
		var hand, unp query
		rh, ru := parse(req, &hand), unpackQuery(req, &unp)
		if rh != ru {
			t.Errorf("%s: parse %d, unpackQuery %d", name, rh, ru)
			continue
		}
		if rh < 0 {
			continue
		}
		if hand.id != unp.id || hand.flags != unp.flags || hand.edns != unp.edns {
			t.Errorf("%s: header: parse %+v, unpackQuery %+v", name, hand, unp)
		}
		if rh == 0 && hand != unp {
			t.Errorf("%s:\n parse       %+v\n unpackQuery %+v", name, hand, unp)
		}
	}
	for name, want := range map[string]int{
		"A": 0, "SRV mixed case": 0, "EDNS version 1": rcodeBadVers, "opcode status": rcodeNotImp,
		"response": -1, "two questions": rcodeFormErr, "compressed name": rcodeFormErr, "class CH": 0,
	} {
		var q query
		if got := parse(cases[name], &q); got != want {
			t.Errorf("%s: parse %d, want %d", name, got, want)
		}
	}
	var q query
	parse(cases["SRV mixed case"], &q)
	if got := string(q.keyBytes()); got != wireKey("_web._tcp.nginx.default.svc.cluster.local.") {
		t.Errorf("key %q", got)
	}
}

// BenchmarkParse: one query (A, EDNS0), parsed by the hand-written parser
// and by miekg/dns' Msg.Unpack. bench/dnsparser measures the same in the
// server loop.
func BenchmarkParse(b *testing.B) {
	req := queryPackets(b)["EDNS DO"]
	binary.BigEndian.PutUint16(req, 0x1234)
	for _, p := range []struct {
		name  string
		parse func([]byte, *query) int
	}{{"hand", parse}, {"unpack", unpackQuery}} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			var q query
			for b.Loop() {
				if p.parse(req, &q) != 0 {
					b.Fatal("not parsed")
				}
			}
		})
	}
}
