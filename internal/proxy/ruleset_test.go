package proxy

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// svcT builds a Service for the table tests.
func svcT(name, clusterIP string, mutate ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: clusterIP,
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("web")}},
		},
	}
	for _, m := range mutate {
		m(s)
	}
	return s
}

// sliceT builds an EndpointSlice: eps are "ip" (ready), "ip:term" (serving,
// terminating), "ip:gone" (terminating, not serving), "ip:notready".
func sliceT(svc, name, portName string, proto corev1.Protocol, port int32, eps ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: map[string]string{ServiceNameLabel: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Protocol: ptr.To(proto), Port: ptr.To(port)}},
	}
	for _, e := range eps {
		ip, state, _ := strings.Cut(e, ":")
		c := discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}
		switch state {
		case "term":
			c = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
		case "gone":
			c = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(true)}
		case "notready":
			c = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(false), Terminating: ptr.To(false)}
		case "unset":
			c = discoveryv1.EndpointConditions{}
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: c})
	}
	return s
}

var unitCfg = RulesConfig{PodCIDR: netip.MustParsePrefix("198.18.0.0/16"), ServiceCIDR: netip.MustParsePrefix("198.19.0.0/16"), Bridge: "headway0"}

func TestRuleset(t *testing.T) {
	const web = "svc-ns/web/tcp/80"
	ep := func(ip string, port int) string { return "ep-ns/web/tcp/80__" + ip + "/" + itoa(port) }
	tests := []struct {
		name     string
		services []*corev1.Service
		slices   []*discoveryv1.EndpointSlice
		want     []string
	}{
		{
			name:     "ClusterIP with two ready endpoints: DNAT spread by numgen",
			services: []*corev1.Service{svcT("web", "198.19.0.5")},
			slices:   []*discoveryv1.EndpointSlice{sliceT("web", "web-1", "http", corev1.ProtocolTCP, 8080, "198.18.0.11", "198.18.0.12")},
			want: []string{
				"chain " + ep("198.18.0.11", 8080) + " #0: ip saddr 198.18.0.11 jump mark-for-masquerade",
				"chain " + ep("198.18.0.11", 8080) + " #1: meta l4proto tcp dnat to 198.18.0.11:8080",
				"chain " + ep("198.18.0.12", 8080) + " #0: ip saddr 198.18.0.12 jump mark-for-masquerade",
				"chain " + ep("198.18.0.12", 8080) + " #1: meta l4proto tcp dnat to 198.18.0.12:8080",
				"chain " + web + " #0: ip saddr != 198.18.0.0/16 jump mark-for-masquerade",
				"chain " + web + " #1: numgen random mod 2 vmap { 0 : goto " + ep("198.18.0.11", 8080) + ", 1 : goto " + ep("198.18.0.12", 8080) + " }",
				"map service-ips: 198.19.0.5 . tcp . 80 : goto " + web,
			},
		},
		{
			name:     "headless: nothing at all",
			services: []*corev1.Service{svcT("web", corev1.ClusterIPNone)},
			slices:   []*discoveryv1.EndpointSlice{sliceT("web", "web-1", "http", corev1.ProtocolTCP, 8080, "198.18.0.11")},
		},
		{
			name: "ExternalName: nothing at all",
			services: []*corev1.Service{svcT("web", "", func(s *corev1.Service) {
				s.Spec.Type, s.Spec.ExternalName, s.Spec.Selector = corev1.ServiceTypeExternalName, "db.example.com", nil
			})},
		},
		{
			name:     "handed to another proxy: nothing",
			services: []*corev1.Service{svcT("web", "198.19.0.5", func(s *corev1.Service) { s.Labels = map[string]string{ServiceProxyNameLabel: "other"} })},
			slices:   []*discoveryv1.EndpointSlice{sliceT("web", "web-1", "http", corev1.ProtocolTCP, 8080, "198.18.0.11")},
		},
		{
			name:     "no endpoints: rejected",
			services: []*corev1.Service{svcT("web", "198.19.0.5")},
			slices:   []*discoveryv1.EndpointSlice{sliceT("web", "web-1", "http", corev1.ProtocolTCP, 8080)},
			want:     []string{"map no-endpoint-services: 198.19.0.5 . tcp . 80 : goto reject-chain"},
		},
		{
			name:     "selector but no slice yet: rejected",
			services: []*corev1.Service{svcT("web", "198.19.0.5")},
			want:     []string{"map no-endpoint-services: 198.19.0.5 . tcp . 80 : goto reject-chain"},
		},
		{
			name:     "no selector and no slice (kube-dns, answered by the node): nothing",
			services: []*corev1.Service{svcT("web", "198.19.0.10", func(s *corev1.Service) { s.Spec.Selector = nil })},
		},
		{
			name:     "only not-ready and terminating-not-serving endpoints: rejected",
			services: []*corev1.Service{svcT("web", "198.19.0.5")},
			slices:   []*discoveryv1.EndpointSlice{sliceT("web", "web-1", "http", corev1.ProtocolTCP, 8080, "198.18.0.11:notready", "198.18.0.12:gone")},
			want:     []string{"map no-endpoint-services: 198.19.0.5 . tcp . 80 : goto reject-chain"},
		},
		{
			name:     "NodePort without endpoints: both rejected",
			services: []*corev1.Service{svcT("web", "198.19.0.5", nodePort(30080))},
			want: []string{
				"map no-endpoint-nodeports: tcp . 30080 : goto reject-chain",
				"map no-endpoint-services: 198.19.0.5 . tcp . 80 : goto reject-chain",
			},
		},
		{
			name:     "NodePort with an endpoint",
			services: []*corev1.Service{svcT("web", "198.19.0.5", nodePort(30080))},
			slices:   []*discoveryv1.EndpointSlice{sliceT("web", "web-1", "http", corev1.ProtocolTCP, 8080, "198.18.0.11")},
			want: []string{
				"chain " + ep("198.18.0.11", 8080) + " #0: ip saddr 198.18.0.11 jump mark-for-masquerade",
				"chain " + ep("198.18.0.11", 8080) + " #1: meta l4proto tcp dnat to 198.18.0.11:8080",
				"chain " + web + " #0: ip saddr != 198.18.0.0/16 jump mark-for-masquerade",
				"chain " + web + " #1: goto " + ep("198.18.0.11", 8080),
				"map service-ips: 198.19.0.5 . tcp . 80 : goto " + web,
				"map service-nodeports: tcp . 30080 : goto " + web,
			},
		},
		{
			name: "ClientIP affinity: a set per endpoint with the timeout",
			services: []*corev1.Service{svcT("web", "198.19.0.5", func(s *corev1.Service) {
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
				s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](30)}}
			})},
			slices: []*discoveryv1.EndpointSlice{sliceT("web", "web-1", "http", corev1.ProtocolTCP, 8080, "198.18.0.11")},
			want: []string{
				"chain " + ep("198.18.0.11", 8080) + " #0: ip saddr 198.18.0.11 jump mark-for-masquerade",
				"chain " + ep("198.18.0.11", 8080) + " #1: update @aff-ns/web/tcp/80__198.18.0.11/8080/30s { ip saddr }",
				"chain " + ep("198.18.0.11", 8080) + " #2: meta l4proto tcp dnat to 198.18.0.11:8080",
				"chain " + web + " #0: ip saddr != 198.18.0.0/16 jump mark-for-masquerade",
				"chain " + web + " #1: ip saddr @aff-ns/web/tcp/80__198.18.0.11/8080/30s goto " + ep("198.18.0.11", 8080),
				"chain " + web + " #2: goto " + ep("198.18.0.11", 8080),
				"map service-ips: 198.19.0.5 . tcp . 80 : goto " + web,
				"set aff-ns/web/tcp/80__198.18.0.11/8080/30s: timeout 30s",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Ruleset(tt.services, tt.slices, unitCfg)
			want := slices.Clone(tt.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
		})
	}
}

func nodePort(port int32) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = port
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestServicePorts covers which endpoints a port gets.
func TestServicePorts(t *testing.T) {
	twoPorts := svcT("web", "198.19.0.5", func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{
			{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP},
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
		}
	})
	tests := []struct {
		name   string
		svc    *corev1.Service
		slices []*discoveryv1.EndpointSlice
		want   map[string][]string // port ID → endpoints
	}{
		{
			name: "ready endpoints win over terminating ones",
			svc:  svcT("web", "198.19.0.5"),
			slices: []*discoveryv1.EndpointSlice{sliceT("web", "w", "http", corev1.ProtocolTCP, 8080,
				"198.18.0.11", "198.18.0.12:term", "198.18.0.13:notready")},
			want: map[string][]string{"ns/web/tcp/80": {"198.18.0.11:8080"}},
		},
		{
			name: "terminating-but-serving when none is ready",
			svc:  svcT("web", "198.19.0.5"),
			slices: []*discoveryv1.EndpointSlice{sliceT("web", "w", "http", corev1.ProtocolTCP, 8080,
				"198.18.0.12:term", "198.18.0.13:gone", "198.18.0.14:notready")},
			want: map[string][]string{"ns/web/tcp/80": {"198.18.0.12:8080"}},
		},
		{
			name: "unset conditions mean ready",
			svc:  svcT("web", "198.19.0.5"),
			slices: []*discoveryv1.EndpointSlice{sliceT("web", "w", "http", corev1.ProtocolTCP, 8080,
				"198.18.0.11:unset")},
			want: map[string][]string{"ns/web/tcp/80": {"198.18.0.11:8080"}},
		},
		{
			name: "named targetPort resolved per endpoint, duplicates across slices merged",
			svc:  svcT("web", "198.19.0.5"),
			slices: []*discoveryv1.EndpointSlice{
				sliceT("web", "w1", "http", corev1.ProtocolTCP, 8080, "198.18.0.11", "198.18.0.12"),
				sliceT("web", "w2", "http", corev1.ProtocolTCP, 9090, "198.18.0.13"),
				sliceT("web", "w3", "http", corev1.ProtocolTCP, 8080, "198.18.0.11"),
			},
			want: map[string][]string{"ns/web/tcp/80": {"198.18.0.11:8080", "198.18.0.12:8080", "198.18.0.13:9090"}},
		},
		{
			name: "ports matched by name and protocol; IPv6 slices ignored",
			svc:  twoPorts,
			slices: []*discoveryv1.EndpointSlice{
				sliceT("web", "w1", "http", corev1.ProtocolTCP, 8080, "198.18.0.11"),
				sliceT("web", "w2", "dns", corev1.ProtocolUDP, 5353, "198.18.0.12"),
				sliceT("web", "w3", "dns", corev1.ProtocolTCP, 5353, "198.18.0.13"),
				func() *discoveryv1.EndpointSlice {
					s := sliceT("web", "w6", "http", corev1.ProtocolTCP, 8080, "fd00::1")
					s.AddressType = discoveryv1.AddressTypeIPv6
					return s
				}(),
			},
			want: map[string][]string{"ns/web/tcp/80": {"198.18.0.11:8080"}, "ns/web/udp/53": {"198.18.0.12:5353"}},
		},
		{
			name: "headless gets no ports",
			svc:  svcT("web", "None"),
			slices: []*discoveryv1.EndpointSlice{
				sliceT("web", "w1", "http", corev1.ProtocolTCP, 8080, "198.18.0.11"),
			},
			want: map[string][]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string][]string{}
			for _, sp := range ServicePorts(tt.svc, tt.slices) {
				eps := []string{}
				for _, e := range sp.Endpoints {
					eps = append(eps, e.String())
				}
				got[sp.ID()] = eps
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for id, w := range tt.want {
				if !slices.Equal(got[id], w) {
					t.Errorf("%s: got %v, want %v", id, got[id], w)
				}
			}
		})
	}
}
