package dns

import (
	"net/netip"
	"slices"
	"testing"
)

const zoneName = "cluster.local."

func TestZoneNames(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{nameServerName(zoneName), "ns.dns.cluster.local."},
		{nameServerName("18.198.in-addr.arpa."), "ns.dns.18.198.in-addr.arpa."},
		{versionName(zoneName), "dns-version.cluster.local."},
		{namespaceName("default", "svc", zoneName), "default.svc.cluster.local."},
		{namespaceName("kube-system", "pod", "example.org."), "kube-system.pod.example.org."},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestNamespaceDefines(t *testing.T) {
	for _, c := range []struct {
		sub, mode string
		want      bool
	}{
		{"svc", PodsDisabled, true},
		{"svc", PodsVerified, true},
		{"pod", PodsDisabled, false},
		{"pod", PodsInsecure, true},
		{"pod", PodsVerified, true},
	} {
		if got := namespaceDefines(c.sub, c.mode); got != c.want {
			t.Errorf("namespaceDefines(%q, %q) = %v, want %v", c.sub, c.mode, got, c.want)
		}
	}
}

func TestServiceName(t *testing.T) {
	for _, c := range []struct{ svc, ns, zone, want string }{
		{"nginx", "default", zoneName, "nginx.default.svc.cluster.local."},
		{"kube-dns", "kube-system", "example.org.", "kube-dns.kube-system.svc.example.org."},
	} {
		if got := serviceName(c.svc, c.ns, c.zone); got != c.want {
			t.Errorf("serviceName(%q, %q, %q) = %q, want %q", c.svc, c.ns, c.zone, got, c.want)
		}
	}
}

func TestExternalTarget(t *testing.T) {
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", false},
		{"example.org.", "example.org.", true},
		{"203.0.113.7.", "", false}, // an address: no answer, as CoreDNS
		{"2001:db8::1.", "", false},
		{"db.other.svc.cluster.local.", "db.other.svc.cluster.local.", true},
	} {
		got, ok := externalTarget(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("externalTarget(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestServed(t *testing.T) {
	for _, c := range []struct{ ready, publishNotReady, want bool }{
		{true, false, true},
		{false, false, false},
		{false, true, true},
		{true, true, true},
	} {
		if got := served(c.ready, c.publishNotReady); got != c.want {
			t.Errorf("served(%v, %v) = %v", c.ready, c.publishNotReady, got)
		}
	}
}

func TestEndpointLabel(t *testing.T) {
	for _, c := range []struct {
		hostname, addr, want string
		explicit             bool
	}{
		{"web-0", "198.18.0.5", "web-0", true},
		{"", "198.18.0.5", "198-18-0-5", false},
		{"", "fd00::5", "fd00--5", false},
		{"", "fd00::", "fd00--0", false}, // no label ends in '-'
		{"", "2001:db8:0:0:1::", "2001-db8-0-0-1--0", false},
	} {
		got, explicit := endpointLabel(c.hostname, netip.MustParseAddr(c.addr))
		if got != c.want || explicit != c.explicit {
			t.Errorf("endpointLabel(%q, %s) = %q, %v; want %q, %v", c.hostname, c.addr, got, explicit, c.want, c.explicit)
		}
	}
	if got := endpointName("web-0", "nginx.default.svc.cluster.local."); got != "web-0.nginx.default.svc.cluster.local." {
		t.Errorf("endpointName = %q", got)
	}
}

func TestLabelOK(t *testing.T) {
	long := "a123456789b123456789c123456789d123456789e123456789f123456789abc"
	for _, c := range []struct {
		label string
		want  bool
	}{
		{"web-0", true},
		{long, true},        // 63 bytes
		{long + "d", false}, // 64
	} {
		if got := labelOK(c.label); got != c.want {
			t.Errorf("labelOK(%d bytes) = %v", len(c.label), got)
		}
	}
}

func TestPortName(t *testing.T) {
	for _, c := range []struct {
		p     portInfo
		named bool
		want  string
	}{
		{portInfo{name: "web", proto: "tcp", port: 80}, true, "_web._tcp.nginx.default.svc.cluster.local."},
		{portInfo{name: "dns", proto: "udp", port: 53}, true, "_dns._udp.nginx.default.svc.cluster.local."},
		{portInfo{name: "", proto: "tcp", port: 80}, false, ""},    // unnamed: no SRV name
		{portInfo{name: "web", proto: "tcp", port: -1}, false, ""}, // no number
	} {
		if got := portNamed(c.p); got != c.named {
			t.Errorf("portNamed(%+v) = %v", c.p, got)
		}
		if c.named {
			if got := portName(c.p.name, c.p.proto, "nginx.default.svc.cluster.local."); got != c.want {
				t.Errorf("portName(%+v) = %q, want %q", c.p, got, c.want)
			}
		}
	}
}

func TestSRVWeight(t *testing.T) {
	for _, c := range []struct {
		n    int
		want uint16
	}{
		{1, 100}, {2, 50}, {3, 33}, {7, 14}, {100, 1}, {101, 1}, {1000, 1},
	} {
		if got := srvWeight(c.n); got != c.want {
			t.Errorf("srvWeight(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}

func TestPodName(t *testing.T) {
	for _, c := range []struct{ addr, ns, want string }{
		{"198.18.0.5", "default", "198-18-0-5.default.pod.cluster.local."},
		{"fd00::5", "web", "fd00--5.web.pod.cluster.local."},
		{"fd00::", "web", "fd00--.web.pod.cluster.local."},
	} {
		if got := podName(netip.MustParseAddr(c.addr), c.ns, zoneName); got != c.want {
			t.Errorf("podName(%s, %q) = %q, want %q", c.addr, c.ns, got, c.want)
		}
	}
}

func TestPodAddr(t *testing.T) {
	for _, c := range []struct {
		label, want string
		ok          bool
	}{
		{"198-18-0-5", "198.18.0.5", true},
		{"fd00--5", "fd00::5", true},
		{"fd00-0-0-0-0-0-0-5", "fd00::5", true},
		{"198-18-0", "", false},
		{"198-18--0-5", "198:18::5", true}, // "--": read as IPv6
		{"198-18-0-5-1", "", false},
		{"web-0", "", false},
		{"fe80--1%eth0", "", false},
	} {
		a, ok := podAddr(c.label)
		if ok != c.ok || (ok && a != netip.MustParseAddr(c.want)) {
			t.Errorf("podAddr(%q) = %v, %v; want %q, %v", c.label, a, ok, c.want, c.ok)
		}
	}
}

func TestReverseName(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"198.18.0.5", "5.0.18.198.in-addr.arpa."},
		{"198.19.0.11", "11.0.19.198.in-addr.arpa."},
		{"fd00::5", "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa."},
	} {
		if got := reverseName(netip.MustParseAddr(c.addr)); got != c.want {
			t.Errorf("reverseName(%s) = %q, want %q", c.addr, got, c.want)
		}
	}
}

func TestPTRNames(t *testing.T) {
	svc := ptrTarget{name: "nginx.default.svc.cluster.local.", prio: prioClusterIP}
	host := func(n string) ptrTarget { return ptrTarget{name: n, prio: endpointPrio(true)} }
	dash := func(n string) ptrTarget { return ptrTarget{name: n, prio: endpointPrio(false)} }
	for _, c := range []struct {
		in   []ptrTarget
		want []string
	}{
		{[]ptrTarget{svc}, []string{svc.name}},
		// A cluster IP names its Service only.
		{[]ptrTarget{host("web-0.a."), svc}, []string{svc.name}},
		// Endpoint names: from hostnames first, each in name order, once.
		{[]ptrTarget{dash("198-18-0-5.b."), host("web-0.b."), host("web-0.a."), host("web-0.b.")}, []string{"web-0.a.", "web-0.b.", "198-18-0-5.b."}},
		{[]ptrTarget{dash("z."), dash("a.")}, []string{"a.", "z."}},
	} {
		if got := ptrNames(slices.Clone(c.in)); !slices.Equal(got, c.want) {
			t.Errorf("ptrNames(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
