package dns

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// eventKind says which object an event is about.
type eventKind uint8

const (
	evService eventKind = iota
	evSlice
	evNamespace
	evPod
	evSynced
)

// event is one informer notification. Obj is what the informer returned and
// is never modified; for deletions only Namespace and Name matter.
type event struct {
	kind      eventKind
	deleted   bool
	namespace string
	name      string
	svc       *corev1.Service
	slice     *discoveryv1.EndpointSlice
	pod       *corev1.Pod
	at        time.Time // when the change was made (trigger time) or received
}
