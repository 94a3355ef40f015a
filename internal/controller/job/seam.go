package job

import (
	"context"
	"encoding/json"

	batchv1 "k8s.io/api/batch/v1"
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
	CreatePod(ctx context.Context, j *batchv1.Job, pod *corev1.Pod) error
	DeletePod(ctx context.Context, j *batchv1.Job, pod *corev1.Pod) error
	UpdateStatus(ctx context.Context, j *batchv1.Job) (*batchv1.Job, error)
	// DeleteJob deletes a Job whose TTL after it finished has passed
	// (background propagation, on the condition that it is still that Job).
	DeleteJob(ctx context.Context, j *batchv1.Job) error
	Event(j *batchv1.Job, eventType, reason, message string)
	// RemoveTracking removes the job-tracking finalizer from a pod (if it
	// is still that pod).
	RemoveTracking(ctx context.Context, pod *corev1.Pod) error
	// Deleting reads the Job from the API (not a cache) and says whether it
	// is being deleted or gone, as Kubernetes rechecks before it adopts.
	Deleting(ctx context.Context, j *batchv1.Job) (bool, error)
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct {
	Client   kubernetes.Interface
	Recorder record.EventRecorder
}

var _ Writer = (*ClientWriter)(nil)

func (w *ClientWriter) CreatePod(ctx context.Context, j *batchv1.Job, pod *corev1.Pod) error {
	created, err := w.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		if !apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			w.Recorder.Eventf(j, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		}
		return err
	}
	w.Recorder.Eventf(j, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", created.Name)
	return nil
}

func (w *ClientWriter) DeletePod(ctx context.Context, j *batchv1.Job, pod *corev1.Pod) error {
	err := w.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{})
	if err != nil {
		if !apierrors.IsNotFound(err) {
			w.Recorder.Eventf(j, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
		}
		return err
	}
	w.Recorder.Eventf(j, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", pod.Name)
	return nil
}

func (w *ClientWriter) UpdateStatus(ctx context.Context, j *batchv1.Job) (*batchv1.Job, error) {
	return w.Client.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{})
}

func (w *ClientWriter) DeleteJob(ctx context.Context, j *batchv1.Job) error {
	bg := metav1.DeletePropagationBackground
	uid := j.UID
	err := w.Client.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{
		PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// RemoveTracking patches the finalizer away as Kubernetes' Job controller
// does: a strategic merge patch deleting it from the list (other
// finalizers stay), conditional on the pod's UID.
func (w *ClientWriter) RemoveTracking(ctx context.Context, pod *corev1.Pod) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"$deleteFromPrimitiveList/finalizers": []string{batchv1.JobTrackingFinalizer},
		"uid":                                 pod.UID,
	}})
	if err != nil {
		return err
	}
	_, err = w.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or another pod by that name now
	}
	return err
}

func (w *ClientWriter) Deleting(ctx context.Context, j *batchv1.Job) (bool, error) {
	live, err := w.Client.BatchV1().Jobs(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return live.UID != j.UID || live.DeletionTimestamp != nil, nil
}

func (w *ClientWriter) Event(j *batchv1.Job, eventType, reason, message string) {
	w.Recorder.Event(j, eventType, reason, message)
}
