package endpointslice

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/registry/registrytest"
)

func slice(at discoveryv1.AddressType, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-abc", Namespace: "default"}, AddressType: at, Endpoints: eps,
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80)}}}
}

func ep(addrs ...string) discoveryv1.Endpoint { return discoveryv1.Endpoint{Addresses: addrs} }

func TestDefault(t *testing.T) {
	s := slice(discoveryv1.AddressTypeIPv4)
	s.Ports = append(s.Ports, discoveryv1.EndpointPort{Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)})
	Resource().Default(s)
	if *s.Ports[0].Protocol != corev1.ProtocolTCP || *s.Ports[1].Protocol != corev1.ProtocolUDP {
		t.Fatalf("protocols %v %v, want TCP by default and UDP kept", *s.Ports[0].Protocol, *s.Ports[1].Protocol)
	}
}

func TestValidate(t *testing.T) {
	many := make([]discoveryv1.Endpoint, MaxEndpoints+1)
	for i := range many {
		many[i] = ep(fmt.Sprintf("10.0.%d.%d", i/250, i%250+1))
	}
	hundredOne := make([]string, 101)
	for i := range hundredOne {
		hundredOne[i] = fmt.Sprintf("10.1.0.%d", i+1)
	}
	for _, tc := range []struct {
		name string
		obj  *discoveryv1.EndpointSlice
		want []string
	}{
		{"IPv4", slice(discoveryv1.AddressTypeIPv4, ep("198.18.0.1"), ep("198.18.0.2")), nil},
		{"IPv6", slice(discoveryv1.AddressTypeIPv6, ep("fd00::1")), nil},
		{"FQDN", slice(discoveryv1.AddressTypeFQDN, ep("db.example.com")), nil},
		{"no endpoints", slice(discoveryv1.AddressTypeIPv4), nil},
		{"unknown address type", slice("IPv5", ep("198.18.0.1")), []string{"addressType: Unsupported value"}},
		{"IPv6 address in an IPv4 slice", slice(discoveryv1.AddressTypeIPv4, ep("198.18.0.1"), ep("fd00::1")),
			[]string{"endpoints[1].addresses[0]: Invalid value"}},
		{"IPv4 address in an IPv6 slice", slice(discoveryv1.AddressTypeIPv6, ep("198.18.0.1")), []string{"endpoints[0].addresses[0]: Invalid value"}},
		{"bad FQDN", slice(discoveryv1.AddressTypeFQDN, ep("not_a_name")), []string{"endpoints[0].addresses[0]: Invalid value"}},
		{"endpoint without addresses", slice(discoveryv1.AddressTypeIPv4, ep()), []string{"endpoints[0].addresses: Invalid value"}},
		{"endpoint with 101 addresses", slice(discoveryv1.AddressTypeIPv4, ep(hundredOne...)), []string{"endpoints[0].addresses: Invalid value"}},
		{"too many endpoints", slice(discoveryv1.AddressTypeIPv4, many...), []string{"endpoints: Too many"}},
		{"bad hostname", slice(discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"198.18.0.1"}, Hostname: ptr.To("web.0")}),
			[]string{"endpoints[0].hostname: Invalid value"}},
		{"bad port name", func() *discoveryv1.EndpointSlice {
			s := slice(discoveryv1.AddressTypeIPv4, ep("198.18.0.1"))
			s.Ports[0].Name = ptr.To("HTTP_PORT")
			return s
		}(), []string{"ports[0].name: Invalid value"}},
		{"empty port name and no port", func() *discoveryv1.EndpointSlice {
			s := slice(discoveryv1.AddressTypeIPv4, ep("198.18.0.1"))
			s.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("")}}
			return s
		}(), nil},
		{"port 0", func() *discoveryv1.EndpointSlice {
			s := slice(discoveryv1.AddressTypeIPv4, ep("198.18.0.1"))
			s.Ports = append(s.Ports, discoveryv1.EndpointPort{Port: ptr.To[int32](0)})
			return s
		}(), []string{"ports[1].port: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registrytest.Errors(t, Validate(tc.obj), tc.want...)
			registrytest.Errors(t, Resource().Validate(tc.obj), tc.want...)
		})
	}
}

func TestValidateUpdate(t *testing.T) {
	r := Resource()
	old := slice(discoveryv1.AddressTypeIPv4, ep("198.18.0.1"))
	registrytest.Errors(t, r.ValidateUpdate(slice(discoveryv1.AddressTypeIPv4, ep("198.18.0.2")), old))
	registrytest.Errors(t, r.ValidateUpdate(slice(discoveryv1.AddressTypeIPv6, ep("fd00::2")), old), []string{"addressType: Invalid value"}...)
}

func TestRow(t *testing.T) {
	s := slice(discoveryv1.AddressTypeIPv4, ep("198.18.0.1", "198.18.0.2"), ep("198.18.0.3"), ep("198.18.0.4"))
	s.Ports = append(s.Ports, discoveryv1.EndpointPort{})
	row, err := Resource().Row(s)
	if err != nil || row[1] != "IPv4" || row[2] != "80,<unset>" || row[3] != "198.18.0.1,198.18.0.2,198.18.0.3 + 1 more..." {
		t.Fatalf("row %v (%v)", row, err)
	}
	row, _ = Resource().Row(&discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4})
	if row[2] != "<unset>" || row[3] != "<unset>" {
		t.Fatalf("empty slice row %v", row)
	}
}
