package endpointslice

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Writer is the controller's side-effect seam.
type Writer interface {
	CreateSlice(ctx context.Context, s *discoveryv1.EndpointSlice) (*discoveryv1.EndpointSlice, error)
	UpdateSlice(ctx context.Context, s *discoveryv1.EndpointSlice) (*discoveryv1.EndpointSlice, error)
	DeleteSlice(ctx context.Context, s *discoveryv1.EndpointSlice) error
	CreateEndpoints(ctx context.Context, e *corev1.Endpoints) (*corev1.Endpoints, error)
	UpdateEndpoints(ctx context.Context, e *corev1.Endpoints) (*corev1.Endpoints, error)
	DeleteEndpoints(ctx context.Context, namespace, name string) error
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct{ Client kubernetes.Interface }

func (w ClientWriter) CreateSlice(ctx context.Context, s *discoveryv1.EndpointSlice) (*discoveryv1.EndpointSlice, error) {
	return w.Client.DiscoveryV1().EndpointSlices(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
}

func (w ClientWriter) UpdateSlice(ctx context.Context, s *discoveryv1.EndpointSlice) (*discoveryv1.EndpointSlice, error) {
	return w.Client.DiscoveryV1().EndpointSlices(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
}

func (w ClientWriter) DeleteSlice(ctx context.Context, s *discoveryv1.EndpointSlice) error {
	uid := s.UID
	err := w.Client.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (w ClientWriter) CreateEndpoints(ctx context.Context, e *corev1.Endpoints) (*corev1.Endpoints, error) {
	return w.Client.CoreV1().Endpoints(e.Namespace).Create(ctx, e, metav1.CreateOptions{})
}

func (w ClientWriter) UpdateEndpoints(ctx context.Context, e *corev1.Endpoints) (*corev1.Endpoints, error) {
	return w.Client.CoreV1().Endpoints(e.Namespace).Update(ctx, e, metav1.UpdateOptions{})
}

func (w ClientWriter) DeleteEndpoints(ctx context.Context, namespace, name string) error {
	err := w.Client.CoreV1().Endpoints(namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
