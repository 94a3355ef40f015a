package service

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestDefaults(t *testing.T) {
	s := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Name: "web", Port: 80}}, Selector: map[string]string{"app": "nginx"}}}
	Default(s)
	p := s.Spec.Ports[0]
	switch {
	case s.Spec.Type != corev1.ServiceTypeClusterIP:
		t.Errorf("type = %q", s.Spec.Type)
	case p.Protocol != corev1.ProtocolTCP:
		t.Errorf("protocol = %q", p.Protocol)
	case p.TargetPort != intstr.FromInt32(80):
		t.Errorf("targetPort = %v", p.TargetPort)
	case s.Spec.SessionAffinity != corev1.ServiceAffinityNone:
		t.Errorf("sessionAffinity = %q", s.Spec.SessionAffinity)
	case len(s.Spec.ClusterIPs) != 1 || s.Spec.ClusterIPs[0] != "None":
		t.Errorf("clusterIPs = %v", s.Spec.ClusterIPs)
	case *s.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack || s.Spec.IPFamilies[0] != corev1.IPv4Protocol:
		t.Errorf("ip families = %v %v", *s.Spec.IPFamilyPolicy, s.Spec.IPFamilies)
	case *s.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster:
		t.Errorf("internalTrafficPolicy = %v", *s.Spec.InternalTrafficPolicy)
	}
	e := &corev1.Service{Spec: corev1.ServiceSpec{ExternalName: "db.example.com"}}
	Default(e)
	if e.Spec.Type != corev1.ServiceTypeExternalName || e.Spec.IPFamilyPolicy != nil {
		t.Errorf("ExternalName defaults: %+v", e.Spec)
	}
	a := &corev1.Service{Spec: corev1.ServiceSpec{SessionAffinity: corev1.ServiceAffinityClientIP, Ports: []corev1.ServicePort{{Port: 80}}}}
	Default(a)
	if *a.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != 10800 {
		t.Errorf("ClientIP timeout = %v", *a.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds)
	}
}

// The expected errors are what kube-apiserver answers for the same input:
// the field path and the error type ("Required value", "Invalid value", ...).
func TestValidation(t *testing.T) {
	base := func() *corev1.Service {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "web", Port: 80}}, Selector: map[string]string{"app": "x"}}}
		return s
	}
	for _, tc := range []struct {
		name string
		mod  func(*corev1.Service)
		want []string // "path: type" prefixes
	}{
		{"valid", func(*corev1.Service) {}, nil},
		{"headless without ports", func(s *corev1.Service) { s.Spec.ClusterIP = "None"; s.Spec.Ports = nil }, nil},
		{"no ports", func(s *corev1.Service) { s.Spec.Ports = nil }, []string{"spec.ports: Required value"}},
		{"bad type", func(s *corev1.Service) { s.Spec.Type = "Bogus" }, []string{"spec.type: Unsupported value"}},
		{"port 0", func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 }, []string{"spec.ports[0].port: Invalid value", "spec.ports[0].targetPort: Invalid value"}},
		{"port name not a DNS label", func(s *corev1.Service) { s.Spec.Ports[0].Name = "Web_1" }, []string{"spec.ports[0].name: Invalid value"}},
		{"two ports, one unnamed", func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: 81})
		}, []string{"spec.ports[1].name: Required value"}},
		{"duplicate port names", func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "web", Port: 81})
		}, []string{"spec.ports[1].name: Duplicate value"}},
		{"bad protocol", func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "ICMP" }, []string{"spec.ports[0].protocol: Unsupported value"}},
		{"bad clusterIP", func(s *corev1.Service) { s.Spec.ClusterIP = "not-an-ip" }, []string{"spec.clusterIP: Invalid value"}},
		{"headless NodePort", func(s *corev1.Service) { s.Spec.ClusterIP = "None"; s.Spec.Type = corev1.ServiceTypeNodePort }, []string{"spec.clusterIP: Invalid value"}},
		{"bad selector label", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"a b": "x"} }, []string{"spec.selector: Invalid value"}},
		{"ExternalName with clusterIP", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com"
			s.Spec.ClusterIP = "198.19.0.5"
		}, []string{"spec.clusterIP: Forbidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := base()
			tc.mod(s)
			Default(s)
			errs := Validate(s)
			if len(errs) != len(tc.want) {
				t.Fatalf("got %v, want %v", errs, tc.want)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Error(), tc.want[i]) {
					t.Errorf("error %d = %q, want prefix %q", i, e.Error(), tc.want[i])
				}
			}
		})
	}
}

func TestClusterIPImmutable(t *testing.T) {
	old := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "s"}, Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Port: 80}}}}
	Default(old)
	n := old.DeepCopy()
	n.Spec.ClusterIP = ""
	n.Spec.ClusterIPs = nil
	errs := ValidateUpdate(n, old)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "spec.clusterIP: Invalid value") || !strings.Contains(errs[0].Error(), "field is immutable") {
		t.Fatalf("got %v", errs)
	}
}
