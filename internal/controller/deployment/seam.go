package deployment

import (
	"context"
	"encoding/json"
	"fmt"

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
	// GetDeployment and GetReplicaSet read from the API, not the cache.
	GetDeployment(ctx context.Context, namespace, name string) (*appsv1.Deployment, error)
	GetReplicaSet(ctx context.Context, namespace, name string) (*appsv1.ReplicaSet, error)
	CreateReplicaSet(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error)
	// UpdateReplicaSet writes a set's replicas and annotations; from and to
	// are its replicas before and after.
	UpdateReplicaSet(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet, from, to int32) error
	DeleteReplicaSet(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet) error
	AdoptReplicaSet(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet) error
	ReleaseReplicaSet(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet) error
	// SetRevision sets the Deployment's revision annotation.
	SetRevision(ctx context.Context, d *appsv1.Deployment, revision string) (*appsv1.Deployment, error)
	UpdateStatus(ctx context.Context, d *appsv1.Deployment) (*appsv1.Deployment, error)
	// Warn records a Warning event on the Deployment.
	Warn(d *appsv1.Deployment, reason, message string)
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct {
	Client   kubernetes.Interface
	Recorder record.EventRecorder
}

var _ Writer = (*ClientWriter)(nil)

func (w *ClientWriter) GetDeployment(ctx context.Context, namespace, name string) (*appsv1.Deployment, error) {
	return w.Client.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (w *ClientWriter) GetReplicaSet(ctx context.Context, namespace, name string) (*appsv1.ReplicaSet, error) {
	return w.Client.AppsV1().ReplicaSets(namespace).Get(ctx, name, metav1.GetOptions{})
}

func (w *ClientWriter) CreateReplicaSet(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	created, err := w.Client.AppsV1().ReplicaSets(rs.Namespace).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	if n := rsReplicas(created); n > 0 {
		w.Recorder.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s from 0 to %d", created.Name, n)
	}
	return created, nil
}

func (w *ClientWriter) UpdateReplicaSet(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet, from, to int32) error {
	_, err := w.Client.AppsV1().ReplicaSets(rs.Namespace).Update(ctx, rs, metav1.UpdateOptions{})
	if err != nil {
		return err
	}
	switch {
	case to > from:
		w.Recorder.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled up replica set %s from %d to %d", rs.Name, from, to)
	case to < from:
		w.Recorder.Eventf(d, corev1.EventTypeNormal, "ScalingReplicaSet", "Scaled down replica set %s from %d to %d", rs.Name, from, to)
	}
	return nil
}

func (w *ClientWriter) DeleteReplicaSet(ctx context.Context, _ *appsv1.Deployment, rs *appsv1.ReplicaSet) error {
	err := w.Client.AppsV1().ReplicaSets(rs.Namespace).Delete(ctx, rs.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// patchOwners replaces the set's owner references, on the condition that
// it is still the set read (uid and resourceVersion).
func (w *ClientWriter) patchOwners(ctx context.Context, rs *appsv1.ReplicaSet, refs []metav1.OwnerReference) error {
	if refs == nil {
		refs = []metav1.OwnerReference{}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": refs, "uid": rs.UID, "resourceVersion": rs.ResourceVersion}})
	if err != nil {
		return err
	}
	_, err = w.Client.AppsV1().ReplicaSets(rs.Namespace).Patch(ctx, rs.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (w *ClientWriter) AdoptReplicaSet(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet) error {
	return w.patchOwners(ctx, rs, append(append([]metav1.OwnerReference(nil), rs.OwnerReferences...), ControllerRef(d)))
}

func (w *ClientWriter) ReleaseReplicaSet(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet) error {
	var refs []metav1.OwnerReference
	for _, r := range rs.OwnerReferences {
		if r.UID != d.UID {
			refs = append(refs, r)
		}
	}
	return w.patchOwners(ctx, rs, refs)
}

// SetRevision patches the annotation on the main resource: Kubernetes
// carries it in the status write, which Headway's status subresource
// (status only) would drop.
func (w *ClientWriter) SetRevision(ctx context.Context, d *appsv1.Deployment, revision string) (*appsv1.Deployment, error) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{RevisionAnnotation: revision}, "uid": d.UID}})
	if err != nil {
		return nil, err
	}
	out, err := w.Client.AppsV1().Deployments(d.Namespace).Patch(ctx, d.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("setting the revision of deployment %s: %w", d.Name, err)
	}
	return out, nil
}

func (w *ClientWriter) UpdateStatus(ctx context.Context, d *appsv1.Deployment) (*appsv1.Deployment, error) {
	return w.Client.AppsV1().Deployments(d.Namespace).UpdateStatus(ctx, d, metav1.UpdateOptions{})
}

func (w *ClientWriter) Warn(d *appsv1.Deployment, reason, message string) {
	w.Recorder.Event(d, corev1.EventTypeWarning, reason, message)
}
