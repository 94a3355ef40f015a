// Package endpoints is the registry entry of core/v1 Endpoints.
package endpoints

import (
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the endpoints registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "Endpoints", ListKind: "EndpointsList",
		Plural: "endpoints", Singular: "endpoints",
		ShortNames: []string{"ep"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.Endpoints{} },
		NewList:    func() runtime.Object { return &corev1.EndpointsList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		Default: func(obj runtime.Object) {
			for i := range obj.(*corev1.Endpoints).Subsets {
				ss := &obj.(*corev1.Endpoints).Subsets[i]
				for j := range ss.Ports {
					if ss.Ports[j].Protocol == "" {
						ss.Ports[j].Protocol = corev1.ProtocolTCP
					}
				}
			}
		},
		Validate:       func(obj runtime.Object) field.ErrorList { return validate(obj.(*corev1.Endpoints)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return validate(obj.(*corev1.Endpoints)) },
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Endpoints", "string", 0, corev1.Endpoints{}.SwaggerDoc()["subsets"]),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			e := obj.(*corev1.Endpoints)
			return []interface{}{e.Name, format(e), registry.Age(e.CreationTimestamp)}, nil
		},
	}
}

func validate(e *corev1.Endpoints) field.ErrorList {
	var errs field.ErrorList
	for i, ss := range e.Subsets {
		p := field.NewPath("subsets").Index(i)
		errs = append(errs, validateAddresses(p.Child("addresses"), ss.Addresses)...)
		errs = append(errs, validateAddresses(p.Child("notReadyAddresses"), ss.NotReadyAddresses)...)
		for j, port := range ss.Ports {
			for _, msg := range validation.IsValidPortNum(int(port.Port)) {
				errs = append(errs, field.Invalid(p.Child("ports").Index(j).Child("port"), port.Port, msg))
			}
		}
	}
	return errs
}

func validateAddresses(p *field.Path, addrs []corev1.EndpointAddress) field.ErrorList {
	var errs field.ErrorList
	for j, a := range addrs {
		if _, err := netip.ParseAddr(a.IP); err != nil {
			errs = append(errs, field.Invalid(p.Index(j).Child("ip"), a.IP, "must be a valid IP address"))
		}
		if a.Hostname != "" {
			for _, msg := range validation.IsDNS1123Label(a.Hostname) {
				errs = append(errs, field.Invalid(p.Index(j).Child("hostname"), a.Hostname, msg))
			}
		}
	}
	return errs
}

func format(e *corev1.Endpoints) string {
	var list []string
	more := 0
	for _, ss := range e.Subsets {
		for _, a := range ss.Addresses {
			ports := ss.Ports
			if len(ports) == 0 {
				ports = []corev1.EndpointPort{{}}
			}
			for _, p := range ports {
				if len(list) >= 3 {
					more++
					continue
				}
				s := a.IP
				if p.Port != 0 {
					s += ":" + strconv.Itoa(int(p.Port))
				}
				list = append(list, s)
			}
		}
	}
	if len(list) == 0 {
		return "<none>"
	}
	out := strings.Join(list, ",")
	if more > 0 {
		out += " + " + strconv.Itoa(more) + " more..."
	}
	return out
}
