package agent

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func svc(ns, name, ip string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: ports}}
}

func envLines(env []corev1.EnvVar) []string {
	var out []string
	for _, e := range env {
		out = append(out, e.Name+"="+e.Value)
	}
	return out
}

func TestServiceEnv(t *testing.T) {
	kubernetes := svc("default", "kubernetes", "198.19.0.1", corev1.ServicePort{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP})
	services := []*corev1.Service{
		kubernetes,
		svc("shop", "redis-primary", "198.19.0.20", corev1.ServicePort{Port: 6379}),
		svc("shop", "dns", "198.19.0.53", corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}, corev1.ServicePort{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP}),
		svc("shop", "headless", corev1.ClusterIPNone, corev1.ServicePort{Port: 80}),
		svc("other", "web", "198.19.0.80", corev1.ServicePort{Port: 80}),
	}
	kubeVars := []string{
		"KUBERNETES_SERVICE_HOST=198.19.0.1",
		"KUBERNETES_SERVICE_PORT=443",
		"KUBERNETES_SERVICE_PORT_HTTPS=443",
		"KUBERNETES_PORT=tcp://198.19.0.1:443",
		"KUBERNETES_PORT_443_TCP=tcp://198.19.0.1:443",
		"KUBERNETES_PORT_443_TCP_PROTO=tcp",
		"KUBERNETES_PORT_443_TCP_PORT=443",
		"KUBERNETES_PORT_443_TCP_ADDR=198.19.0.1",
	}
	for _, tc := range []struct {
		name  string
		ns    string
		links bool
		want  []string
	}{
		{name: "links off: only the kubernetes Service", ns: "shop", links: false, want: kubeVars},
		{name: "links on: the namespace's Services too, headless left out", ns: "shop", links: true, want: append([]string{
			"DNS_SERVICE_HOST=198.19.0.53",
			"DNS_SERVICE_PORT=53",
			"DNS_SERVICE_PORT_DNS=53",
			"DNS_SERVICE_PORT_DNS_TCP=53",
			"DNS_PORT=udp://198.19.0.53:53",
			"DNS_PORT_53_UDP=udp://198.19.0.53:53",
			"DNS_PORT_53_UDP_PROTO=udp",
			"DNS_PORT_53_UDP_PORT=53",
			"DNS_PORT_53_UDP_ADDR=198.19.0.53",
			"DNS_PORT_53_TCP=tcp://198.19.0.53:53",
			"DNS_PORT_53_TCP_PROTO=tcp",
			"DNS_PORT_53_TCP_PORT=53",
			"DNS_PORT_53_TCP_ADDR=198.19.0.53",
		}, append(kubeVars,
			"REDIS_PRIMARY_SERVICE_HOST=198.19.0.20",
			"REDIS_PRIMARY_SERVICE_PORT=6379",
			"REDIS_PRIMARY_PORT=tcp://198.19.0.20:6379",
			"REDIS_PRIMARY_PORT_6379_TCP=tcp://198.19.0.20:6379",
			"REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp",
			"REDIS_PRIMARY_PORT_6379_TCP_PORT=6379",
			"REDIS_PRIMARY_PORT_6379_TCP_ADDR=198.19.0.20",
		)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := envLines(ServiceEnv(services, tc.ns, tc.links))
			if !slices.Equal(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}

	// A Service named kubernetes in the pod's namespace wins over the API's.
	own := svc("shop", "kubernetes", "198.19.0.99", corev1.ServicePort{Port: 8443})
	for _, order := range [][]*corev1.Service{{kubernetes, own}, {own, kubernetes}} {
		got := envLines(ServiceEnv(order, "shop", true))
		if !slices.Contains(got, "KUBERNETES_SERVICE_HOST=198.19.0.99") {
			t.Errorf("the namespace's own kubernetes Service should win: %v", got)
		}
	}
}

// Container env overrides a Service variable and can use one in $(VAR).
func TestContainerEnvServiceVariables(t *testing.T) {
	svcEnv := []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "198.19.0.1"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "443"}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p"}}
	c := &corev1.Container{Name: "c", Env: []corev1.EnvVar{
		{Name: "API", Value: "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
		{Name: "KUBERNETES_SERVICE_PORT", Value: "8443"},
	}}
	env, _, err := containerEnv(context.Background(), nil, pod, c, "p", svcEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"KUBERNETES_SERVICE_HOST=198.19.0.1", "KUBERNETES_SERVICE_PORT=8443", "API=https://198.19.0.1:443"} {
		if !slices.Contains(env, want) {
			t.Errorf("env %v lacks %s", env, want)
		}
	}
}
