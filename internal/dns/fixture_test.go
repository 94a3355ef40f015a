package dns_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/headway/headway/internal/dns"
)

// The fixture cluster: the seed's StatefulSet behind nginx-headless, a
// ClusterIP Service over the same pods, and one Service per rule.
func ptr[T any](v T) *T { return &v }

func ns(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

func svc(ns, name, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{ClusterIP: clusterIP, Ports: ports, Type: corev1.ServiceTypeClusterIP}}
	if clusterIP != "" {
		s.Spec.ClusterIPs = []string{clusterIP}
	}
	return s
}

func port(name string, p int32, proto corev1.Protocol) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: p, Protocol: proto}
}

type ep struct {
	addr     string
	hostname string
	ready    *bool
}

func slice(ns, name, service string, ports []discoveryv1.EndpointPort, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
	}
	for _, e := range eps {
		if strings.Contains(e.addr, ":") {
			s.AddressType = discoveryv1.AddressTypeIPv6
		}
		d := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready}}
		if e.hostname != "" {
			d.Hostname = ptr(e.hostname)
		}
		s.Endpoints = append(s.Endpoints, d)
	}
	return s
}

func slicePort(name string, p int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr(name), Port: ptr(p), Protocol: ptr(corev1.ProtocolTCP)}
}

func pod(ns, name, ip string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Status: corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}}
}

// fixture is the cluster state every table test runs against.
func fixture() []runtime.Object {
	web := []discoveryv1.EndpointPort{slicePort("web", 80)}
	headless := svc("default", "nginx-headless", "None", port("web", 80, corev1.ProtocolTCP))
	headless.Spec.Selector = map[string]string{"app": "nginx"}
	publish := svc("default", "publish", "None", port("web", 80, corev1.ProtocolTCP))
	publish.Spec.PublishNotReadyAddresses = true
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "www.example.com"}}
	inext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "inext", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "nginx.default.svc.cluster.local"}}
	return []runtime.Object{
		ns("default"), ns("kube-system"), ns("other"),
		svc("kube-system", "kube-dns", "198.19.0.10", port("dns", 53, corev1.ProtocolUDP), port("dns-tcp", 53, corev1.ProtocolTCP)),
		headless,
		slice("default", "nginx-headless-abc", "nginx-headless", web,
			ep{addr: "198.18.0.22", hostname: "web-0"}, ep{addr: "198.18.0.23", hostname: "web-1", ready: ptr(true)},
			ep{addr: "198.18.0.39", hostname: "web-2"}, ep{addr: "198.18.0.40", hostname: "web-3", ready: ptr(false)}),
		svc("default", "nginx", "198.19.0.20", port("http", 80, corev1.ProtocolTCP), port("https", 443, corev1.ProtocolTCP)),
		slice("default", "nginx-xyz", "nginx", []discoveryv1.EndpointPort{slicePort("http", 80), slicePort("https", 443)},
			ep{addr: "198.18.0.22"}, ep{addr: "198.18.0.23"}),
		svc("default", "empty", "None", port("web", 80, corev1.ProtocolTCP)),
		svc("default", "notready", "None", port("web", 80, corev1.ProtocolTCP)),
		slice("default", "notready-1", "notready", web, ep{addr: "198.18.0.50", ready: ptr(false)}),
		publish,
		slice("default", "publish-1", "publish", web, ep{addr: "198.18.0.51", hostname: "p-0", ready: ptr(false)}),
		ext, inext,
		svc("other", "v6", "None", port("web", 80, corev1.ProtocolTCP)),
		slice("other", "v6-1", "v6", web, ep{addr: "fd00:18::5", hostname: "a"}),
		pod("default", "web-0", "198.18.0.22"),
		pod("default", "web-1", "198.18.0.23"),
	}
}

// bigHeadless is a headless Service with n ready endpoints (198.18.x.y).
func bigHeadless(n int) []runtime.Object {
	objs := []runtime.Object{svc("default", "big", "None", port("web", 80, corev1.ProtocolTCP))}
	var eps []ep
	for i := 0; i < n; i++ {
		eps = append(eps, ep{addr: fmt.Sprintf("198.18.%d.%d", 10+i/250, 1+i%250), hostname: fmt.Sprintf("big-%d", i)})
	}
	objs = append(objs, slice("default", "big-1", "big", []discoveryv1.EndpointPort{slicePort("web", 80)}, eps...))
	return objs
}

// testZone is the cluster domain the tests' servers answer for.
const testZone = "cluster.local"

// serve starts a DNS server on 127.0.0.1:0 answering for objs (in
// testZone unless cfg says another).
func serve(t testing.TB, cfg dns.Config, objs ...runtime.Object) (*dns.Handler, string) {
	t.Helper()
	if cfg.Metrics == nil {
		cfg.Metrics = dns.NewMetrics()
	}
	if cfg.Zone == "" {
		cfg.Zone = testZone
	}
	h, err := dns.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var as []any
	for _, o := range objs {
		as = append(as, o)
	}
	h.Apply(as...)
	srv, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h, srv.Addr().String()
}

func query(name string, qtype uint16) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func exchange(t testing.TB, network, addr string, m *mdns.Msg) *mdns.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := dns.Exchange(ctx, network, addr, m)
	if err != nil {
		t.Fatalf("%s %s over %s: %v", m.Question[0].Name, mdns.TypeToString[m.Question[0].Qtype], network, err)
	}
	return r
}

// rrs renders a section for comparison: sorted zone-file lines, TTLs kept
// unless ttl is false, SOA serials dropped.
func rrs(section []mdns.RR, ttl bool) []string {
	var out []string
	for _, rr := range section {
		if rr.Header().Rrtype == mdns.TypeOPT {
			continue
		}
		rr = mdns.Copy(rr)
		if !ttl {
			rr.Header().Ttl = 0
		}
		if soa, ok := rr.(*mdns.SOA); ok {
			soa.Serial = 0
		}
		out = append(out, rr.String())
	}
	sort.Strings(out)
	return out
}

// parseRRs turns expected zone-file lines into the same form as rrs.
func parseRRs(t testing.TB, lines []string) []string {
	t.Helper()
	var out []mdns.RR
	for _, l := range lines {
		rr, err := mdns.NewRR(l)
		if err != nil {
			t.Fatalf("bad expected record %q: %v", l, err)
		}
		out = append(out, rr)
	}
	return rrs(out, true)
}
