package networkpolicy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/headway/headway/internal/registry/registrytest"
)

func TestDefaults(t *testing.T) {
	dns := intstr.FromInt32(53)
	np := &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
		Egress: []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &dns}}}},
	}}
	Default(np)
	if *np.Spec.Egress[0].Ports[0].Protocol != corev1.ProtocolTCP || len(np.Spec.PolicyTypes) != 2 ||
		np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress || np.Spec.PolicyTypes[1] != networkingv1.PolicyTypeEgress {
		t.Errorf("spec %+v", np.Spec)
	}
	in := &networkingv1.NetworkPolicy{}
	Default(in)
	if len(in.Spec.PolicyTypes) != 1 || in.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		t.Errorf("policy types %v", in.Spec.PolicyTypes)
	}
}

func TestValidation(t *testing.T) {
	port := func(p intstr.IntOrString, end *int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Port: &p, EndPort: end}
	}
	i32 := func(v int32) *int32 { return &v }
	ingress := func(ports []networkingv1.NetworkPolicyPort, from ...networkingv1.NetworkPolicyPeer) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: ports, From: from}},
		}}
	}
	web := metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	for _, tc := range []struct {
		name string
		np   *networkingv1.NetworkPolicy
		want []string
	}{
		{"good", ingress([]networkingv1.NetworkPolicyPort{port(intstr.FromInt32(5432), i32(5440)), port(intstr.FromString("pg"), nil)},
			networkingv1.NetworkPolicyPeer{PodSelector: &web}, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "198.18.0.0/16", Except: []string{"198.18.1.0/24"}}}), nil},
		{"port out of range", ingress([]networkingv1.NetworkPolicyPort{port(intstr.FromInt32(70000), nil)}),
			[]string{"spec.ingress[0].ports[0].port: Invalid value: 70000"}},
		{"endPort below port", ingress([]networkingv1.NetworkPolicyPort{port(intstr.FromInt32(80), i32(79))}),
			[]string{"spec.ingress[0].ports[0].endPort: Invalid value: 79: must be greater than or equal to `port`"}},
		{"endPort with named port", ingress([]networkingv1.NetworkPolicyPort{port(intstr.FromString("http"), i32(90))}),
			[]string{"spec.ingress[0].ports[0].endPort: Invalid value: 90: may not be specified when `port` is non-numeric"}},
		{"empty peer", ingress(nil, networkingv1.NetworkPolicyPeer{}), []string{"spec.ingress[0].from[0]: Required value: must specify a peer"}},
		{"ipBlock and selector", ingress(nil, networkingv1.NetworkPolicyPeer{PodSelector: &web, IPBlock: &networkingv1.IPBlock{CIDR: "198.18.0.0/16"}}),
			[]string{"spec.ingress[0].from[0]: Forbidden: may not specify both ipBlock and another peer"}},
		{"bad cidr", ingress(nil, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "198.18.0.0"}}),
			[]string{"spec.ingress[0].from[0].ipBlock.cidr: Invalid value"}},
		{"except outside cidr", ingress(nil, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "198.18.0.0/16", Except: []string{"198.19.0.0/24"}}}),
			[]string{"spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"198.19.0.0/24\": must be a strict subset of `cidr`"}},
		{"bad policy type", &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{"Sideways"}}},
			[]string{"spec.policyTypes[0]: Unsupported value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			Default(tc.np)
			registrytest.Errors(t, Validate(tc.np), tc.want...)
		})
	}
}
