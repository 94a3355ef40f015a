package dns

import "time"

// eventKind says which object an event is about.
type eventKind uint8

const (
	evService eventKind = iota
	evSlice
	evNamespace
	evPod
	evSynced
)

// event is one informer notification: the object's records as the
// informer cached them (never modified); for deletions only namespace and
// name matter.
type event struct {
	kind      eventKind
	deleted   bool
	namespace string
	name      string
	svc       *svcInfo
	slice     *sliceInfo
	pod       *podInfo  // nil: no addresses, or being deleted
	at        time.Time // when the change was made (trigger time) or received
}
