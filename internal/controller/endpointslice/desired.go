package endpointslice

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Labels and annotations on the slices and Endpoints the controller writes.
const (
	ManagedBy             = "endpointslice-controller.k8s.io"
	ManagedByLabel        = discoveryv1.LabelManagedBy   // endpointslice.kubernetes.io/managed-by
	ServiceNameLabel      = discoveryv1.LabelServiceName // kubernetes.io/service-name
	HeadlessLabel         = corev1.IsHeadlessService     // service.kubernetes.io/headless
	TriggerTimeAnnotation = corev1.EndpointsLastChangeTriggerTime
	// MaxEndpointsPerSlice is kube's default --max-endpoints-per-slice.
	MaxEndpointsPerSlice = 100
)

// endpointEntry is one endpoint the service should have, with the ports it
// resolves to on its pod.
type endpointEntry struct {
	key      string
	endpoint discoveryv1.Endpoint
}

// group is the endpoints that share an address type and a port list: they
// belong in the same slices.
type group struct {
	addressType discoveryv1.AddressType
	ports       []discoveryv1.EndpointPort
	entries     []endpointEntry
}

func (g *group) key() string { return groupKey(g.addressType, g.ports) }

func groupKey(at discoveryv1.AddressType, ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	b.WriteString(string(at))
	for _, p := range ports {
		fmt.Fprintf(&b, "|%s/%s/%d", deref(p.Name), derefProto(p.Protocol), derefInt(p.Port))
		if p.AppProtocol != nil {
			b.WriteString("/" + *p.AppProtocol)
		}
	}
	return b.String()
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefProto(p *corev1.Protocol) string {
	if p == nil {
		return string(corev1.ProtocolTCP)
	}
	return string(*p)
}

func derefInt(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}

// IsHeadless reports whether the service has no cluster IP.
func IsHeadless(svc *corev1.Service) bool { return svc.Spec.ClusterIP == corev1.ClusterIPNone }

// addressTypes are the families the service's slices carry.
func addressTypes(svc *corev1.Service) []discoveryv1.AddressType {
	var out []discoveryv1.AddressType
	for _, f := range svc.Spec.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
			out = append(out, discoveryv1.AddressTypeIPv4)
		case corev1.IPv6Protocol:
			out = append(out, discoveryv1.AddressTypeIPv6)
		}
	}
	if len(out) > 0 {
		return out
	}
	if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
		if ip.Is4() {
			return []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4}
		}
		return []discoveryv1.AddressType{discoveryv1.AddressTypeIPv6}
	}
	// Headless without families: whatever the pods have.
	return []discoveryv1.AddressType{discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6}
}

// podIP returns the pod's address of the family, or "".
func podIP(pod *corev1.Pod, at discoveryv1.AddressType) string {
	ips := []string{pod.Status.PodIP}
	for _, p := range pod.Status.PodIPs {
		ips = append(ips, p.IP)
	}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if (at == discoveryv1.AddressTypeIPv4) == ip.Is4() {
			return ip.String()
		}
	}
	return ""
}

// includePod reports whether a pod has a place in the endpoints at all:
// it has an address and has not finished.
func includePod(pod *corev1.Pod) bool {
	if pod.Status.PodIP == "" && len(pod.Status.PodIPs) == 0 {
		return false
	}
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// hostname is the pod's hostname when DNS should publish it under the
// service: the pod names the service as its subdomain.
func hostname(svc *corev1.Service, pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace {
		return pod.Spec.Hostname
	}
	return ""
}

// resolvePorts resolves the service's ports on the pod; a named target port
// the pod does not have leaves that port out.
func resolvePorts(svc *corev1.Service, pod *corev1.Pod) []discoveryv1.EndpointPort {
	out := []discoveryv1.EndpointPort{}
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		port, ok := findPort(pod, sp.TargetPort, sp.Port, proto)
		if !ok {
			continue
		}
		name := sp.Name
		ep := discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &port}
		if sp.AppProtocol != nil {
			ap := *sp.AppProtocol
			ep.AppProtocol = &ap
		}
		out = append(out, ep)
	}
	sort.Slice(out, func(i, j int) bool {
		if *out[i].Name != *out[j].Name {
			return *out[i].Name < *out[j].Name
		}
		return *out[i].Port < *out[j].Port
	})
	return out
}

func findPort(pod *corev1.Pod, target intstr.IntOrString, servicePort int32, proto corev1.Protocol) (int32, bool) {
	switch {
	case target.Type == intstr.String && target.StrVal != "":
		for _, c := range pod.Spec.Containers {
			for _, p := range c.Ports {
				pp := p.Protocol
				if pp == "" {
					pp = corev1.ProtocolTCP
				}
				if p.Name == target.StrVal && pp == proto {
					return p.ContainerPort, true
				}
			}
		}
		return 0, false
	case target.Type == intstr.Int && target.IntVal != 0:
		return target.IntVal, true
	default:
		return servicePort, true
	}
}

// desiredGroups computes every endpoint the service should have, grouped
// into address type and port list.
func desiredGroups(svc *corev1.Service, pods []*corev1.Pod) []*group {
	groups := map[string]*group{}
	for _, at := range addressTypes(svc) {
		for _, pod := range pods {
			if !includePod(pod) {
				continue
			}
			ip := podIP(pod, at)
			if ip == "" {
				continue
			}
			ports := resolvePorts(svc, pod)
			k := groupKey(at, ports)
			g := groups[k]
			if g == nil {
				g = &group{addressType: at, ports: ports}
				groups[k] = g
			}
			g.entries = append(g.entries, endpointEntry{key: endpointKey(pod.Namespace, pod.Name, ip), endpoint: podEndpoint(svc, pod, ip)})
		}
	}
	out := make([]*group, 0, len(groups))
	for _, g := range groups {
		sort.Slice(g.entries, func(i, j int) bool { return g.entries[i].key < g.entries[j].key })
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

func endpointKey(ns, name, ip string) string { return ns + "/" + name + "/" + ip }

// keyOf is the key of an endpoint in an existing slice.
func keyOf(ep *discoveryv1.Endpoint) string {
	ip := ""
	if len(ep.Addresses) > 0 {
		ip = ep.Addresses[0]
	}
	if ep.TargetRef != nil {
		return endpointKey(ep.TargetRef.Namespace, ep.TargetRef.Name, ip)
	}
	return "//" + ip
}

// podEndpoint is the endpoint of a pod: ready when the service publishes
// not-ready addresses or the pod is Ready and not terminating.
func podEndpoint(svc *corev1.Service, pod *corev1.Pod, ip string) discoveryv1.Endpoint {
	serving := svc.Spec.PublishNotReadyAddresses || podReady(pod)
	terminating := pod.DeletionTimestamp != nil
	ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
	ep := discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if h := hostname(svc, pod); h != "" {
		ep.Hostname = &h
	}
	if pod.Spec.NodeName != "" {
		n := pod.Spec.NodeName
		ep.NodeName = &n
	}
	return ep
}
