package ingress

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func rule(host, path string, pt networkingv1.PathType, svc string, port networkingv1.ServiceBackendPort) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
		Paths: []networkingv1.HTTPIngressPath{{Path: path, PathType: &pt,
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: port}}}},
	}}}
}

func TestValidation(t *testing.T) {
	p80 := networkingv1.ServiceBackendPort{Number: 80}
	class := "nginx"
	for _, tc := range []struct {
		name string
		spec networkingv1.IngressSpec
		want []string
	}{
		{"good", networkingv1.IngressSpec{IngressClassName: &class, Rules: []networkingv1.IngressRule{
			rule("foo.com", "/bar", networkingv1.PathTypeExact, "svc1", p80),
			rule("*.bar.com", "/", networkingv1.PathTypePrefix, "svc2", networkingv1.ServiceBackendPort{Name: "http"}),
		}, TLS: []networkingv1.IngressTLS{{Hosts: []string{"foo.com"}, SecretName: "tls"}}}, nil},
		{"nothing", networkingv1.IngressSpec{}, []string{"spec: Invalid value: either `defaultBackend` or `rules` must be specified"}},
		{"ip host", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("198.18.0.1", "/", networkingv1.PathTypePrefix, "s", p80)}},
			[]string{"spec.rules[0].host: Invalid value: \"198.18.0.1\": must be a DNS name, not an IP address"}},
		{"relative path", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("", "bar", networkingv1.PathTypeExact, "s", p80)}},
			[]string{"spec.rules[0].http.paths[0].path: Invalid value: \"bar\": must be an absolute path"}},
		{"bad path type", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("", "/", "Regex", "s", p80)}},
			[]string{"spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\""}},
		{"no port", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("", "/", networkingv1.PathTypePrefix, "s", networkingv1.ServiceBackendPort{})}},
			[]string{"spec.rules[0].http.paths[0].backend.service.port: Required value: port name or number is required"}},
		{"bad service name", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{rule("", "/", networkingv1.PathTypePrefix, "Svc", p80)}},
			[]string{"spec.rules[0].http.paths[0].backend.service.name: Invalid value: \"Svc\""}},
		{"no paths", networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "a.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}}},
			[]string{"spec.rules[0].http.paths: Required value"}},
		{"empty default backend", networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{}},
			[]string{"spec.defaultBackend: Invalid value: \"\": one backend (service or resource) must be specified"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registrytest.Errors(t, Validate(&networkingv1.Ingress{Spec: tc.spec}), tc.want...)
		})
	}
}

func TestRow(t *testing.T) {
	p80 := networkingv1.ServiceBackendPort{Number: 80}
	ing := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
		rule("a.com", "/", networkingv1.PathTypePrefix, "s", p80), rule("b.com", "/", networkingv1.PathTypePrefix, "s", p80),
		rule("c.com", "/", networkingv1.PathTypePrefix, "s", p80), rule("d.com", "/", networkingv1.PathTypePrefix, "s", p80),
	}, TLS: []networkingv1.IngressTLS{{}}}}
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "198.18.0.9"}}
	row := Row(ing)
	if row[1] != "<none>" || row[2] != "a.com,b.com,c.com + 1 more..." || row[3] != "198.18.0.9" || row[4] != "80, 443" {
		t.Errorf("row %v", row)
	}
}
