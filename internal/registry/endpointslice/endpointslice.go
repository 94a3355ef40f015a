// Package endpointslice is the registry entry of discovery.k8s.io/v1 EndpointSlices.
package endpointslice

import (
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// MaxEndpoints is the most endpoints one slice may hold.
const MaxEndpoints = 1000

// Resource returns the endpointslices registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: discoveryv1.SchemeGroupVersion,
		Kind:         "EndpointSlice", ListKind: "EndpointSliceList",
		Plural: "endpointslices", Singular: "endpointslice",
		Namespaced: true,
		Generation: true,
		New:        func() runtime.Object { return &discoveryv1.EndpointSlice{} },
		NewList:    func() runtime.Object { return &discoveryv1.EndpointSliceList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		Default: func(obj runtime.Object) {
			es := obj.(*discoveryv1.EndpointSlice)
			for i := range es.Ports {
				if es.Ports[i].Protocol == nil {
					p := corev1.ProtocolTCP
					es.Ports[i].Protocol = &p
				}
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return Validate(obj.(*discoveryv1.EndpointSlice)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			errs := Validate(obj.(*discoveryv1.EndpointSlice))
			if obj.(*discoveryv1.EndpointSlice).AddressType != old.(*discoveryv1.EndpointSlice).AddressType {
				errs = append(errs, field.Invalid(field.NewPath("addressType"), obj.(*discoveryv1.EndpointSlice).AddressType, "field is immutable"))
			}
			return errs
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("AddressType", "string", 0, discoveryv1.EndpointSlice{}.SwaggerDoc()["addressType"]),
			registry.Column("Ports", "string", 0, discoveryv1.EndpointSlice{}.SwaggerDoc()["ports"]),
			registry.Column("Endpoints", "string", 0, discoveryv1.EndpointSlice{}.SwaggerDoc()["endpoints"]),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			es := obj.(*discoveryv1.EndpointSlice)
			return []interface{}{es.Name, string(es.AddressType), ports(es), endpoints(es), registry.Age(es.CreationTimestamp)}, nil
		},
	}
}

var addressTypes = sets.New(discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN)

// Validate checks an EndpointSlice.
func Validate(es *discoveryv1.EndpointSlice) field.ErrorList {
	var errs field.ErrorList
	if !addressTypes.Has(es.AddressType) {
		errs = append(errs, field.NotSupported(field.NewPath("addressType"), es.AddressType, sets.List(addressTypes)))
	}
	if len(es.Endpoints) > MaxEndpoints {
		errs = append(errs, field.TooMany(field.NewPath("endpoints"), len(es.Endpoints), MaxEndpoints))
	}
	for i, ep := range es.Endpoints {
		p := field.NewPath("endpoints").Index(i)
		if len(ep.Addresses) == 0 || len(ep.Addresses) > 100 {
			errs = append(errs, field.Invalid(p.Child("addresses"), len(ep.Addresses), "must contain between 1 and 100 addresses"))
		}
		for j, a := range ep.Addresses {
			ap := p.Child("addresses").Index(j)
			switch es.AddressType {
			case discoveryv1.AddressTypeIPv4:
				if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
					errs = append(errs, field.Invalid(ap, a, "must be a valid IPv4 address"))
				}
			case discoveryv1.AddressTypeIPv6:
				if ip, err := netip.ParseAddr(a); err != nil || !ip.Is6() {
					errs = append(errs, field.Invalid(ap, a, "must be a valid IPv6 address"))
				}
			case discoveryv1.AddressTypeFQDN:
				errs = append(errs, validation.IsFullyQualifiedDomainName(ap, a)...)
			}
		}
		if ep.Hostname != nil {
			for _, msg := range validation.IsDNS1123Label(*ep.Hostname) {
				errs = append(errs, field.Invalid(p.Child("hostname"), *ep.Hostname, msg))
			}
		}
	}
	for i, port := range es.Ports {
		p := field.NewPath("ports").Index(i)
		if port.Name != nil && *port.Name != "" {
			for _, msg := range validation.IsDNS1123Label(*port.Name) {
				errs = append(errs, field.Invalid(p.Child("name"), *port.Name, msg))
			}
		}
		if port.Port != nil {
			for _, msg := range validation.IsValidPortNum(int(*port.Port)) {
				errs = append(errs, field.Invalid(p.Child("port"), *port.Port, msg))
			}
		}
	}
	return errs
}

func ports(es *discoveryv1.EndpointSlice) string {
	if len(es.Ports) == 0 {
		return "<unset>"
	}
	var out []string
	for _, p := range es.Ports {
		if p.Port == nil {
			out = append(out, "<unset>")
			continue
		}
		out = append(out, strconv.Itoa(int(*p.Port)))
	}
	return strings.Join(out, ",")
}

func endpoints(es *discoveryv1.EndpointSlice) string {
	var all []string
	for _, ep := range es.Endpoints {
		all = append(all, ep.Addresses...)
	}
	if len(all) == 0 {
		return "<unset>"
	}
	if len(all) > 3 {
		return strings.Join(all[:3], ",") + " + " + strconv.Itoa(len(all)-3) + " more..."
	}
	return strings.Join(all, ",")
}
