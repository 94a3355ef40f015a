package statefulset

import (
	"context"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/history"
)

// Writer is the controller's side-effect seam: every change it makes to the
// cluster goes through here, and each records the event kube's controller
// records.
type Writer interface {
	CreatePod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error
	DeletePod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error
	UpdatePod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error
	AdoptPod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error
	CreateClaim(ctx context.Context, set *appsv1.StatefulSet, claim *corev1.PersistentVolumeClaim, pod string) error
	UpdateClaim(ctx context.Context, set *appsv1.StatefulSet, claim *corev1.PersistentVolumeClaim) error
	CreateRevision(ctx context.Context, rev *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error)
	GetRevision(ctx context.Context, namespace, name string) (*appsv1.ControllerRevision, error)
	UpdateRevision(ctx context.Context, rev *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error)
	DeleteRevision(ctx context.Context, rev *appsv1.ControllerRevision) error
	// UpdateStatus writes set's status. A writer may leave in set what
	// the API returned (its new resourceVersion).
	UpdateStatus(ctx context.Context, set *appsv1.StatefulSet) error
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct {
	// Client (the embedded history.Client) is the API client; it writes
	// the ControllerRevisions too.
	history.Client
	Recorder record.EventRecorder
}

var _ Writer = (*ClientWriter)(nil)

func (w *ClientWriter) CreatePod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error {
	_, err := w.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil // a stale cache: the pod is there already
	}
	if err != nil {
		w.Recorder.Eventf(set, corev1.EventTypeWarning, "FailedCreate", "create Pod %s in StatefulSet %s failed error: %v", pod.Name, set.Name, err)
		return err
	}
	w.Recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulCreate", "create Pod %s in StatefulSet %s successful", pod.Name, set.Name)
	return nil
}

func (w *ClientWriter) DeletePod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error {
	uid := pod.UID
	err := w.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone already, or replaced by a newer pod
	}
	if err != nil {
		w.Recorder.Eventf(set, corev1.EventTypeWarning, "FailedDelete", "delete Pod %s in StatefulSet %s failed error: %v", pod.Name, set.Name, err)
		return err
	}
	w.Recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", pod.Name, set.Name)
	return nil
}

func (w *ClientWriter) UpdatePod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error {
	_, err := w.Client.CoreV1().Pods(pod.Namespace).Update(ctx, pod, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		w.Recorder.Eventf(set, corev1.EventTypeWarning, "FailedUpdate", "update Pod %s in StatefulSet %s failed error: %v", pod.Name, set.Name, err)
		return err
	}
	return nil
}

// AdoptPod makes the set the controller of an orphan pod.
//
// The set is read again from the API first: adopting for a set whose
// deletion (with orphaning) the informer has not shown yet would take back
// the pods the garbage collector just released.
func (w *ClientWriter) AdoptPod(ctx context.Context, set *appsv1.StatefulSet, pod *corev1.Pod) error {
	fresh, err := w.Client.AppsV1().StatefulSets(set.Namespace).Get(ctx, set.Name, metav1.GetOptions{})
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

func (w *ClientWriter) CreateClaim(ctx context.Context, set *appsv1.StatefulSet, claim *corev1.PersistentVolumeClaim, pod string) error {
	_, err := w.Client.CoreV1().PersistentVolumeClaims(claim.Namespace).Create(ctx, claim, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		w.Recorder.Eventf(set, corev1.EventTypeWarning, "FailedCreate", "create Claim %s for Pod %s in StatefulSet %s failed error: %v", claim.Name, pod, set.Name, err)
		return err
	}
	w.Recorder.Eventf(set, corev1.EventTypeNormal, "SuccessfulCreate", "create Claim %s Pod %s in StatefulSet %s success", claim.Name, pod, set.Name)
	return nil
}

func (w *ClientWriter) UpdateClaim(ctx context.Context, set *appsv1.StatefulSet, claim *corev1.PersistentVolumeClaim) error {
	_, err := w.Client.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, claim, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updating the owners of claim %s: %w", claim.Name, err)
	}
	return nil
}

// UpdateStatus writes the set's status; on success set is the set as the
// API returned it.
func (w *ClientWriter) UpdateStatus(ctx context.Context, set *appsv1.StatefulSet) error {
	out, err := w.Client.AppsV1().StatefulSets(set.Namespace).UpdateStatus(ctx, set, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	*set = *out
	return nil
}
