package networkpolicy

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// Component is the Event source.
const Component = "headway-networkpolicy"

// Writer is the controller's side-effect seam.
type Writer interface {
	// Events are the policy's NotEnforced Events.
	Events(ctx context.Context, np *networkingv1.NetworkPolicy) ([]corev1.Event, error)
	// Notice records the NotEnforced Event of the policy.
	Notice(ctx context.Context, np *networkingv1.NetworkPolicy) error
}

// ClientWriter is the Writer on a Kubernetes client.
type ClientWriter struct {
	Client kubernetes.Interface
}

var _ Writer = (*ClientWriter)(nil)

func (w *ClientWriter) Events(ctx context.Context, np *networkingv1.NetworkPolicy) ([]corev1.Event, error) {
	sel := fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.uid", string(np.UID)), fields.OneTermEqualSelector("reason", Reason))
	list, err := w.Client.CoreV1().Events(np.Namespace).List(ctx, metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

func (w *ClientWriter) Notice(ctx context.Context, np *networkingv1.NetworkPolicy) error {
	now := metav1.Now()
	e := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", np.Name, now.UnixNano()), Namespace: np.Namespace},
		InvolvedObject: corev1.ObjectReference{
			Kind: "NetworkPolicy", APIVersion: networkingv1.SchemeGroupVersion.String(),
			Namespace: np.Namespace, Name: np.Name, UID: np.UID, ResourceVersion: np.ResourceVersion,
		},
		Reason: Reason, Message: Message, Type: corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: Component},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: Component, ReportingInstance: Component,
	}
	_, err := w.Client.CoreV1().Events(np.Namespace).Create(ctx, e, metav1.CreateOptions{})
	return err
}
