package daemonset

import (
	"context"
	"encoding/json"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/history"
)

// Writer is the controller's side-effect seam: every change it makes goes
// through here, with the events kube's DaemonSet controller records.
type Writer interface {
	CreatePod(ctx context.Context, set *appsv1.DaemonSet, pod *corev1.Pod) (*corev1.Pod, error)
	DeletePod(ctx context.Context, set *appsv1.DaemonSet, pod *corev1.Pod) error
	AdoptPod(ctx context.Context, set *appsv1.DaemonSet, pod *corev1.Pod) error
	CreateRevision(ctx context.Context, rev *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error)
	GetRevision(ctx context.Context, namespace, name string) (*appsv1.ControllerRevision, error)
	UpdateRevision(ctx context.Context, rev *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error)
	DeleteRevision(ctx context.Context, rev *appsv1.ControllerRevision) error
	UpdateStatus(ctx context.Context, set *appsv1.DaemonSet) error
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct {
	// Client (the embedded history.Client) is the API client; it writes
	// the ControllerRevisions too.
	history.Client
	Recorder record.EventRecorder
}

var _ Writer = (*ClientWriter)(nil)

func (w *ClientWriter) CreatePod(ctx context.Context, set *appsv1.DaemonSet, pod *corev1.Pod) (*corev1.Pod, error) {
	created, err := w.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		w.Recorder.Eventf(set, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return nil, err
	}
	w.Recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %s", created.Name)
	return created, nil
}

func (w *ClientWriter) DeletePod(ctx context.Context, set *appsv1.DaemonSet, pod *corev1.Pod) error {
	uid := pod.UID
	err := w.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		w.Recorder.Eventf(set, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
		return err
	}
	w.Recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %s", pod.Name)
	return nil
}

// AdoptPod makes the set the controller of an orphan pod, after reading the
// set again (one being deleted with orphaning adopts nothing).
func (w *ClientWriter) AdoptPod(ctx context.Context, set *appsv1.DaemonSet, pod *corev1.Pod) error {
	fresh, err := w.Client.AppsV1().DaemonSets(set.Namespace).Get(ctx, set.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if fresh.UID != set.UID || fresh.DeletionTimestamp != nil {
		return nil
	}
	refs := append(append([]metav1.OwnerReference(nil), pod.OwnerReferences...), controllerRef(set))
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": refs, "uid": pod.UID, "resourceVersion": pod.ResourceVersion}})
	if err != nil {
		return err
	}
	_, err = w.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

func (w *ClientWriter) UpdateStatus(ctx context.Context, set *appsv1.DaemonSet) error {
	_, err := w.Client.AppsV1().DaemonSets(set.Namespace).UpdateStatus(ctx, set, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
