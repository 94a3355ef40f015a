package disruption

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// Writer is the controller's side-effect seam.
type Writer interface {
	// UpdateStatus writes the budget's status through the status
	// subresource (guarded by its resourceVersion).
	UpdateStatus(ctx context.Context, pdb *policyv1.PodDisruptionBudget) error
	// NotDeleted records that an evicted pod was not deleted in time.
	NotDeleted(pdb *policyv1.PodDisruptionBudget, pod *corev1.Pod)
	// SyncFailed records why the budget's status could not be computed.
	SyncFailed(pdb *policyv1.PodDisruptionBudget, message string)
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct {
	Client   kubernetes.Interface
	Recorder record.EventRecorder
}

var _ Writer = (*ClientWriter)(nil)

func (w *ClientWriter) UpdateStatus(ctx context.Context, pdb *policyv1.PodDisruptionBudget) error {
	_, err := w.Client.PolicyV1().PodDisruptionBudgets(pdb.Namespace).UpdateStatus(ctx, pdb, metav1.UpdateOptions{})
	return err
}

func (w *ClientWriter) NotDeleted(pdb *policyv1.PodDisruptionBudget, pod *corev1.Pod) {
	w.Recorder.Eventf(pod, corev1.EventTypeWarning, "NotDeleted", "Pod was expected by PDB %s/%s to be deleted but it wasn't", pdb.Namespace, pdb.Name)
}

func (w *ClientWriter) SyncFailed(pdb *policyv1.PodDisruptionBudget, message string) {
	w.Recorder.Eventf(pdb, corev1.EventTypeWarning, "CalculateExpectedPodCountFailed", "Failed to calculate the number of expected pods: %v", message)
}
