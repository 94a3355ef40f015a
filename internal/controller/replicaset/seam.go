package replicaset

import (
	"context"
	"encoding/json"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// Writer is the controller's side-effect seam: every change it makes to the
// cluster goes through here, each recording the event Kubernetes'
// controller records.
type Writer interface {
	// GetReplicaSet reads the set from the API, not the cache (before
	// adopting, to be sure it is not being deleted).
	GetReplicaSet(ctx context.Context, namespace, name string) (*appsv1.ReplicaSet, error)
	CreatePod(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error
	DeletePod(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error
	AdoptPod(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error
	ReleasePod(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error
	UpdateStatus(ctx context.Context, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error)
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct {
	Client   kubernetes.Interface
	Recorder record.EventRecorder
}

var _ Writer = (*ClientWriter)(nil)

func (w *ClientWriter) GetReplicaSet(ctx context.Context, namespace, name string) (*appsv1.ReplicaSet, error) {
	return w.Client.AppsV1().ReplicaSets(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (w *ClientWriter) CreatePod(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error {
	created, err := w.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		if !apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			w.Recorder.Eventf(rs, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		}
		return err
	}
	w.Recorder.Eventf(rs, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", created.Name)
	return nil
}

func (w *ClientWriter) DeletePod(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error {
	err := w.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			w.Recorder.Eventf(rs, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
		}
		return err
	}
	w.Recorder.Eventf(rs, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", pod.Name)
	return nil
}

// patchOwners replaces the pod's owner references, on the condition that
// the pod is still the one read (uid and resourceVersion).
func (w *ClientWriter) patchOwners(ctx context.Context, pod *corev1.Pod, refs []metav1.OwnerReference) error {
	if refs == nil {
		refs = []metav1.OwnerReference{}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": refs, "uid": pod.UID, "resourceVersion": pod.ResourceVersion}})
	if err != nil {
		return err
	}
	_, err = w.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil // gone: nothing to adopt or release
	}
	return err
}

// AdoptPod makes the set the controller of an orphan pod.
func (w *ClientWriter) AdoptPod(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error {
	return w.patchOwners(ctx, pod, append(append([]metav1.OwnerReference(nil), pod.OwnerReferences...), ControllerRef(rs)))
}

// ReleasePod removes the set's reference from a pod that no longer matches.
func (w *ClientWriter) ReleasePod(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error {
	var refs []metav1.OwnerReference
	for _, r := range pod.OwnerReferences {
		if r.UID != rs.UID {
			refs = append(refs, r)
		}
	}
	return w.patchOwners(ctx, pod, refs)
}

func (w *ClientWriter) UpdateStatus(ctx context.Context, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	return w.Client.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(ctx, rs, metav1.UpdateOptions{})
}
