package dns_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/headway/headway/internal/dns"
)

const soa = "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. 0 7200 1800 86400 5"
const revSOA = "19.198.in-addr.arpa. 5 IN SOA ns.dns.19.198.in-addr.arpa. hostmaster.19.198.in-addr.arpa. 0 7200 1800 86400 5"

type wireCase struct {
	name   string
	qname  string
	qtype  uint16
	rcode  int
	answer []string
	ns     []string
	extra  []string
	tcp    bool
	noAA   bool
}

var wireCases = []wireCase{
	// Headless Service: one A per ready endpoint; ready unset counts as ready.
	{name: "headless A", qname: "nginx-headless.default.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{
		"nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.22",
		"nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.23",
		"nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.39"}},
	{name: "headless AAAA of an IPv4 service is NODATA", qname: "nginx-headless.default.svc.cluster.local.", qtype: mdns.TypeAAAA, ns: []string{soa}},
	{name: "endpoint hostname", qname: "web-0.nginx-headless.default.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{
		"web-0.nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.22"}},
	{name: "not-ready endpoint hostname", qname: "web-3.nginx-headless.default.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "headless SRV per named port", qname: "_web._tcp.nginx-headless.default.svc.cluster.local.", qtype: mdns.TypeSRV, answer: []string{
		"_web._tcp.nginx-headless.default.svc.cluster.local. 5 IN SRV 0 33 80 web-0.nginx-headless.default.svc.cluster.local.",
		"_web._tcp.nginx-headless.default.svc.cluster.local. 5 IN SRV 0 33 80 web-1.nginx-headless.default.svc.cluster.local.",
		"_web._tcp.nginx-headless.default.svc.cluster.local. 5 IN SRV 0 33 80 web-2.nginx-headless.default.svc.cluster.local."}, extra: []string{
		"web-0.nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.22",
		"web-1.nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.23",
		"web-2.nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.39"}},
	{name: "headless SRV of the Service name", qname: "nginx-headless.default.svc.cluster.local.", qtype: mdns.TypeSRV, answer: []string{
		"nginx-headless.default.svc.cluster.local. 5 IN SRV 0 33 80 web-0.nginx-headless.default.svc.cluster.local.",
		"nginx-headless.default.svc.cluster.local. 5 IN SRV 0 33 80 web-1.nginx-headless.default.svc.cluster.local.",
		"nginx-headless.default.svc.cluster.local. 5 IN SRV 0 33 80 web-2.nginx-headless.default.svc.cluster.local."}, extra: []string{
		"web-0.nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.22",
		"web-1.nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.23",
		"web-2.nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.39"}},
	{name: "SRV of an unknown port", qname: "_nope._tcp.nginx-headless.default.svc.cluster.local.", qtype: mdns.TypeSRV, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "headless PTR names the hostname first", qname: "22.0.18.198.in-addr.arpa.", qtype: mdns.TypePTR, answer: []string{
		"22.0.18.198.in-addr.arpa. 5 IN PTR web-0.nginx-headless.default.svc.cluster.local.",
		"22.0.18.198.in-addr.arpa. 5 IN PTR 198-18-0-22.nginx.default.svc.cluster.local."}},
	{name: "headless Service without endpoints", qname: "empty.default.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "headless Service with only not-ready endpoints", qname: "notready.default.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "publishNotReadyAddresses", qname: "publish.default.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{
		"publish.default.svc.cluster.local. 5 IN A 198.18.0.51"}},
	{name: "headless IPv6", qname: "v6.other.svc.cluster.local.", qtype: mdns.TypeAAAA, answer: []string{
		"v6.other.svc.cluster.local. 5 IN AAAA fd00:18::5"}},
	{name: "headless IPv6 hostname", qname: "a.v6.other.svc.cluster.local.", qtype: mdns.TypeAAAA, answer: []string{
		"a.v6.other.svc.cluster.local. 5 IN AAAA fd00:18::5"}},

	// ClusterIP Service.
	{name: "ClusterIP A", qname: "nginx.default.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{
		"nginx.default.svc.cluster.local. 5 IN A 198.19.0.20"}},
	{name: "ClusterIP AAAA is NODATA", qname: "nginx.default.svc.cluster.local.", qtype: mdns.TypeAAAA, ns: []string{soa}},
	{name: "ClusterIP SRV per named port", qname: "_https._tcp.nginx.default.svc.cluster.local.", qtype: mdns.TypeSRV, answer: []string{
		"_https._tcp.nginx.default.svc.cluster.local. 5 IN SRV 0 100 443 nginx.default.svc.cluster.local."}, extra: []string{
		"nginx.default.svc.cluster.local. 5 IN A 198.19.0.20"}},
	{name: "ClusterIP SRV of the Service name", qname: "nginx.default.svc.cluster.local.", qtype: mdns.TypeSRV, answer: []string{
		"nginx.default.svc.cluster.local. 5 IN SRV 0 50 80 nginx.default.svc.cluster.local.",
		"nginx.default.svc.cluster.local. 5 IN SRV 0 50 443 nginx.default.svc.cluster.local."}, extra: []string{
		"nginx.default.svc.cluster.local. 5 IN A 198.19.0.20"}},
	{name: "ClusterIP SRV wrong protocol", qname: "_https._udp.nginx.default.svc.cluster.local.", qtype: mdns.TypeSRV, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "ClusterIP PTR", qname: "20.0.19.198.in-addr.arpa.", qtype: mdns.TypePTR, answer: []string{
		"20.0.19.198.in-addr.arpa. 5 IN PTR nginx.default.svc.cluster.local."}},
	{name: "endpoint of a ClusterIP Service by address", qname: "198-18-0-23.nginx.default.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{
		"198-18-0-23.nginx.default.svc.cluster.local. 5 IN A 198.18.0.23"}},
	{name: "unknown reverse address in the service range", qname: "99.0.19.198.in-addr.arpa.", qtype: mdns.TypePTR, rcode: mdns.RcodeNameError, ns: []string{revSOA}},
	{name: "kube-dns", qname: "kube-dns.kube-system.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{
		"kube-dns.kube-system.svc.cluster.local. 5 IN A 198.19.0.10"}},

	// ExternalName.
	{name: "ExternalName CNAME", qname: "ext.default.svc.cluster.local.", qtype: mdns.TypeCNAME, answer: []string{
		"ext.default.svc.cluster.local. 5 IN CNAME www.example.com."}},
	{name: "ExternalName A without upstream", qname: "ext.default.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{
		"ext.default.svc.cluster.local. 5 IN CNAME www.example.com."}},
	{name: "ExternalName to a cluster name is followed", qname: "inext.default.svc.cluster.local.", qtype: mdns.TypeA, answer: []string{
		"inext.default.svc.cluster.local. 5 IN CNAME nginx.default.svc.cluster.local.",
		"nginx.default.svc.cluster.local. 5 IN A 198.19.0.20"}},
	{name: "ExternalName SRV is NODATA", qname: "ext.default.svc.cluster.local.", qtype: mdns.TypeSRV, ns: []string{soa}},

	// Pod records (verified).
	{name: "pod record of a pod", qname: "198-18-0-22.default.pod.cluster.local.", qtype: mdns.TypeA, answer: []string{
		"198-18-0-22.default.pod.cluster.local. 5 IN A 198.18.0.22"}},
	{name: "pod record without a pod", qname: "198-18-0-99.default.pod.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "pod record in another namespace", qname: "198-18-0-22.other.pod.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "pod namespace", qname: "default.pod.cluster.local.", qtype: mdns.TypeA, ns: []string{soa}},

	// The zone's structure: apex, svc., namespaces, schema version.
	{name: "dns-version", qname: "dns-version.cluster.local.", qtype: mdns.TypeTXT, answer: []string{`dns-version.cluster.local. 5 IN TXT "1.1.0"`}},
	{name: "dns-version A (as CoreDNS)", qname: "dns-version.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "apex SOA", qname: "cluster.local.", qtype: mdns.TypeSOA, answer: []string{soa}},
	{name: "apex NS", qname: "cluster.local.", qtype: mdns.TypeNS, answer: []string{"cluster.local. 5 IN NS ns.dns.cluster.local."},
		extra: []string{"ns.dns.cluster.local. 5 IN A 198.19.0.10"}},
	{name: "apex A", qname: "cluster.local.", qtype: mdns.TypeA, ns: []string{soa}},
	{name: "name server address", qname: "ns.dns.cluster.local.", qtype: mdns.TypeA, answer: []string{"ns.dns.cluster.local. 5 IN A 198.19.0.10"}},
	{name: "svc.<zone>", qname: "svc.cluster.local.", qtype: mdns.TypeA, ns: []string{soa}},
	{name: "svc.<zone> TXT (as CoreDNS)", qname: "svc.cluster.local.", qtype: mdns.TypeTXT, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "namespace", qname: "default.svc.cluster.local.", qtype: mdns.TypeA, ns: []string{soa}},
	{name: "namespace that does not exist", qname: "nope.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "Service in a namespace that does not exist", qname: "nginx.nope.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "Service that does not exist", qname: "nope.default.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "unsupported type on an existing name", qname: "nginx.default.svc.cluster.local.", qtype: mdns.TypeMX, ns: []string{soa}},
	{name: "TXT on an existing Service", qname: "nginx.default.svc.cluster.local.", qtype: mdns.TypeTXT, ns: []string{soa}},
	{name: "unsupported type on a missing name", qname: "nope.default.svc.cluster.local.", qtype: mdns.TypeMX, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "SOA below the apex (as CoreDNS)", qname: "nope.default.svc.cluster.local.", qtype: mdns.TypeSOA, ns: []string{soa}},
	{name: "no wildcards", qname: "*.default.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "too many labels", qname: "a.b.web-0.nginx-headless.default.svc.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "not svc or pod", qname: "x.default.foo.cluster.local.", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, ns: []string{soa}},
	{name: "case-insensitive, answered in the client's case", qname: "Web-0.NGINX-headless.Default.svc.Cluster.Local.", qtype: mdns.TypeA, answer: []string{
		"Web-0.NGINX-headless.Default.svc.Cluster.Local. 5 IN A 198.18.0.22"}},

	// Transfers, other classes, names outside the zones.
	{name: "AXFR refused", qname: "cluster.local.", qtype: mdns.TypeAXFR, rcode: mdns.RcodeRefused, tcp: true, noAA: true},
	{name: "outside the zones without upstream", qname: "example.com.", qtype: mdns.TypeA, rcode: mdns.RcodeRefused, noAA: true},
}

func TestWire(t *testing.T) {
	_, addr := serve(t, dns.Config{ReverseCIDRs: cidrs("198.19.0.0/16", "198.18.0.0/16"), TTL: 5 * time.Second}, fixture()...)
	for _, tc := range wireCases {
		for _, network := range []string{"udp", "tcp"} {
			if tc.tcp && network == "udp" {
				continue
			}
			t.Run(tc.name+"/"+network, func(t *testing.T) {
				q := query(tc.qname, tc.qtype)
				r := exchange(t, network, addr, q)
				checkAnswer(t, tc, q, r)
			})
		}
	}
}

func checkAnswer(t *testing.T, tc wireCase, q, r *mdns.Msg) {
	t.Helper()
	if r.Rcode != tc.rcode {
		t.Errorf("rcode %s, want %s\n%s", mdns.RcodeToString[r.Rcode], mdns.RcodeToString[tc.rcode], r)
	}
	if r.Id != q.Id || !r.Response || r.Opcode != mdns.OpcodeQuery {
		t.Errorf("header: id %d (want %d), qr %v, opcode %d", r.Id, q.Id, r.Response, r.Opcode)
	}
	if r.Authoritative == tc.noAA {
		t.Errorf("AA %v, want %v", r.Authoritative, !tc.noAA)
	}
	if r.RecursionDesired != q.RecursionDesired || r.RecursionAvailable || r.Truncated {
		t.Errorf("flags: rd %v ra %v tc %v", r.RecursionDesired, r.RecursionAvailable, r.Truncated)
	}
	if len(r.Question) != 1 || r.Question[0] != q.Question[0] {
		t.Errorf("question %v, want %v", r.Question, q.Question)
	}
	for _, s := range []struct {
		name      string
		got, want []string
	}{
		{"answer", rrs(r.Answer, true), parseRRs(t, tc.answer)},
		{"authority", rrs(r.Ns, true), parseRRs(t, tc.ns)},
		{"additional", rrs(r.Extra, true), parseRRs(t, tc.extra)},
	} {
		if !slices.Equal(s.got, s.want) {
			t.Errorf("%s section:\n got %q\nwant %q", s.name, s.got, s.want)
		}
	}
}

func cidrs(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestPTROrder: busybox' nslookup prints the first PTR target, so the
// StatefulSet name comes before the dashed-address name.
func TestPTROrder(t *testing.T) {
	_, addr := serve(t, dns.Config{ReverseCIDRs: cidrs("198.19.0.0/16", "198.18.0.0/16")}, fixture()...)
	r := exchange(t, "udp", addr, query("22.0.18.198.in-addr.arpa.", mdns.TypePTR))
	if len(r.Answer) == 0 || r.Answer[0].(*mdns.PTR).Ptr != "web-0.nginx-headless.default.svc.cluster.local." {
		t.Fatalf("first PTR: %v", r.Answer)
	}
}

func TestEDNSAndTruncation(t *testing.T) {
	_, addr := serve(t, dns.Config{}, append(fixture(), bigHeadless(1000)...)...)
	name := "big.default.svc.cluster.local."

	// Without EDNS: 512 bytes, TC set, whole records only.
	c := &mdns.Client{Net: "udp", Timeout: 5 * time.Second}
	r, _, err := c.Exchange(query(name, mdns.TypeA), addr)
	if err != nil {
		t.Fatal(err)
	}
	r.Compress = true
	if !r.Truncated || len(r.Answer) == 0 || len(r.Answer) >= 1000 || r.Len() > 512 {
		t.Fatalf("no EDNS: tc %v, %d answers, %d bytes", r.Truncated, len(r.Answer), r.Len())
	}

	// EDNS with 4096 bytes: more records, OPT echoed, still TC; never more
	// than 1232 bytes over UDP (the DNS flag day default), whatever the
	// client asks.
	q := query(name, mdns.TypeA)
	q.SetEdns0(4096, true)
	c.UDPSize = 4096
	r, _, err = c.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	opt := r.IsEdns0()
	if opt == nil || opt.UDPSize() != 4096 || !opt.Do() || opt.Version() != 0 {
		t.Fatalf("OPT not echoed: %v", opt)
	}
	r.Compress = true
	if !r.Truncated || len(r.Answer) < 50 || r.Len() > dns.MaxUDPAnswer {
		t.Fatalf("EDNS 4096: tc %v, %d answers, %d bytes", r.Truncated, len(r.Answer), r.Len())
	}

	// Small answers fit and carry OPT.
	q = query("nginx.default.svc.cluster.local.", mdns.TypeA)
	q.SetEdns0(1232, false)
	r, _, err = c.Exchange(q, addr)
	if err != nil || r.Truncated || len(r.Answer) != 1 || r.IsEdns0() == nil || r.IsEdns0().Do() {
		t.Fatalf("small EDNS answer: %v %v", r, err)
	}

	// TCP: all 1,000.
	r = exchange(t, "tcp", addr, query(name, mdns.TypeA))
	if r.Truncated || len(r.Answer) != 1000 {
		t.Fatalf("tcp: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	r = exchange(t, "tcp", addr, query("_web._tcp."+name, mdns.TypeSRV))
	// 1,000 uncompressed SRV targets fill most of 64 KiB: every SRV record
	// fits, and as many additional addresses as room remains for.
	if len(r.Answer) != 1000 || len(r.Extra) == 0 {
		t.Fatalf("tcp SRV: %d answers, %d additional", len(r.Answer), len(r.Extra))
	}

	// Go's resolver over TCP sees every address.
	res := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ips, err := res.LookupHost(ctx, name)
	if err != nil || len(ips) != 1000 {
		t.Fatalf("Go resolver: %d addresses, %v", len(ips), err)
	}
}

// rawExchange sends bytes over UDP and returns the reply.
func rawExchange(t *testing.T, addr string, b []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:n]
}

func TestMalformed(t *testing.T) {
	_, addr := serve(t, dns.Config{}, fixture()...)
	pack := func(m *mdns.Msg) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	two := query("nginx.default.svc.cluster.local.", mdns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	update := query("cluster.local.", mdns.TypeSOA)
	update.Opcode = mdns.OpcodeUpdate
	chaos := query("version.bind.", mdns.TypeTXT)
	chaos.Question[0].Qclass = mdns.ClassCHAOS
	badvers := query("nginx.default.svc.cluster.local.", mdns.TypeA)
	badvers.SetEdns0(1232, false)
	badvers.IsEdns0().SetVersion(1)
	truncatedQ := pack(query("nginx.default.svc.cluster.local.", mdns.TypeA))
	truncatedQ = truncatedQ[:len(truncatedQ)-3]
	for _, tc := range []struct {
		name  string
		req   []byte
		rcode int
	}{
		{"two questions", pack(two), mdns.RcodeFormatError},
		{"opcode UPDATE", pack(update), mdns.RcodeNotImplemented},
		{"class CHAOS", pack(chaos), mdns.RcodeNotImplemented},
		{"EDNS version 1", pack(badvers), mdns.RcodeBadVers},
		{"cut short", truncatedQ, mdns.RcodeFormatError},
		{"label too long", append(append([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64}, make([]byte, 64)...), 0, 0, 1, 0, 1), mdns.RcodeFormatError},
		{"compression pointer in the question", []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, mdns.RcodeFormatError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := rawExchange(t, addr, tc.req)
			r := new(mdns.Msg)
			if err := r.Unpack(b); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if r.Rcode != tc.rcode || r.Id != binary.BigEndian.Uint16(tc.req) || !r.Response {
				t.Fatalf("rcode %s id %d, want %s id %d", mdns.RcodeToString[r.Rcode], r.Id, mdns.RcodeToString[tc.rcode], binary.BigEndian.Uint16(tc.req))
			}
		})
	}
	// The server still answers after all that.
	r := exchange(t, "udp", addr, query("nginx.default.svc.cluster.local.", mdns.TypeA))
	if len(r.Answer) != 1 {
		t.Fatalf("after malformed packets: %v", r)
	}
}

func TestForwarding(t *testing.T) {
	// A stand-in upstream on loopback.
	up := &mdns.Server{Addr: "127.0.0.1:0", Net: "udp", Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		if r.Question[0].Name == "www.example.com." && r.Question[0].Qtype == mdns.TypeA {
			rr, _ := mdns.NewRR("www.example.com. 60 IN A 192.0.2.7")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	up.NotifyStartedFunc = func() { close(started) }
	go up.ListenAndServe()
	<-started
	defer up.Shutdown()
	upAddr := up.PacketConn.LocalAddr().String()

	_, addr := serve(t, dns.Config{Upstreams: []string{upAddr}}, fixture()...)
	r := exchange(t, "udp", addr, query("www.example.com.", mdns.TypeA))
	if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 || !r.RecursionAvailable || r.Authoritative {
		t.Fatalf("forwarded: %v", r)
	}
	r = exchange(t, "udp", addr, query("nope.example.com.", mdns.TypeA))
	if r.Rcode != mdns.RcodeNameError {
		t.Fatalf("forwarded NXDOMAIN: %v", r)
	}
	// ExternalName: the CNAME, then the upstream's answer.
	r = exchange(t, "udp", addr, query("ext.default.svc.cluster.local.", mdns.TypeA))
	got := rrs(r.Answer, false)
	want := []string{"ext.default.svc.cluster.local.\t0\tIN\tCNAME\twww.example.com.", "www.example.com.\t0\tIN\tA\t192.0.2.7"}
	if !slices.Equal(got, want) || !r.Authoritative {
		t.Fatalf("ExternalName chase: %q", got)
	}
	// Reverse names outside the cluster ranges go upstream too.
	r = exchange(t, "udp", addr, query("7.2.0.192.in-addr.arpa.", mdns.TypePTR))
	if r.Rcode != mdns.RcodeNameError || r.Authoritative {
		t.Fatalf("reverse outside the cluster: %v", r)
	}
}

func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig is not installed (apt-get install dnsutils)")
	}
	_, addr := serve(t, dns.Config{}, append(fixture(), bigHeadless(1000)...)...)
	host, port, _ := net.SplitHostPort(addr)
	run := func(args ...string) string {
		out, err := exec.Command(dig, append([]string{"@" + host, "-p", port, "+time=5", "+tries=1"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := run("+short", "nginx-headless.default.svc.cluster.local")
	got := strings.Fields(out)
	slices.Sort(got)
	if !slices.Equal(got, []string{"198.18.0.22", "198.18.0.23", "198.18.0.39"}) {
		t.Fatalf("dig nginx-headless: %q", out)
	}
	out = run("+tcp", "big.default.svc.cluster.local")
	if !strings.Contains(out, "ANSWER: 1000,") || !strings.Contains(out, "flags: qr aa rd;") {
		t.Fatalf("dig +tcp big: %s", out)
	}
	out = run("+ignore", "+bufsize=1232", "big.default.svc.cluster.local")
	if !strings.Contains(out, " tc ") && !strings.Contains(out, "flags: qr tc aa rd;") && !strings.Contains(out, "flags: qr aa tc rd;") {
		t.Fatalf("dig +ignore big over UDP, want TC: %s", out)
	}
	out = run("-x", "198.18.0.39", "+short")
	if strings.TrimSpace(out) != "web-2.nginx-headless.default.svc.cluster.local." {
		t.Fatalf("dig -x: %q", out)
	}
	out = run("nope.default.svc.cluster.local")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "IN\tSOA\tns.dns.cluster.local. hostmaster.cluster.local.") {
		t.Fatalf("dig NXDOMAIN: %s", out)
	}
}

// A burst from many clients at once (the server reads the waiting queries
// in batches): every query gets its own answer, sent to the client that
// asked, a malformed one among them included.
func TestUDPBurstEachClientGetsItsOwnAnswers(t *testing.T) {
	_, addr := serve(t, dns.Config{}, fixture()...)
	names := []string{"nginx.default.svc.cluster.local.", "nginx-headless.default.svc.cluster.local.", "missing.default.svc.cluster.local."}
	wantRcode := []int{mdns.RcodeSuccess, mdns.RcodeSuccess, mdns.RcodeNameError}
	// Waves of 8 clients × 10 queries sent before any answer is read (80
	// waiting at most: well inside the socket's receive buffer).
	const clients, wave, waves = 8, 10, 3
	var conns []net.Conn
	for range clients {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	buf := make([]byte, 65535)
	for w := range waves {
		for k := range wave {
			i := w*wave + k
			for c, conn := range conns {
				m := query(names[i%len(names)], mdns.TypeA)
				m.Id = uint16(c<<8 | i)
				b, err := m.Pack()
				if err != nil {
					t.Fatal(err)
				}
				if i%10 == 9 {
					b = b[:len(b)-3] // cut short: FORMERR
				}
				if _, err := conn.Write(b); err != nil {
					t.Fatal(err)
				}
			}
		}
		for c, conn := range conns {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			seen := map[uint16]bool{}
			for len(seen) < wave {
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("client %d, wave %d: %d of %d answers, then %v", c, w, len(seen), wave, err)
				}
				r := new(mdns.Msg)
				if err := r.Unpack(buf[:n]); err != nil {
					t.Fatalf("client %d: answer does not parse: %v", c, err)
				}
				i := int(r.Id & 0xff)
				if int(r.Id>>8) != c || i/wave != w || seen[r.Id] {
					t.Fatalf("client %d, wave %d got answer id %#x (another client's or wave's, or twice)", c, w, r.Id)
				}
				seen[r.Id] = true
				want := wantRcode[i%len(names)]
				if i%10 == 9 {
					want = mdns.RcodeFormatError
				} else if len(r.Question) != 1 || r.Question[0].Name != names[i%len(names)] {
					t.Fatalf("client %d, query %d: answer for %v, want %s", c, i, r.Question, names[i%len(names)])
				}
				if r.Rcode != want {
					t.Fatalf("client %d, query %d: rcode %s, want %s", c, i, mdns.RcodeToString[r.Rcode], mdns.RcodeToString[want])
				}
			}
		}
	}
}
