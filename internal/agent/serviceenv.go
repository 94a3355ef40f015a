package agent

import (
	"fmt"
	"net"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceEnv is the Service environment of a pod in namespace ns, as the
// kubelet makes it: the kubernetes Service of the default namespace always
// (KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT, ...), and, when links
// is true (enableServiceLinks, the default), every Service of ns with a
// cluster IP, Docker-link style:
//
//	NAME_SERVICE_HOST, NAME_SERVICE_PORT (the first port),
//	NAME_SERVICE_PORT_<PORTNAME> (each named port),
//	NAME_PORT=tcp://IP:PORT (the first port), and per port
//	NAME_PORT_<PORT>_<PROTO>=proto://IP:PORT with _PROTO, _PORT and _ADDR.
//
// NAME is the Service's name in upper case with "-" as "_". The result is
// in a stable order (by Service name, then as listed above).
func ServiceEnv(services []*corev1.Service, ns string, links bool) []corev1.EnvVar {
	chosen := map[string]*corev1.Service{}
	for _, svc := range services {
		if !hasClusterIP(svc) {
			continue
		}
		switch {
		case svc.Namespace == metav1.NamespaceDefault && svc.Name == "kubernetes":
			// A Service of the pod's own namespace named kubernetes wins.
			if _, ok := chosen[svc.Name]; !ok {
				chosen[svc.Name] = svc
			}
		case svc.Namespace == ns && links:
			chosen[svc.Name] = svc
		}
	}
	names := make([]string, 0, len(chosen))
	for n := range chosen {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []corev1.EnvVar
	add := func(k, v string) { out = append(out, corev1.EnvVar{Name: k, Value: v}) }
	for _, n := range names {
		svc := chosen[n]
		name := envName(svc.Name)
		ip := svc.Spec.ClusterIP
		add(name+"_SERVICE_HOST", ip)
		if len(svc.Spec.Ports) == 0 {
			continue
		}
		add(name+"_SERVICE_PORT", fmt.Sprint(svc.Spec.Ports[0].Port))
		for _, p := range svc.Spec.Ports {
			if p.Name != "" {
				add(name+"_SERVICE_PORT_"+envName(p.Name), fmt.Sprint(p.Port))
			}
		}
		first := svc.Spec.Ports[0]
		add(name+"_PORT", linkURL(ip, first))
		for _, p := range svc.Spec.Ports {
			proto := protocol(p)
			prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.Port, strings.ToUpper(proto))
			add(prefix, linkURL(ip, p))
			add(prefix+"_PROTO", strings.ToLower(proto))
			add(prefix+"_PORT", fmt.Sprint(p.Port))
			add(prefix+"_ADDR", ip)
		}
	}
	return out
}

func hasClusterIP(svc *corev1.Service) bool {
	ip := svc.Spec.ClusterIP
	return ip != "" && ip != corev1.ClusterIPNone
}

func protocol(p corev1.ServicePort) string {
	if p.Protocol == "" {
		return string(corev1.ProtocolTCP)
	}
	return string(p.Protocol)
}

func linkURL(ip string, p corev1.ServicePort) string {
	return strings.ToLower(protocol(p)) + "://" + net.JoinHostPort(ip, fmt.Sprint(p.Port))
}

// envName is a Service or port name as an environment variable name.
func envName(s string) string {
	return strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
}
