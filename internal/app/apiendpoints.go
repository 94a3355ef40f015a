package app

import (
	"context"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// kubernetesService is the name of the Service of the API in the default
// namespace.
const kubernetesService = "kubernetes"

// apiEndpoints are the Endpoints and the EndpointSlice of the kubernetes
// Service, as kube-apiserver writes them: the API at addr (port name
// https). The Endpoints are marked not to be mirrored, the slice carries
// the Service's name and no managing controller's label.
func apiEndpoints(addr netip.AddrPort) (*corev1.Endpoints, *discoveryv1.EndpointSlice) {
	port := int32(addr.Port())
	tcp := corev1.ProtocolTCP
	ep := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: kubernetesService, Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{discoveryv1.LabelSkipMirror: "true"}},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: addr.Addr().String()}},
			Ports:     []corev1.EndpointPort{{Name: "https", Port: port, Protocol: tcp}},
		}},
	}
	family := discoveryv1.AddressTypeIPv4
	if addr.Addr().Is6() {
		family = discoveryv1.AddressTypeIPv6
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: kubernetesService, Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{discoveryv1.LabelServiceName: kubernetesService}},
		AddressType: family,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{addr.Addr().String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(port), Protocol: &tcp}},
	}
	return ep, slice
}

// reconcileAPIEndpoints makes the kubernetes Service's Endpoints and
// EndpointSlice point at addr, where pods reach the API; with addr not
// valid (no pods on this node) it removes what an earlier run left.
func reconcileAPIEndpoints(ctx context.Context, client kubernetes.Interface, addr netip.AddrPort) error {
	eps := client.CoreV1().Endpoints(metav1.NamespaceDefault)
	slices := client.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault)
	if !addr.IsValid() {
		for _, del := range []func(context.Context, string, metav1.DeleteOptions) error{eps.Delete, slices.Delete} {
			if err := del(ctx, kubernetesService, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
		return nil
	}
	opts := metav1.CreateOptions{FieldManager: "headway"}
	want, wantSlice := apiEndpoints(addr)
	cur, err := eps.Get(ctx, kubernetesService, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = eps.Create(ctx, want, opts)
	case err == nil && (!apiequality.Semantic.DeepEqual(cur.Subsets, want.Subsets) || cur.Labels[discoveryv1.LabelSkipMirror] != "true"):
		cur = cur.DeepCopy()
		cur.Subsets, cur.Labels = want.Subsets, want.Labels
		_, err = eps.Update(ctx, cur, metav1.UpdateOptions{FieldManager: "headway"})
	}
	if err != nil {
		return err
	}
	curSlice, err := slices.Get(ctx, kubernetesService, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, wantSlice, opts)
	case err == nil && (!apiequality.Semantic.DeepEqual(curSlice.Endpoints, wantSlice.Endpoints) ||
		!apiequality.Semantic.DeepEqual(curSlice.Ports, wantSlice.Ports) || curSlice.AddressType != wantSlice.AddressType):
		if curSlice.AddressType != wantSlice.AddressType {
			// The address type cannot change: make it anew.
			if err = slices.Delete(ctx, kubernetesService, metav1.DeleteOptions{}); err == nil {
				_, err = slices.Create(ctx, wantSlice, opts)
			}
			break
		}
		curSlice = curSlice.DeepCopy()
		curSlice.Endpoints, curSlice.Ports, curSlice.Labels = wantSlice.Endpoints, wantSlice.Ports, wantSlice.Labels
		_, err = slices.Update(ctx, curSlice, metav1.UpdateOptions{FieldManager: "headway"})
	}
	return err
}
