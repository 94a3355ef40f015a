// Package service is the registry entry of core/v1 Services.
package service

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Allocators hold the cluster IPs and node ports Services use. Nil fields
// turn allocation off.
type Allocators struct {
	IPs   *IPAllocator
	Ports *PortAllocator
}

// Resource returns the services registry entry.
func Resource(alloc Allocators) *registry.Resource {
	return &registry.Resource{
		Hooks:        alloc.hooks(),
		Restore:      alloc.restore,
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "Service", ListKind: "ServiceList",
		Plural: "services", Singular: "service",
		ShortNames: []string{"svc"},
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.Service{} },
		NewList:    func() runtime.Object { return &corev1.ServiceList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		NameValidation: metavalidation.NameIsDNS1035Label,
		HasStatus:      true,
		Default:        func(obj runtime.Object) { Default(obj.(*corev1.Service)) },
		Validate:       func(obj runtime.Object) field.ErrorList { return Validate(obj.(*corev1.Service)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return ValidateUpdate(obj.(*corev1.Service), old.(*corev1.Service))
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Type", "string", 0, corev1.ServiceSpec{}.SwaggerDoc()["type"]),
			registry.Column("Cluster-IP", "string", 0, corev1.ServiceSpec{}.SwaggerDoc()["clusterIP"]),
			registry.Column("External-IP", "string", 0, corev1.ServiceSpec{}.SwaggerDoc()["externalIPs"]),
			registry.Column("Port(s)", "string", 0, corev1.ServiceSpec{}.SwaggerDoc()["ports"]),
			registry.AgeColumn,
			registry.Column("Selector", "string", 1, corev1.ServiceSpec{}.SwaggerDoc()["selector"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			s := obj.(*corev1.Service)
			return []interface{}{s.Name, string(s.Spec.Type), clusterIP(s), externalIP(s), ports(s), registry.Age(s.CreationTimestamp), selector(s)}, nil
		},
	}
}

// Default sets what kube-apiserver defaults on a Service.
func Default(s *corev1.Service) {
	if s.Spec.Type == "" {
		if s.Spec.ExternalName != "" && s.Spec.ClusterIP == "" {
			s.Spec.Type = corev1.ServiceTypeExternalName
		} else {
			s.Spec.Type = corev1.ServiceTypeClusterIP
		}
	}
	if s.Spec.SessionAffinity == "" {
		s.Spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		if s.Spec.SessionAffinityConfig == nil {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{}
		}
		if s.Spec.SessionAffinityConfig.ClientIP == nil {
			s.Spec.SessionAffinityConfig.ClientIP = &corev1.ClientIPConfig{}
		}
		if s.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil {
			t := int32(10800)
			s.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds = &t
		}
	}
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == (intstr.IntOrString{}) {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if s.Spec.Type != corev1.ServiceTypeExternalName {
		if s.Spec.ClusterIP != "" && len(s.Spec.ClusterIPs) == 0 {
			s.Spec.ClusterIPs = []string{s.Spec.ClusterIP}
		}
		if s.Spec.InternalTrafficPolicy == nil {
			p := corev1.ServiceInternalTrafficPolicyCluster
			s.Spec.InternalTrafficPolicy = &p
		}
		if s.Spec.IPFamilyPolicy == nil {
			p := corev1.IPFamilyPolicySingleStack
			if s.Spec.ClusterIP == corev1.ClusterIPNone && len(s.Spec.Selector) == 0 {
				p = corev1.IPFamilyPolicyRequireDualStack
			}
			s.Spec.IPFamilyPolicy = &p
		}
		if len(s.Spec.IPFamilies) == 0 {
			s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
			if *s.Spec.IPFamilyPolicy == corev1.IPFamilyPolicyRequireDualStack {
				s.Spec.IPFamilies = append(s.Spec.IPFamilies, corev1.IPv6Protocol)
			}
		}
	}
	if (s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer) && s.Spec.ExternalTrafficPolicy == "" {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
}

var supportedTypes = sets.New(corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName)
var supportedProtocols = sets.New(corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)

// Validate checks a Service as kube-apiserver does for the fields Headway uses.
func Validate(s *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if !supportedTypes.Has(s.Spec.Type) {
		errs = append(errs, field.NotSupported(spec.Child("type"), s.Spec.Type, sets.List(supportedTypes)))
	}
	headless := s.Spec.ClusterIP == corev1.ClusterIPNone
	switch s.Spec.Type {
	case corev1.ServiceTypeExternalName:
		if s.Spec.ClusterIP != "" {
			errs = append(errs, field.Forbidden(spec.Child("clusterIP"), "may not be set for ExternalName services"))
		}
		for _, msg := range validation.IsDNS1123Subdomain(strings.TrimSuffix(s.Spec.ExternalName, ".")) {
			errs = append(errs, field.Invalid(spec.Child("externalName"), s.Spec.ExternalName, msg))
		}
	default:
		if len(s.Spec.Ports) == 0 && !headless {
			errs = append(errs, field.Required(spec.Child("ports"), ""))
		}
		if s.Spec.ClusterIP != "" && !headless && net.ParseIP(s.Spec.ClusterIP) == nil {
			errs = append(errs, field.Invalid(spec.Child("clusterIP"), s.Spec.ClusterIP, "must be empty, 'None', or a valid IP address"))
		}
		if len(s.Spec.ClusterIPs) > 0 && s.Spec.ClusterIPs[0] != s.Spec.ClusterIP {
			errs = append(errs, field.Invalid(spec.Child("clusterIPs").Index(0), s.Spec.ClusterIPs[0], "must be equal to clusterIP"))
		}
		if headless && (s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer) {
			errs = append(errs, field.Invalid(spec.Child("clusterIP"), s.Spec.ClusterIP, "may not be set to 'None' for "+string(s.Spec.Type)+" services"))
		}
	}
	names := sets.New[string]()
	ports := sets.New[string]()
	for i, p := range s.Spec.Ports {
		pp := spec.Child("ports").Index(i)
		if len(s.Spec.Ports) > 1 && p.Name == "" {
			errs = append(errs, field.Required(pp.Child("name"), ""))
		}
		if p.Name != "" {
			for _, msg := range validation.IsDNS1123Label(p.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), p.Name, msg))
			}
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(pp.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		for _, msg := range validation.IsValidPortNum(int(p.Port)) {
			errs = append(errs, field.Invalid(pp.Child("port"), p.Port, msg))
		}
		if !supportedProtocols.Has(p.Protocol) {
			errs = append(errs, field.NotSupported(pp.Child("protocol"), p.Protocol, sets.List(supportedProtocols)))
		}
		key := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if ports.Has(key) {
			errs = append(errs, field.Duplicate(pp, key))
		}
		ports.Insert(key)
		switch p.TargetPort.Type {
		case intstr.Int:
			if !headless || p.TargetPort.IntVal != 0 {
				for _, msg := range validation.IsValidPortNum(int(p.TargetPort.IntVal)) {
					errs = append(errs, field.Invalid(pp.Child("targetPort"), p.TargetPort.IntVal, msg))
				}
			}
		case intstr.String:
			for _, msg := range validation.IsValidPortName(p.TargetPort.StrVal) {
				errs = append(errs, field.Invalid(pp.Child("targetPort"), p.TargetPort.StrVal, msg))
			}
		}
	}
	errs = append(errs, metav1validation.ValidateLabels(s.Spec.Selector, spec.Child("selector"))...)
	if s.Spec.SessionAffinity != corev1.ServiceAffinityNone && s.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		errs = append(errs, field.NotSupported(spec.Child("sessionAffinity"), s.Spec.SessionAffinity, []string{string(corev1.ServiceAffinityClientIP), string(corev1.ServiceAffinityNone)}))
	}
	return errs
}

// ValidateUpdate adds the rules for changing a Service.
func ValidateUpdate(s, old *corev1.Service) field.ErrorList {
	errs := Validate(s)
	spec := field.NewPath("spec")
	if old.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.Type != corev1.ServiceTypeExternalName {
		if old.Spec.ClusterIP != "" && s.Spec.ClusterIP != old.Spec.ClusterIP {
			errs = append(errs, field.Invalid(spec.Child("clusterIP"), s.Spec.ClusterIP, "field is immutable"))
		}
	}
	return errs
}

func clusterIP(s *corev1.Service) string {
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return "<none>"
	}
	if len(s.Spec.ClusterIPs) > 0 {
		return strings.Join(s.Spec.ClusterIPs, ",")
	}
	return registry.NoneIfEmpty(s.Spec.ClusterIP)
}

func externalIP(s *corev1.Service) string {
	switch s.Spec.Type {
	case corev1.ServiceTypeExternalName:
		return s.Spec.ExternalName
	case corev1.ServiceTypeLoadBalancer:
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ips = append(ips, in.IP)
			} else if in.Hostname != "" {
				ips = append(ips, in.Hostname)
			}
		}
		ips = append(ips, s.Spec.ExternalIPs...)
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	}
	return registry.Join(s.Spec.ExternalIPs)
}

func ports(s *corev1.Service) string {
	var out []string
	for _, p := range s.Spec.Ports {
		str := strconv.Itoa(int(p.Port))
		if p.NodePort != 0 {
			str += ":" + strconv.Itoa(int(p.NodePort))
		}
		out = append(out, str+"/"+string(p.Protocol))
	}
	return registry.Join(out)
}

func selector(s *corev1.Service) string {
	if len(s.Spec.Selector) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(s.Spec.Selector))
	for k := range s.Spec.Selector {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + s.Spec.Selector[k]
	}
	return strings.Join(keys, ",")
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
