package endpointslice

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

type fieldErr struct {
	typ  field.ErrorType
	path string
}

func check(t *testing.T, errs field.ErrorList, want []fieldErr) {
	t.Helper()
	if len(errs) != len(want) {
		t.Fatalf("got %v, want %v", errs, want)
	}
	for i, e := range errs {
		if e.Type != want[i].typ || e.Field != want[i].path {
			t.Errorf("error %d = %s %q, want %s %q", i, e.Type, e.Field, want[i].typ, want[i].path)
		}
	}
}

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
		want []fieldErr
	}{
		{"IPv4", slice(discoveryv1.AddressTypeIPv4, ep("10.0.0.1"), ep("10.0.0.2")), nil},
		{"IPv6", slice(discoveryv1.AddressTypeIPv6, ep("fd00::1")), nil},
		{"FQDN", slice(discoveryv1.AddressTypeFQDN, ep("db.example.com")), nil},
		{"no endpoints", slice(discoveryv1.AddressTypeIPv4), nil},
		{"unknown address type", slice("IPv5", ep("10.0.0.1")), []fieldErr{{field.ErrorTypeNotSupported, "addressType"}}},
		{"IPv6 address in an IPv4 slice", slice(discoveryv1.AddressTypeIPv4, ep("10.0.0.1"), ep("fd00::1")),
			[]fieldErr{{field.ErrorTypeInvalid, "endpoints[1].addresses[0]"}}},
		{"IPv4 address in an IPv6 slice", slice(discoveryv1.AddressTypeIPv6, ep("10.0.0.1")), []fieldErr{{field.ErrorTypeInvalid, "endpoints[0].addresses[0]"}}},
		{"bad FQDN", slice(discoveryv1.AddressTypeFQDN, ep("not_a_name")), []fieldErr{{field.ErrorTypeInvalid, "endpoints[0].addresses[0]"}}},
		{"endpoint without addresses", slice(discoveryv1.AddressTypeIPv4, ep()), []fieldErr{{field.ErrorTypeInvalid, "endpoints[0].addresses"}}},
		{"endpoint with 101 addresses", slice(discoveryv1.AddressTypeIPv4, ep(hundredOne...)), []fieldErr{{field.ErrorTypeInvalid, "endpoints[0].addresses"}}},
		{"too many endpoints", slice(discoveryv1.AddressTypeIPv4, many...), []fieldErr{{field.ErrorTypeTooMany, "endpoints"}}},
		{"bad hostname", slice(discoveryv1.AddressTypeIPv4, discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, Hostname: ptr.To("web.0")}),
			[]fieldErr{{field.ErrorTypeInvalid, "endpoints[0].hostname"}}},
		{"bad port name", func() *discoveryv1.EndpointSlice {
			s := slice(discoveryv1.AddressTypeIPv4, ep("10.0.0.1"))
			s.Ports[0].Name = ptr.To("HTTP_PORT")
			return s
		}(), []fieldErr{{field.ErrorTypeInvalid, "ports[0].name"}}},
		{"empty port name and no port", func() *discoveryv1.EndpointSlice {
			s := slice(discoveryv1.AddressTypeIPv4, ep("10.0.0.1"))
			s.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("")}}
			return s
		}(), nil},
		{"port 0", func() *discoveryv1.EndpointSlice {
			s := slice(discoveryv1.AddressTypeIPv4, ep("10.0.0.1"))
			s.Ports = append(s.Ports, discoveryv1.EndpointPort{Port: ptr.To[int32](0)})
			return s
		}(), []fieldErr{{field.ErrorTypeInvalid, "ports[1].port"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check(t, Validate(tc.obj), tc.want)
			check(t, Resource().Validate(tc.obj), tc.want)
		})
	}
}

func TestValidateUpdate(t *testing.T) {
	r := Resource()
	old := slice(discoveryv1.AddressTypeIPv4, ep("10.0.0.1"))
	check(t, r.ValidateUpdate(slice(discoveryv1.AddressTypeIPv4, ep("10.0.0.2")), old), nil)
	check(t, r.ValidateUpdate(slice(discoveryv1.AddressTypeIPv6, ep("fd00::2")), old), []fieldErr{{field.ErrorTypeInvalid, "addressType"}})
}

func TestRow(t *testing.T) {
	s := slice(discoveryv1.AddressTypeIPv4, ep("10.0.0.1", "10.0.0.2"), ep("10.0.0.3"), ep("10.0.0.4"))
	s.Ports = append(s.Ports, discoveryv1.EndpointPort{})
	row, err := Resource().Row(s)
	if err != nil || row[1] != "IPv4" || row[2] != "80,<unset>" || row[3] != "10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..." {
		t.Fatalf("row %v (%v)", row, err)
	}
	row, _ = Resource().Row(&discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4})
	if row[2] != "<unset>" || row[3] != "<unset>" {
		t.Fatalf("empty slice row %v", row)
	}
}
