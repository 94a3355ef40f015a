package dns_test

import (
	"net/netip"
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/headway/headway/internal/dns"
)

// TestIncrementalUpdates: a Service's names and its addresses' PTR records
// follow each change of its slices (one endpoint at a time, as a change
// costs), including a hostname changing on the same address, inside a
// reverse zone whose apex is one label above the PTR names.
func TestIncrementalUpdates(t *testing.T) {
	cfg := dns.Config{ReverseCIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.5.0/24")}}
	web := []discoveryv1.EndpointPort{slicePort("web", 80)}
	s1 := slice("default", "web-1", "web", web,
		ep{addr: "198.18.5.1", hostname: "a"}, ep{addr: "198.18.5.2", hostname: "b", ready: ptr(false)}, ep{addr: "198.18.5.3"})
	s2 := slice("default", "web-2", "web", web, ep{addr: "fd00:18::7", hostname: "v6"})
	h, addr := serve(t, cfg, ns("default"), svc("default", "web", "None", port("web", 80, corev1.ProtocolTCP)), s1, s2)

	check := func(step string, ws ...want) {
		t.Helper()
		checkAnswers(t, addr, step, ws...)
	}
	const base = "web.default.svc.cluster.local."
	check("start",
		want{base, mdns.TypeA, 0, []string{"198.18.5.1", "198.18.5.3"}},
		want{"a." + base, mdns.TypeA, 0, []string{"198.18.5.1"}},
		want{"198-18-5-3." + base, mdns.TypeA, 0, []string{"198.18.5.3"}},
		want{"b." + base, mdns.TypeA, mdns.RcodeNameError, nil},
		want{"v6." + base, mdns.TypeAAAA, 0, []string{"fd00:18::7"}},
		want{"_web._tcp." + base, mdns.TypeSRV, 0, []string{"198-18-5-3." + base, "a." + base, "v6." + base}},
		want{"_web._udp." + base, mdns.TypeSRV, mdns.RcodeNameError, nil},
		want{"1.5.18.198.in-addr.arpa.", mdns.TypePTR, 0, []string{"a." + base}},
		want{"2.5.18.198.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, nil},
		want{"3.5.18.198.in-addr.arpa.", mdns.TypePTR, 0, []string{"198-18-5-3." + base}},
		want{"03.5.18.198.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, nil},
		want{"7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.1.0.0.0.0.d.f.ip6.arpa.", mdns.TypePTR, 0, []string{"v6." + base}},
	)

	// b becomes ready: its name, its address's PTR record and the
	// Service's records gain it.
	s1 = s1.DeepCopy()
	s1.Endpoints[1].Conditions.Ready = ptr(true)
	h.Apply(s1)
	check("b ready",
		want{base, mdns.TypeA, 0, []string{"198.18.5.1", "198.18.5.2", "198.18.5.3"}},
		want{"b." + base, mdns.TypeA, 0, []string{"198.18.5.2"}},
		want{"2.5.18.198.in-addr.arpa.", mdns.TypePTR, 0, []string{"b." + base}},
	)

	// a's hostname changes on the same address: the PTR record (whose
	// owners did not change) follows.
	s1 = s1.DeepCopy()
	s1.Endpoints[0].Hostname = ptr("z")
	h.Apply(s1)
	check("a renamed z",
		want{"a." + base, mdns.TypeA, mdns.RcodeNameError, nil},
		want{"z." + base, mdns.TypeA, 0, []string{"198.18.5.1"}},
		want{"1.5.18.198.in-addr.arpa.", mdns.TypePTR, 0, []string{"z." + base}},
	)

	// A second Service over the same address: both names in its PTR record.
	h.Apply(svc("default", "other", "None", port("web", 80, corev1.ProtocolTCP)),
		slice("default", "other-1", "other", web, ep{addr: "198.18.5.1", hostname: "o"}))
	check("second owner",
		want{"1.5.18.198.in-addr.arpa.", mdns.TypePTR, 0, []string{"o.other.default.svc.cluster.local.", "z." + base}},
	)

	// The slices go: the Service's names and PTR records go with them,
	// the other Service's stay.
	del := func(s *discoveryv1.EndpointSlice) *discoveryv1.EndpointSlice {
		s = s.DeepCopy()
		s.Labels = nil // belongs to no Service any more
		return s
	}
	h.Apply(del(s1), del(s2))
	check("slices gone",
		want{base, mdns.TypeA, mdns.RcodeNameError, nil},
		want{"z." + base, mdns.TypeA, mdns.RcodeNameError, nil},
		want{"3.5.18.198.in-addr.arpa.", mdns.TypePTR, mdns.RcodeNameError, nil},
		want{"1.5.18.198.in-addr.arpa.", mdns.TypePTR, 0, []string{"o.other.default.svc.cluster.local."}},
	)
}

// want is a query and the answer it should get.
type want struct {
	name  string
	qtype uint16
	rcode int
	rrs   []string // sorted answer data
}

// checkAnswers asks addr each query of ws over UDP and compares the rcode
// and the answer's data.
func checkAnswers(t *testing.T, addr, step string, ws ...want) {
	t.Helper()
	for _, w := range ws {
		r := exchange(t, "udp", addr, query(w.name, w.qtype))
		var got []string
		for _, rr := range r.Answer {
			switch v := rr.(type) {
			case *mdns.A:
				got = append(got, v.A.String())
			case *mdns.AAAA:
				got = append(got, v.AAAA.String())
			case *mdns.PTR:
				got = append(got, v.Ptr)
			case *mdns.SRV:
				got = append(got, v.Target)
			}
		}
		slices.Sort(got)
		if r.Rcode != w.rcode || !slices.Equal(got, w.rrs) {
			t.Errorf("%s: %s %s: rcode %s answer %q, want %s %q", step, w.name, mdns.TypeToString[w.qtype],
				mdns.RcodeToString[r.Rcode], got, mdns.RcodeToString[w.rcode], w.rrs)
		}
	}
}

// TestEndpointNamesAcrossSlices: an endpoint name is looked up in each
// slice's table and built from every slice that has its label (one
// hostname in an IPv4 and an IPv6 slice); a name already answered follows
// a change of any of its slices, of another slice, and of the Service's
// publishNotReadyAddresses, and a label that moves between slices.
func TestEndpointNamesAcrossSlices(t *testing.T) {
	web := []discoveryv1.EndpointPort{slicePort("web", 80)}
	v4 := slice("default", "db-v4", "db", web,
		ep{addr: "198.18.6.1", hostname: "d"}, ep{addr: "198.18.6.2", hostname: "e", ready: ptr(false)})
	v6 := slice("default", "db-v6", "db", web, ep{addr: "fd00:18::1", hostname: "d"})
	other := slice("default", "db-x", "db", web, ep{addr: "198.18.6.9", hostname: "x"})
	service := svc("default", "db", "None", port("web", 80, corev1.ProtocolTCP))
	h, addr := serve(t, dns.Config{}, ns("default"), service, v4, v6, other)
	const base = "db.default.svc.cluster.local."
	check := func(step string, ws ...want) {
		t.Helper()
		checkAnswers(t, addr, step, ws...)
	}
	check("start",
		want{"d." + base, mdns.TypeA, 0, []string{"198.18.6.1"}},
		want{"d." + base, mdns.TypeAAAA, 0, []string{"fd00:18::1"}},
		want{"d." + base, mdns.TypeSRV, 0, []string{"d." + base}},
		want{"e." + base, mdns.TypeA, mdns.RcodeNameError, nil},
		want{"x." + base, mdns.TypeA, 0, []string{"198.18.6.9"}},
	)

	// The IPv6 slice changes d's address; d's name (answered from the
	// IPv4 slice's table first) has both slices' current addresses.
	v6 = v6.DeepCopy()
	v6.Endpoints[0].Addresses = []string{"fd00:18::2"}
	h.Apply(v6)
	check("v6 address changed",
		want{"d." + base, mdns.TypeAAAA, 0, []string{"fd00:18::2"}},
		want{"d." + base, mdns.TypeA, 0, []string{"198.18.6.1"}},
	)

	// Another slice changes: the names of the unchanged ones stay.
	other = other.DeepCopy()
	other.Endpoints[0].Addresses = []string{"198.18.6.10"}
	h.Apply(other)
	check("other slice changed",
		want{"x." + base, mdns.TypeA, 0, []string{"198.18.6.10"}},
		want{"d." + base, mdns.TypeA, 0, []string{"198.18.6.1"}},
		want{"d." + base, mdns.TypeAAAA, 0, []string{"fd00:18::2"}},
	)

	// The Service publishes not-ready addresses: e (not ready) gets its
	// name from the same, unchanged slice; and loses it again.
	pub := service.DeepCopy()
	pub.Spec.PublishNotReadyAddresses = true
	h.Apply(pub)
	check("publishNotReadyAddresses", want{"e." + base, mdns.TypeA, 0, []string{"198.18.6.2"}})
	h.Apply(service.DeepCopy())
	check("ready only again", want{"e." + base, mdns.TypeA, mdns.RcodeNameError, nil})

	// d leaves the IPv4 slice and joins the other one.
	v4 = v4.DeepCopy()
	v4.Endpoints = v4.Endpoints[1:]
	other = other.DeepCopy()
	other.Endpoints = append(other.Endpoints, discoveryv1.Endpoint{Addresses: []string{"198.18.6.11"}, Hostname: ptr("d")})
	h.Apply(v4, other)
	check("d moved",
		want{"d." + base, mdns.TypeA, 0, []string{"198.18.6.11"}},
		want{"d." + base, mdns.TypeAAAA, 0, []string{"fd00:18::2"}},
		want{"x." + base, mdns.TypeA, 0, []string{"198.18.6.10"}},
	)
}
