package job

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// recordingWriter is a fake seam: it records what the controller would
// change and answers Deleting as told.
type recordingWriter struct {
	mu       sync.Mutex
	created  int
	deleting bool
	checked  int
}

func (w *recordingWriter) CreatePod(context.Context, *batchv1.Job, *corev1.Pod) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.created++
	return nil
}
func (w *recordingWriter) DeletePod(context.Context, *batchv1.Job, *corev1.Pod) error { return nil }
func (w *recordingWriter) UpdateStatus(_ context.Context, j *batchv1.Job) (*batchv1.Job, error) {
	return j, nil
}
func (w *recordingWriter) DeleteJob(context.Context, *batchv1.Job) error     { return nil }
func (w *recordingWriter) Event(*batchv1.Job, string, string, string)        {}
func (w *recordingWriter) RemoveTracking(context.Context, *corev1.Pod) error { return nil }
func (w *recordingWriter) Deleting(context.Context, *batchv1.Job) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.checked++
	return w.deleting, nil
}

// A Job deleted with --cascade=orphan, seen by a cache that has the
// garbage collector's release of its pod but not yet the Job's deletion:
// the controller must not create a replacement pod for it (it would outlive
// the Job), and it learns that from a live read.
func TestReleasedPodIsNotReplacedWhileTheJobIsDeleted(t *testing.T) {
	for _, deleting := range []bool{true, false} {
		j := newJob(1, 1)
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"job-name": "pi"}}
		released := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "pi-abcde", Namespace: "default", UID: "pod-uid",
				Labels: map[string]string{"job-name": "pi"}, Finalizers: []string{batchv1.JobTrackingFinalizer}},
			Spec:   j.Spec.Template.Spec,
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		}
		factory := informers.NewSharedInformerFactory(fake.NewSimpleClientset(), 0)
		w := &recordingWriter{deleting: deleting}
		c := NewWithWriter(w, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err := factory.Batch().V1().Jobs().Informer().GetIndexer().Add(j); err != nil {
			t.Fatal(err)
		}
		if err := factory.Core().V1().Pods().Informer().GetIndexer().Add(released); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Sync(t.Context(), "default/pi"); err != nil {
			t.Fatal(err)
		}
		want := 0
		if !deleting {
			want = 1 // a live Job whose pod was taken away gets a new one
		}
		if w.checked != 1 || w.created != want {
			t.Errorf("Job deleting=%v: %d live checks and %d pods created, want 1 and %d", deleting, w.checked, w.created, want)
		}
	}
}
