package cronjob

import (
	"context"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// Writer is the controller's side-effect seam, each write recording the
// event Kubernetes' controller records.
type Writer interface {
	CreateJob(ctx context.Context, cj *batchv1.CronJob, j *batchv1.Job) (*batchv1.Job, error)
	DeleteJob(ctx context.Context, cj *batchv1.CronJob, j *batchv1.Job) error
	UpdateStatus(ctx context.Context, cj *batchv1.CronJob) (*batchv1.CronJob, error)
	Event(cj *batchv1.CronJob, eventType, reason, message string)
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct {
	Client   kubernetes.Interface
	Recorder record.EventRecorder
}

var _ Writer = (*ClientWriter)(nil)

func (w *ClientWriter) CreateJob(ctx context.Context, cj *batchv1.CronJob, j *batchv1.Job) (*batchv1.Job, error) {
	created, err := w.Client.BatchV1().Jobs(j.Namespace).Create(ctx, j, metav1.CreateOptions{})
	if err != nil {
		if !apierrors.IsAlreadyExists(err) {
			w.Recorder.Eventf(cj, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		}
		return nil, err
	}
	w.Recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulCreate", "Created job %v", created.Name)
	return created, nil
}

func (w *ClientWriter) DeleteJob(ctx context.Context, cj *batchv1.CronJob, j *batchv1.Job) error {
	bg := metav1.DeletePropagationBackground
	err := w.Client.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		w.Recorder.Eventf(cj, corev1.EventTypeWarning, "FailedDelete", "Deleted job: %v", err)
		return err
	}
	w.Recorder.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %v", j.Name)
	return nil
}

func (w *ClientWriter) UpdateStatus(ctx context.Context, cj *batchv1.CronJob) (*batchv1.CronJob, error) {
	return w.Client.BatchV1().CronJobs(cj.Namespace).UpdateStatus(ctx, cj, metav1.UpdateOptions{})
}

func (w *ClientWriter) Event(cj *batchv1.CronJob, eventType, reason, message string) {
	w.Recorder.Event(cj, eventType, reason, message)
}
