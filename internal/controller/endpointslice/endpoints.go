package endpointslice

import (
	"maps"
	"sort"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxEndpointsAddresses is the most addresses a legacy Endpoints object
// carries; beyond it the object is truncated and says so.
const (
	MaxEndpointsAddresses  = 1000
	OverCapacityAnnotation = "endpoints.kubernetes.io/over-capacity"
)

// DesiredEndpoints is the legacy Endpoints object mirroring the service's
// pods: ready addresses (publishNotReadyAddresses counts every pod as
// ready) and not-ready ones, one subset per distinct port list. Terminating
// pods are left out unless the service publishes not-ready addresses.
func DesiredEndpoints(svc *corev1.Service, pods []*corev1.Pod, triggerTime string) *corev1.Endpoints {
	ep := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace, Labels: map[string]string{}},
	}
	for k, v := range svc.Labels {
		ep.Labels[k] = v
	}
	if IsHeadless(svc) {
		ep.Labels[HeadlessLabel] = ""
	}
	if triggerTime != "" {
		ep.Annotations = map[string]string{TriggerTimeAnnotation: triggerTime}
	}
	at := addressTypes(svc)[0]
	type subset struct {
		ports           []corev1.EndpointPort
		ready, notReady []corev1.EndpointAddress
	}
	subsets := map[string]*subset{}
	count := 0
	for _, pod := range pods {
		if !includePod(pod) || (pod.DeletionTimestamp != nil && !svc.Spec.PublishNotReadyAddresses) {
			continue
		}
		ip := podIP(pod, at)
		if ip == "" {
			continue
		}
		eps := resolvePorts(svc, pod)
		k := groupKey(at, eps)
		s := subsets[k]
		if s == nil {
			s = &subset{}
			for _, p := range eps {
				cp := corev1.EndpointPort{Name: deref(p.Name), Port: derefInt(p.Port), Protocol: corev1.Protocol(derefProto(p.Protocol)), AppProtocol: p.AppProtocol}
				s.ports = append(s.ports, cp)
			}
			subsets[k] = s
		}
		addr := corev1.EndpointAddress{IP: ip, Hostname: hostname(svc, pod),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}}
		if pod.Spec.NodeName != "" {
			n := pod.Spec.NodeName
			addr.NodeName = &n
		}
		if count >= MaxEndpointsAddresses {
			if ep.Annotations == nil {
				ep.Annotations = map[string]string{}
			}
			ep.Annotations[OverCapacityAnnotation] = "truncated"
			continue
		}
		count++
		if svc.Spec.PublishNotReadyAddresses || podReady(pod) {
			s.ready = append(s.ready, addr)
		} else {
			s.notReady = append(s.notReady, addr)
		}
	}
	var keys []string
	for k := range subsets {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	byIP := func(a []corev1.EndpointAddress) {
		sort.Slice(a, func(i, j int) bool { return a[i].IP < a[j].IP })
	}
	for _, k := range keys {
		s := subsets[k]
		if len(s.ready)+len(s.notReady) == 0 {
			continue
		}
		byIP(s.ready)
		byIP(s.notReady)
		ep.Subsets = append(ep.Subsets, corev1.EndpointSubset{Addresses: s.ready, NotReadyAddresses: s.notReady, Ports: s.ports})
	}
	return ep
}

// endpointsEqual compares what the controller manages, not the trigger time.
func endpointsEqual(a, b *corev1.Endpoints) bool {
	if !maps.Equal(a.Labels, b.Labels) || a.Annotations[OverCapacityAnnotation] != b.Annotations[OverCapacityAnnotation] {
		return false
	}
	if len(a.Subsets) == 0 && len(b.Subsets) == 0 {
		return true
	}
	return apiequality.Semantic.DeepEqual(a.Subsets, b.Subsets)
}
