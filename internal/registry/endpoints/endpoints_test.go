package endpoints

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func endpoints(subsets ...corev1.EndpointSubset) *corev1.Endpoints {
	return &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Subsets: subsets}
}

func addrs(ips ...string) []corev1.EndpointAddress {
	var out []corev1.EndpointAddress
	for _, ip := range ips {
		out = append(out, corev1.EndpointAddress{IP: ip})
	}
	return out
}

func TestDefault(t *testing.T) {
	e := endpoints(corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Port: 80}, {Port: 53, Protocol: corev1.ProtocolUDP}}},
		corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Port: 443}}})
	Resource().Default(e)
	if p := e.Subsets[0].Ports; p[0].Protocol != corev1.ProtocolTCP || p[1].Protocol != corev1.ProtocolUDP {
		t.Errorf("ports %v, want TCP by default and UDP kept", p)
	}
	if p := e.Subsets[1].Ports; p[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("second subset ports %v, want TCP", p)
	}
}

func TestValidate(t *testing.T) {
	r := Resource()
	ports := []corev1.EndpointPort{{Name: "http", Port: 80}}
	for _, tc := range []struct {
		name string
		obj  *corev1.Endpoints
		want []string
	}{
		{"none", endpoints(), nil},
		{"good", endpoints(corev1.EndpointSubset{Addresses: addrs("198.18.0.1", "fd00::1"), NotReadyAddresses: addrs("198.18.0.2"), Ports: ports}), nil},
		{"bad address", endpoints(corev1.EndpointSubset{Addresses: addrs("198.18.0.1", "not-an-ip"), Ports: ports}),
			[]string{"subsets[0].addresses[1].ip: Invalid value"}},
		// kube-apiserver names the list the address is in; the not-ready
		// ones were reported as addresses[len(addresses)+i].
		{"bad not-ready address", endpoints(corev1.EndpointSubset{Addresses: addrs("198.18.0.1"), NotReadyAddresses: addrs("198.18.0.2", "bogus"), Ports: ports}),
			[]string{"subsets[0].notReadyAddresses[1].ip: Invalid value"}},
		{"bad hostname", endpoints(corev1.EndpointSubset{Addresses: []corev1.EndpointAddress{{IP: "198.18.0.1", Hostname: "Web_0"}}, Ports: ports}),
			[]string{"subsets[0].addresses[0].hostname: Invalid value"}},
		{"bad not-ready hostname", endpoints(corev1.EndpointSubset{NotReadyAddresses: []corev1.EndpointAddress{{IP: "198.18.0.1", Hostname: "a.b"}}, Ports: ports}),
			[]string{"subsets[0].notReadyAddresses[0].hostname: Invalid value"}},
		{"port 0 in the second subset", endpoints(corev1.EndpointSubset{Addresses: addrs("198.18.0.1"), Ports: ports},
			corev1.EndpointSubset{Addresses: addrs("198.18.0.2"), Ports: []corev1.EndpointPort{{Port: 80}, {Port: 0}}}),
			[]string{"subsets[1].ports[1].port: Invalid value"}},
		{"port above 65535", endpoints(corev1.EndpointSubset{Addresses: addrs("198.18.0.1"), Ports: []corev1.EndpointPort{{Port: 70000}}}),
			[]string{"subsets[0].ports[0].port: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registrytest.Errors(t, r.Validate(tc.obj), tc.want...)
			registrytest.Errors(t, r.ValidateUpdate(tc.obj, endpoints()), tc.want...)
		})
	}
}

func TestRow(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		obj  *corev1.Endpoints
		want string
	}{
		{"none", endpoints(), "<none>"},
		{"not ready only", endpoints(corev1.EndpointSubset{NotReadyAddresses: addrs("198.18.0.1"), Ports: []corev1.EndpointPort{{Port: 80}}}), "<none>"},
		{"address and port", endpoints(corev1.EndpointSubset{Addresses: addrs("198.18.0.1"), Ports: []corev1.EndpointPort{{Port: 80}}}), "198.18.0.1:80"},
		{"no ports", endpoints(corev1.EndpointSubset{Addresses: addrs("198.18.0.1")}), "198.18.0.1"},
		{"more than three", endpoints(corev1.EndpointSubset{Addresses: addrs("198.18.0.1", "198.18.0.2"), Ports: []corev1.EndpointPort{{Port: 80}, {Port: 443}}}),
			"198.18.0.1:80,198.18.0.1:443,198.18.0.2:80 + 1 more..."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			row, err := r.Row(tc.obj)
			if err != nil || row[1] != tc.want {
				t.Fatalf("endpoints column %q (%v), want %q", row[1], err, tc.want)
			}
		})
	}
}
