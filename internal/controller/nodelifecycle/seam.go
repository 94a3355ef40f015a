package nodelifecycle

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// Writer is the controller's side-effect seam: every change it makes to
// the cluster goes through here, with the events kube's controller records.
type Writer interface {
	// UpdateNodeStatus writes node's status and returns the node written.
	UpdateNodeStatus(ctx context.Context, node *corev1.Node) (*corev1.Node, error)
	// UpdateNode writes node (its taints) and returns the node written.
	UpdateNode(ctx context.Context, node *corev1.Node) (*corev1.Node, error)
	// NodeNotReady records that node's agent stopped renewing its Lease.
	NodeNotReady(node *corev1.Node)
	MarkPodNotReady(ctx context.Context, pod *corev1.Pod) error
	// RestorePodReady sets Ready back to True on a pod MarkPodNotReady
	// marked, once its node's agent is back.
	RestorePodReady(ctx context.Context, pod *corev1.Pod) error
	// DeletePod evicts pod; force deletes it with grace period 0.
	DeletePod(ctx context.Context, pod *corev1.Pod, force bool) error
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct {
	Client   kubernetes.Interface
	Recorder record.EventRecorder
}

var _ Writer = (*ClientWriter)(nil)

func (w *ClientWriter) UpdateNodeStatus(ctx context.Context, node *corev1.Node) (*corev1.Node, error) {
	n, err := w.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("marking node %s Unknown: %w", node.Name, err)
	}
	return n, nil
}

func (w *ClientWriter) UpdateNode(ctx context.Context, node *corev1.Node) (*corev1.Node, error) {
	n, err := w.Client.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("updating the taints of node %s: %w", node.Name, err)
	}
	return n, nil
}

func (w *ClientWriter) NodeNotReady(node *corev1.Node) {
	ref := &corev1.ObjectReference{Kind: "Node", Name: node.Name, UID: node.UID}
	w.Recorder.Eventf(ref, corev1.EventTypeNormal, "NodeNotReady", "Node %s status is now: NodeNotReady", node.Name)
}

// MarkPodNotReady sets the pod's Ready condition False, as kube's
// controller does for the pods of a node that stopped reporting (with the
// reason NodeNotReady, which RestorePodReady looks for).
func (w *ClientWriter) MarkPodNotReady(ctx context.Context, pod *corev1.Pod) error {
	if err := w.setReady(ctx, pod, corev1.ConditionFalse, ReasonPodNodeNotReady, "Node is not ready"); err != nil {
		return fmt.Errorf("marking pod %s/%s not ready: %w", pod.Namespace, pod.Name, err)
	}
	w.Recorder.Event(pod, corev1.EventTypeWarning, "NodeNotReady", "Node is not ready")
	return nil
}

func (w *ClientWriter) RestorePodReady(ctx context.Context, pod *corev1.Pod) error {
	if err := w.setReady(ctx, pod, corev1.ConditionTrue, "", ""); err != nil {
		return fmt.Errorf("marking pod %s/%s ready again: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}

func (w *ClientWriter) setReady(ctx context.Context, pod *corev1.Pod, status corev1.ConditionStatus, reason, msg string) error {
	p := pod.DeepCopy()
	for i := range p.Status.Conditions {
		c := &p.Status.Conditions[i]
		if c.Type == corev1.PodReady {
			c.Status, c.Reason, c.Message, c.LastTransitionTime = status, reason, msg, metav1.Now()
		}
	}
	_, err := w.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

func (w *ClientWriter) DeletePod(ctx context.Context, pod *corev1.Pod, force bool) error {
	uid := pod.UID
	opts := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
	if force {
		zero := int64(0)
		opts.GracePeriodSeconds = &zero
	}
	if pod.DeletionTimestamp == nil {
		w.Recorder.Eventf(pod, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s/%s", pod.Namespace, pod.Name)
	}
	err := w.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, opts)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("evicting pod %s/%s from node %s: %w", pod.Namespace, pod.Name, pod.Spec.NodeName, err)
	}
	return nil
}
