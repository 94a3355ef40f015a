package proxy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Labels and annotations the proxy reads, as kube-proxy does.
const (
	// ServiceNameLabel ties an EndpointSlice to its Service.
	ServiceNameLabel = discoveryv1.LabelServiceName
	// ServiceProxyNameLabel on a Service hands it to another proxy: this
	// one leaves it alone.
	ServiceProxyNameLabel = "service.kubernetes.io/service-proxy-name"
)

// DefaultAffinityTimeout is sessionAffinity ClientIP's timeout when the
// Service does not set one (3 hours, as in Kubernetes).
const DefaultAffinityTimeout = 10800 * time.Second

// Endpoint is one backend of a service port: an address and the port the
// EndpointSlice resolved the Service's targetPort to for it.
type Endpoint struct {
	IP   netip.Addr
	Port uint16
}

func (e Endpoint) String() string { return netip.AddrPortFrom(e.IP, e.Port).String() }

// ServicePort is what the proxy programs for one port of one Service: the
// virtual address, the node port, and the endpoints traffic goes to.
type ServicePort struct {
	Namespace, Name string
	// PortName is the Service port's name ("" for an unnamed single port).
	PortName  string
	Protocol  corev1.Protocol
	ClusterIP netip.Addr
	Port      uint16
	// NodePort is 0 when the Service has none.
	NodePort uint16
	// Endpoints are the backends in use, sorted: the ready ones, or when
	// none is ready, the serving-but-terminating ones. Empty means
	// connections are rejected.
	Endpoints []Endpoint
	// AffinityTimeout is sessionAffinity ClientIP's timeout; 0 is no
	// affinity.
	AffinityTimeout time.Duration
}

// ID names the service port uniquely: namespace/name/protocol/port.
func (sp ServicePort) ID() string {
	return fmt.Sprintf("%s/%s/%s/%d", sp.Namespace, sp.Name, strings.ToLower(string(sp.Protocol)), sp.Port)
}

// ServiceKey is namespace/name.
func ServiceKey(namespace, name string) string { return namespace + "/" + name }

// Proxied says whether the proxy programs anything for svc, and if not, why.
// Headless Services (clusterIP None), ExternalName Services, Services without
// a cluster IP and Services handed to another proxy get nothing.
func Proxied(svc *corev1.Service) (bool, string) {
	switch {
	case svc == nil:
		return false, "deleted"
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return false, "ExternalName"
	case svc.Spec.ClusterIP == corev1.ClusterIPNone:
		return false, "headless"
	case svc.Spec.ClusterIP == "":
		return false, "no cluster IP"
	case svc.Labels[ServiceProxyNameLabel] != "":
		return false, "handled by proxy " + svc.Labels[ServiceProxyNameLabel]
	}
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil || !ip.Is4() {
		return false, "cluster IP is not IPv4"
	}
	return true, ""
}

// ServicePorts computes what the proxy programs for svc given its
// EndpointSlices. It is a pure function: the heart of both mechanisms.
//
// A Service with no selector and no EndpointSlice at all has endpoints
// managed by nobody the cluster knows (kube-system/kube-dns, whose address
// the node answers itself, is one): it gets nothing, so whatever listens on
// the address keeps answering; with the service range routed locally,
// anything else to it is refused by the kernel.
func ServicePorts(svc *corev1.Service, eps []*discoveryv1.EndpointSlice) []ServicePort {
	if ok, _ := Proxied(svc); !ok {
		return nil
	}
	if len(svc.Spec.Selector) == 0 && len(eps) == 0 {
		return nil
	}
	clusterIP := netip.MustParseAddr(svc.Spec.ClusterIP)
	var timeout time.Duration
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		timeout = DefaultAffinityTimeout
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			timeout = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	nodePorts := svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
	var out []ServicePort
	for _, p := range svc.Spec.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		if proto != corev1.ProtocolTCP && proto != corev1.ProtocolUDP {
			continue // SCTP: not supported
		}
		if p.Port <= 0 || p.Port > 65535 {
			continue
		}
		sp := ServicePort{
			Namespace: svc.Namespace, Name: svc.Name, PortName: p.Name, Protocol: proto,
			ClusterIP: clusterIP, Port: uint16(p.Port), AffinityTimeout: timeout,
		}
		if nodePorts && p.NodePort > 0 && p.NodePort <= 65535 {
			sp.NodePort = uint16(p.NodePort)
		}
		sp.Endpoints = endpointsFor(p.Name, proto, eps)
		out = append(out, sp)
	}
	return out
}

// endpointsFor picks the endpoints of one service port: the port of each
// slice whose name and protocol match gives the endpoint's target port
// (so a named targetPort may resolve differently per endpoint). Ready
// endpoints win; serving-but-terminating ones are used only when no endpoint
// is ready.
func endpointsFor(portName string, proto corev1.Protocol, eps []*discoveryv1.EndpointSlice) []Endpoint {
	ready := map[Endpoint]bool{}
	terminating := map[Endpoint]bool{}
	for _, s := range eps {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var port uint16
		for _, p := range s.Ports {
			pn := ""
			if p.Name != nil {
				pn = *p.Name
			}
			pp := corev1.ProtocolTCP
			if p.Protocol != nil {
				pp = *p.Protocol
			}
			if pn == portName && pp == proto && p.Port != nil && *p.Port > 0 && *p.Port <= 65535 {
				port = uint16(*p.Port)
				break
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			isReady, serving, term := conditions(e.Conditions)
			for _, a := range e.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || !ip.Is4() {
					continue
				}
				ep := Endpoint{IP: ip, Port: port}
				switch {
				case isReady:
					ready[ep] = true
				case serving && term:
					terminating[ep] = true
				}
			}
		}
	}
	use := ready
	if len(use) == 0 {
		use = terminating
	}
	out := make([]Endpoint, 0, len(use))
	for ep := range use {
		out = append(out, ep)
	}
	slices.SortFunc(out, func(a, b Endpoint) int {
		if c := a.IP.Compare(b.IP); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return out
}

// conditions reads an endpoint's conditions with the API's defaults: an
// unset ready or serving means true, an unset terminating false.
func conditions(c discoveryv1.EndpointConditions) (ready, serving, terminating bool) {
	ready = c.Ready == nil || *c.Ready
	serving = c.Serving == nil || *c.Serving
	terminating = c.Terminating != nil && *c.Terminating
	return ready, serving, terminating
}
