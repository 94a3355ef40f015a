package dns_test

import (
	"context"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"

	"github.com/headway/headway/internal/dns"
)

// FuzzServePacket: whatever arrives, the handler does not crash, and what
// it answers is a well-formed response to that query. The seed corpus is in
// testdata/fuzz/FuzzServePacket.
func FuzzServePacket(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"nginx-headless.default.svc.cluster.local.", mdns.TypeA},
		{"_web._tcp.nginx-headless.default.svc.cluster.local.", mdns.TypeSRV},
		{"22.0.18.198.in-addr.arpa.", mdns.TypePTR},
		{"ext.default.svc.cluster.local.", mdns.TypeA},
	} {
		m := query(q.name, q.qtype)
		m.SetEdns0(1232, true)
		b, _ := m.Pack()
		f.Add(b, true)
	}
	h, err := dns.New(dns.Config{Zone: testZone, Metrics: dns.NewMetrics(), ReverseCIDRs: cidrs("198.19.0.0/16", "198.18.0.0/16")})
	if err != nil {
		f.Fatal(err)
	}
	var objs []any
	for _, o := range append(fixture(), bigHeadless(300)...) {
		objs = append(objs, o)
	}
	h.Apply(objs...)
	src := netip.MustParseAddr("127.0.0.1")
	f.Fuzz(func(t *testing.T, req []byte, udp bool) {
		resp := h.ServePacket(context.Background(), req, src, udp)
		if resp == nil {
			return
		}
		if len(req) < 12 {
			t.Fatalf("answered a %d-byte packet", len(req))
		}
		if udp {
			limit := 512
			q := new(mdns.Msg)
			if q.Unpack(req) == nil {
				if o := q.IsEdns0(); o != nil && int(o.UDPSize()) > limit {
					limit = int(o.UDPSize())
				}
			}
			if len(resp) > limit && len(resp) > 512 {
				t.Fatalf("UDP answer of %d bytes exceeds %d", len(resp), limit)
			}
		}
		r := new(mdns.Msg)
		if err := r.Unpack(resp); err != nil {
			t.Fatalf("answer does not parse: %v\n%x", err, resp)
		}
		if !r.Response || r.Id != uint16(req[0])<<8|uint16(req[1]) {
			t.Fatalf("answer header: %v", r.MsgHdr)
		}
	})
}
