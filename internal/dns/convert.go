package dns

import (
	"net/netip"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// The model's records: what the index is built from, converted once from
// the Kubernetes objects an informer returned (never modified). Names are
// lower case; addresses are parsed and unmapped; what cannot be parsed is
// left out.

// portInfo is one port of a Service or an EndpointSlice.
type portInfo struct {
	name  string // lower case
	proto string // lower case
	port  int32  // -1: the slice declares no ports
}

// svcInfo is a Service.
type svcInfo struct {
	namespace, name string
	externalName    string // lower-case FQDN for ExternalName services
	external        bool
	headless        bool
	clusterIPs      []netip.Addr
	ports           []portInfo
	publishNotReady bool
}

// epInfo is one endpoint of an EndpointSlice.
type epInfo struct {
	addrs    []netip.Addr
	hostname string
	ready    bool
}

// sliceInfo is an EndpointSlice.
type sliceInfo struct {
	service   string // ns/name of the Service it belongs to
	fqdn      bool
	ports     []portInfo
	endpoints []epInfo
	// hosts: the slice's endpoint names, built on first use
	// (svcNames.hostTableOf).
	hosts atomic.Pointer[hostTable]
}

// podInfo is a Pod: its namespace and addresses.
type podInfo struct {
	namespace string
	addrs     []netip.Addr
}

// toSvcInfo converts a Service: an ExternalName Service keeps only its
// external name; ClusterIP None is headless; a port's protocol defaults to
// TCP; the tolerate-unready-endpoints annotation counts as
// publishNotReadyAddresses.
func toSvcInfo(svc *corev1.Service) *svcInfo {
	s := &svcInfo{namespace: svc.Namespace, name: strings.ToLower(svc.Name), publishNotReady: svc.Spec.PublishNotReadyAddresses}
	if svc.Annotations["service.alpha.kubernetes.io/tolerate-unready-endpoints"] == "true" {
		s.publishNotReady = true
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		s.external = true
		if svc.Spec.ExternalName != "" {
			s.externalName = strings.ToLower(strings.TrimSuffix(svc.Spec.ExternalName, ".") + ".")
		}
		return s
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	if len(ips) > 0 && ips[0] == corev1.ClusterIPNone {
		s.headless = true
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			s.clusterIPs = append(s.clusterIPs, a.Unmap())
		}
	}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		s.ports = append(s.ports, portInfo{name: strings.ToLower(p.Name), proto: strings.ToLower(proto), port: p.Port})
	}
	return s
}

// toSliceInfo converts an EndpointSlice: it belongs to the Service its
// service-name label names; a slice without ports has one unnamed port -1;
// an endpoint whose ready condition is unset counts as ready.
func toSliceInfo(es *discoveryv1.EndpointSlice) *sliceInfo {
	si := &sliceInfo{fqdn: es.AddressType == discoveryv1.AddressTypeFQDN}
	if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
		si.service = es.Namespace + "/" + name
	}
	if len(es.Ports) == 0 {
		si.ports = []portInfo{{port: -1}}
	}
	for _, p := range es.Ports {
		pi := portInfo{port: -1, proto: "tcp"}
		if p.Name != nil {
			pi.name = strings.ToLower(*p.Name)
		}
		if p.Protocol != nil {
			pi.proto = strings.ToLower(string(*p.Protocol))
		}
		if p.Port != nil {
			pi.port = *p.Port
		}
		si.ports = append(si.ports, pi)
	}
	// One allocation for the endpoints, one for all their addresses.
	n := 0
	for i := range es.Endpoints {
		n += len(es.Endpoints[i].Addresses)
	}
	all := make([]netip.Addr, 0, n)
	if len(es.Endpoints) > 0 {
		si.endpoints = make([]epInfo, 0, len(es.Endpoints))
	}
	for i := range es.Endpoints {
		e := &es.Endpoints[i]
		ei := epInfo{ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
		if e.Hostname != nil {
			ei.hostname = strings.ToLower(*e.Hostname)
		}
		start := len(all)
		for _, a := range e.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				all = append(all, ip.Unmap())
			}
		}
		if len(all) > start {
			ei.addrs = all[start:len(all):len(all)]
		}
		si.endpoints = append(si.endpoints, ei)
	}
	return si
}

// toPodInfo converts a Pod: its status.podIPs, else its status.podIP.
func toPodInfo(p *corev1.Pod) podInfo {
	pi := podInfo{namespace: p.Namespace}
	for _, s := range podIPs(p) {
		if a, err := netip.ParseAddr(s); err == nil {
			pi.addrs = append(pi.addrs, a.Unmap())
		}
	}
	return pi
}

func podIPs(p *corev1.Pod) []string {
	var out []string
	for _, ip := range p.Status.PodIPs {
		out = append(out, ip.IP)
	}
	if len(out) == 0 && p.Status.PodIP != "" {
		out = append(out, p.Status.PodIP)
	}
	return out
}
