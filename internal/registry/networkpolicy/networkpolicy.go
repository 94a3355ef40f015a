// Package networkpolicy is the registry entry of networking.k8s.io/v1
// NetworkPolicies. They are stored and served; Headway does not enforce
// them yet.
package networkpolicy

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the networkpolicies registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: networkingv1.SchemeGroupVersion,
		Kind:         "NetworkPolicy", ListKind: "NetworkPolicyList",
		AllowUnconditionalUpdate: true,
		Plural:                   "networkpolicies", Singular: "networkpolicy",
		ShortNames: []string{"netpol"},
		Namespaced: true,
		New:        func() runtime.Object { return &networkingv1.NetworkPolicy{} },
		NewList:    func() runtime.Object { return &networkingv1.NetworkPolicyList{} },
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*networkingv1.NetworkPolicy)) },
		Validate:   func(obj runtime.Object) field.ErrorList { return Validate(obj.(*networkingv1.NetworkPolicy)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return Validate(obj.(*networkingv1.NetworkPolicy))
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Pod-Selector", "string", 0, networkingv1.NetworkPolicySpec{}.SwaggerDoc()["podSelector"]),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			np := obj.(*networkingv1.NetworkPolicy)
			return []interface{}{np.Name, metav1.FormatLabelSelector(&np.Spec.PodSelector), registry.Age(np.CreationTimestamp)}, nil
		},
	}
}

// Default sets what kube-apiserver defaults: TCP ports, and policy types
// Ingress (plus Egress when egress rules are given).
func Default(np *networkingv1.NetworkPolicy) {
	tcp := func(ports []networkingv1.NetworkPolicyPort) {
		for i := range ports {
			if ports[i].Protocol == nil {
				p := corev1.ProtocolTCP
				ports[i].Protocol = &p
			}
		}
	}
	for i := range np.Spec.Ingress {
		tcp(np.Spec.Ingress[i].Ports)
	}
	for i := range np.Spec.Egress {
		tcp(np.Spec.Egress[i].Ports)
	}
	if len(np.Spec.PolicyTypes) == 0 {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
}

// Validate checks a NetworkPolicy as kube-apiserver does.
func Validate(np *networkingv1.NetworkPolicy) field.ErrorList {
	spec := field.NewPath("spec")
	opts := metav1validation.LabelSelectorValidationOptions{}
	errs := metav1validation.ValidateLabelSelector(&np.Spec.PodSelector, opts, spec.Child("podSelector"))
	for i, r := range np.Spec.Ingress {
		p := spec.Child("ingress").Index(i)
		errs = append(errs, validatePorts(r.Ports, p.Child("ports"))...)
		errs = append(errs, validatePeers(r.From, p.Child("from"))...)
	}
	for i, r := range np.Spec.Egress {
		p := spec.Child("egress").Index(i)
		errs = append(errs, validatePorts(r.Ports, p.Child("ports"))...)
		errs = append(errs, validatePeers(r.To, p.Child("to"))...)
	}
	if len(np.Spec.PolicyTypes) > 2 {
		errs = append(errs, field.Invalid(spec.Child("policyTypes"), np.Spec.PolicyTypes, "may not specify more than two policyTypes"))
	}
	for i, t := range np.Spec.PolicyTypes {
		if t != networkingv1.PolicyTypeIngress && t != networkingv1.PolicyTypeEgress {
			errs = append(errs, field.NotSupported(spec.Child("policyTypes").Index(i), t, []string{"Egress", "Ingress"}))
		}
	}
	return errs
}

func validatePorts(ports []networkingv1.NetworkPolicyPort, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, port := range ports {
		p := path.Index(i)
		if port.Protocol != nil {
			switch *port.Protocol {
			case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
			default:
				errs = append(errs, field.NotSupported(p.Child("protocol"), *port.Protocol, []string{"SCTP", "TCP", "UDP"}))
			}
		}
		if port.Port == nil {
			if port.EndPort != nil {
				errs = append(errs, field.Required(p.Child("port"), "must be specified when endPort is specified"))
			}
			continue
		}
		if port.Port.Type == intstr.Int {
			for _, msg := range validation.IsValidPortNum(int(port.Port.IntVal)) {
				errs = append(errs, field.Invalid(p.Child("port"), port.Port.IntVal, msg))
			}
			if port.EndPort != nil {
				if *port.EndPort < port.Port.IntVal {
					errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "must be greater than or equal to `port`"))
				}
				for _, msg := range validation.IsValidPortNum(int(*port.EndPort)) {
					errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, msg))
				}
			}
			continue
		}
		if port.EndPort != nil {
			errs = append(errs, field.Invalid(p.Child("endPort"), *port.EndPort, "may not be specified when `port` is non-numeric"))
		}
		for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
			errs = append(errs, field.Invalid(p.Child("port"), port.Port.StrVal, msg))
		}
	}
	return errs
}

func validatePeers(peers []networkingv1.NetworkPolicyPeer, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	opts := metav1validation.LabelSelectorValidationOptions{}
	for i, peer := range peers {
		p := path.Index(i)
		n := 0
		if peer.PodSelector != nil {
			n++
			errs = append(errs, metav1validation.ValidateLabelSelector(peer.PodSelector, opts, p.Child("podSelector"))...)
		}
		if peer.NamespaceSelector != nil {
			n++
			errs = append(errs, metav1validation.ValidateLabelSelector(peer.NamespaceSelector, opts, p.Child("namespaceSelector"))...)
		}
		if peer.IPBlock != nil {
			n++
			errs = append(errs, validateIPBlock(peer.IPBlock, p.Child("ipBlock"))...)
		}
		switch {
		case n == 0:
			errs = append(errs, field.Required(p, "must specify a peer"))
		case n > 1 && peer.IPBlock != nil:
			errs = append(errs, field.Forbidden(p, "may not specify both ipBlock and another peer"))
		}
	}
	return errs
}

func validateIPBlock(b *networkingv1.IPBlock, path *field.Path) field.ErrorList {
	if b.CIDR == "" {
		return field.ErrorList{field.Required(path.Child("cidr"), "")}
	}
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return field.ErrorList{field.Invalid(path.Child("cidr"), b.CIDR, "must be a valid CIDR value, (e.g. 198.18.8.0/24 or 2001:db8::/64)")}
	}
	var errs field.ErrorList
	for i, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil {
			errs = append(errs, field.Invalid(path.Child("except").Index(i), e, "must be a valid CIDR value, (e.g. 198.18.8.0/24 or 2001:db8::/64)"))
			continue
		}
		if ex.Addr().Is4() != cidr.Addr().Is4() || ex.Bits() <= cidr.Bits() || !cidr.Contains(ex.Addr()) {
			errs = append(errs, field.Invalid(path.Child("except").Index(i), e, "must be a strict subset of `cidr`"))
		}
	}
	return errs
}
