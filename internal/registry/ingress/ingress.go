// Package ingress is the registry entry of networking.k8s.io/v1 Ingresses
// (stored and served; Headway runs no ingress controller).
package ingress

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the ingresses registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: networkingv1.SchemeGroupVersion,
		Kind:         "Ingress", ListKind: "IngressList",
		AllowUnconditionalUpdate: true,
		Plural:                   "ingresses", Singular: "ingress",
		ShortNames: []string{"ing"},
		Namespaced: true,
		New:        func() runtime.Object { return &networkingv1.Ingress{} },
		NewList:    func() runtime.Object { return &networkingv1.IngressList{} },
		HasStatus:  true,
		Generation: true,
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			registry.ResetStatus(obj)
		},
		Validate:       func(obj runtime.Object) field.ErrorList { return Validate(obj.(*networkingv1.Ingress)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return Validate(obj.(*networkingv1.Ingress)) },
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Class", "string", 0, "The name of the IngressClass resource that should be used for additional configuration"),
			registry.Column("Hosts", "string", 0, "Hosts that incoming requests are matched against before the ingress rule"),
			registry.Column("Address", "string", 0, "Address is a list containing ingress points for the load-balancer"),
			registry.Column("Ports", "string", 0, "Ports of TLS configurations that open"),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) { return Row(obj.(*networkingv1.Ingress)), nil },
	}
}

// Row renders an Ingress the way kubectl get ingress does.
func Row(ing *networkingv1.Ingress) []interface{} {
	class := "<none>"
	if ing.Spec.IngressClassName != nil {
		class = *ing.Spec.IngressClassName
	}
	var hosts []string
	more := false
	for _, r := range ing.Spec.Rules {
		if len(hosts) == 3 {
			more = true
		}
		if !more && r.Host != "" {
			hosts = append(hosts, r.Host)
		}
	}
	h := "*"
	if len(hosts) > 0 {
		h = strings.Join(hosts, ",")
		if more {
			h = fmt.Sprintf("%s + %d more...", h, len(ing.Spec.Rules)-3)
		}
	}
	addrs := map[string]bool{}
	for _, lb := range ing.Status.LoadBalancer.Ingress {
		if lb.IP != "" {
			addrs[lb.IP] = true
		} else if lb.Hostname != "" {
			addrs[lb.Hostname] = true
		}
	}
	list := make([]string, 0, len(addrs))
	for a := range addrs {
		list = append(list, a)
	}
	sort.Strings(list)
	ports := "80"
	if len(ing.Spec.TLS) > 0 {
		ports = "80, 443"
	}
	return []interface{}{ing.Name, class, h, strings.Join(list, ","), ports, registry.Age(ing.CreationTimestamp)}
}

// Validate checks an Ingress as kube-apiserver does.
func Validate(ing *networkingv1.Ingress) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if len(ing.Spec.Rules) == 0 && ing.Spec.DefaultBackend == nil {
		errs = append(errs, field.Invalid(spec, field.OmitValueType{}, "either `defaultBackend` or `rules` must be specified"))
	}
	if c := ing.Spec.IngressClassName; c != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*c) {
			errs = append(errs, field.Invalid(spec.Child("ingressClassName"), *c, msg))
		}
	}
	if b := ing.Spec.DefaultBackend; b != nil {
		errs = append(errs, validateBackend(b, spec.Child("defaultBackend"))...)
	}
	for i, t := range ing.Spec.TLS {
		tp := spec.Child("tls").Index(i)
		for j, h := range t.Hosts {
			errs = append(errs, validateHost(h, tp.Child("hosts").Index(j))...)
		}
		if t.SecretName != "" {
			for _, msg := range validation.IsDNS1123Subdomain(t.SecretName) {
				errs = append(errs, field.Invalid(tp.Child("secretName"), t.SecretName, msg))
			}
		}
	}
	for i, r := range ing.Spec.Rules {
		rp := spec.Child("rules").Index(i)
		if r.Host != "" {
			errs = append(errs, validateHost(r.Host, rp.Child("host"))...)
		}
		if r.HTTP == nil {
			continue
		}
		hp := rp.Child("http", "paths")
		if len(r.HTTP.Paths) == 0 {
			errs = append(errs, field.Required(hp, ""))
		}
		for j, p := range r.HTTP.Paths {
			errs = append(errs, validatePath(&p, hp.Index(j))...)
		}
	}
	return errs
}

func validateHost(h string, path *field.Path) field.ErrorList {
	if _, err := netip.ParseAddr(h); err == nil {
		return field.ErrorList{field.Invalid(path, h, "must be a DNS name, not an IP address")}
	}
	msgs := validation.IsDNS1123Subdomain(h)
	if strings.HasPrefix(h, "*.") {
		msgs = validation.IsWildcardDNS1123Subdomain(h)
	}
	var errs field.ErrorList
	for _, msg := range msgs {
		errs = append(errs, field.Invalid(path, h, msg))
	}
	return errs
}

func validatePath(p *networkingv1.HTTPIngressPath, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if p.PathType == nil {
		errs = append(errs, field.Required(path.Child("pathType"), "pathType must be specified"))
	} else {
		switch *p.PathType {
		case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
			switch {
			case !strings.HasPrefix(p.Path, "/"):
				errs = append(errs, field.Invalid(path.Child("path"), p.Path, "must be an absolute path"))
			case strings.Contains(p.Path, "//"):
				errs = append(errs, field.Invalid(path.Child("path"), p.Path, "must not contain '//'"))
			default:
				for _, seg := range strings.Split(p.Path, "/") {
					if seg == "." || seg == ".." {
						errs = append(errs, field.Invalid(path.Child("path"), p.Path, "must not contain '/"+seg+"/' or end with '/"+seg+"'"))
						break
					}
				}
			}
		case networkingv1.PathTypeImplementationSpecific:
			if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
				errs = append(errs, field.Invalid(path.Child("path"), p.Path, "must be an absolute path"))
			}
		default:
			errs = append(errs, field.NotSupported(path.Child("pathType"), *p.PathType, []string{"Exact", "ImplementationSpecific", "Prefix"}))
		}
	}
	return append(errs, validateBackend(&p.Backend, path.Child("backend"))...)
}

func validateBackend(b *networkingv1.IngressBackend, path *field.Path) field.ErrorList {
	switch {
	case b.Service != nil && b.Resource != nil:
		return field.ErrorList{field.Invalid(path, "", "cannot set both service and resource backends")}
	case b.Resource != nil:
		var errs field.ErrorList
		if b.Resource.Kind == "" {
			errs = append(errs, field.Required(path.Child("resource", "kind"), ""))
		}
		if b.Resource.Name == "" {
			errs = append(errs, field.Required(path.Child("resource", "name"), ""))
		}
		return errs
	case b.Service == nil:
		return field.ErrorList{field.Invalid(path, "", "one backend (service or resource) must be specified")}
	}
	var errs field.ErrorList
	sp := path.Child("service")
	if b.Service.Name == "" {
		errs = append(errs, field.Required(sp.Child("name"), ""))
	} else {
		for _, msg := range validation.IsDNS1035Label(b.Service.Name) {
			errs = append(errs, field.Invalid(sp.Child("name"), b.Service.Name, msg))
		}
	}
	port, pp := b.Service.Port, sp.Child("port")
	switch {
	case port.Name != "" && port.Number != 0:
		errs = append(errs, field.Invalid(pp, port, "cannot set both port name & port number"))
	case port.Name != "":
		for _, msg := range validation.IsValidPortName(port.Name) {
			errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
		}
	case port.Number != 0:
		for _, msg := range validation.IsValidPortNum(int(port.Number)) {
			errs = append(errs, field.Invalid(pp.Child("number"), port.Number, msg))
		}
	default:
		errs = append(errs, field.Required(pp, "port name or number is required"))
	}
	return errs
}
