package ingressclass

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func TestDefaultsAndValidation(t *testing.T) {
	str := func(s string) *string { return &s }
	params := func(scope, ns *string) *networkingv1.IngressClassParametersReference {
		return &networkingv1.IngressClassParametersReference{APIGroup: str("k8s.example.com"), Kind: "IngressParameters", Name: "p", Scope: scope, Namespace: ns}
	}
	for _, tc := range []struct {
		name string
		spec networkingv1.IngressClassSpec
		want []string
	}{
		{"good", networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx", Parameters: params(nil, nil)}, nil},
		{"namespaced", networkingv1.IngressClassSpec{Controller: "example.com/c", Parameters: params(str("Namespace"), str("infra"))}, nil},
		{"no controller", networkingv1.IngressClassSpec{}, []string{"spec.controller: Required value"}},
		{"controller not a path", networkingv1.IngressClassSpec{Controller: "nginx"}, []string{"spec.controller: Invalid value: \"nginx\""}},
		{"namespace scope without namespace", networkingv1.IngressClassSpec{Controller: "example.com/c", Parameters: params(str("Namespace"), nil)},
			[]string{"spec.parameters.namespace: Required value"}},
		{"cluster scope with namespace", networkingv1.IngressClassSpec{Controller: "example.com/c", Parameters: params(nil, str("infra"))},
			[]string{"spec.parameters.namespace: Forbidden"}},
		{"bad scope", networkingv1.IngressClassSpec{Controller: "example.com/c", Parameters: params(str("Galaxy"), nil)},
			[]string{"spec.parameters.scope: Unsupported value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ic := &networkingv1.IngressClass{Spec: tc.spec}
			Default(ic)
			if ic.Spec.Parameters != nil && ic.Spec.Parameters.Scope == nil {
				t.Fatal("scope not defaulted")
			}
			registrytest.Errors(t, Validate(ic), tc.want...)
		})
	}
	old := &networkingv1.IngressClass{Spec: networkingv1.IngressClassSpec{Controller: "example.com/a"}}
	n := old.DeepCopy()
	n.Spec.Controller = "example.com/b"
	registrytest.Errors(t, Resource().ValidateUpdate(n, old), "spec.controller: Invalid value")
}
