package resourcequota

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Writer is the controller's side-effect seam.
type Writer interface {
	// UpdateStatus writes the quota's status through the status
	// subresource, guarded by its resourceVersion: a quota admission
	// charged meanwhile is a conflict, and the sync is retried.
	UpdateStatus(ctx context.Context, q *corev1.ResourceQuota) error
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct {
	Client kubernetes.Interface
}

var _ Writer = (*ClientWriter)(nil)

func (w *ClientWriter) UpdateStatus(ctx context.Context, q *corev1.ResourceQuota) error {
	_, err := w.Client.CoreV1().ResourceQuotas(q.Namespace).UpdateStatus(ctx, q, metav1.UpdateOptions{FieldManager: "resourcequota-controller"})
	return err
}
