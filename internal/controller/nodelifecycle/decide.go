package nodelifecycle

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// The condition reasons and messages kube-controller-manager's node
// lifecycle controller writes.
const (
	ReasonNodeStatusUnknown      = "NodeStatusUnknown"
	MessageNodeStatusUnknown     = "Kubelet stopped posting node status."
	ReasonNodeStatusNeverUpdated = "NodeStatusNeverUpdated"
	MessageNeverUpdated          = "Kubelet never posted node status."
	// ReasonPodNodeNotReady marks the Ready condition of a pod this
	// controller set False, so that it can give it back when the node
	// returns (Headway's agent writes a pod's status only when its own view
	// changes, where the kubelet also reconciles the API's copy).
	ReasonPodNodeNotReady = "NodeNotReady"
)

// conditionsMarkedUnknown are the node conditions the agent posts and the
// controller turns Unknown when it stops posting.
var conditionsMarkedUnknown = []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure}

// Observed is what the controller knows of a node besides the object.
type Observed struct {
	// LastSeen is when the controller last saw the node's agent alive: its
	// Lease renewed or its status posted (the controller's own clock, not
	// the agent's), or when the controller first saw the node.
	LastSeen time.Time
	Now      time.Time
	// Grace is --node-monitor-grace-period.
	Grace time.Duration
}

// Unreachable is whether the node's agent has not been seen for longer
// than the grace period.
func (o Observed) Unreachable() bool { return o.Now.Sub(o.LastSeen) > o.Grace }

// NodeDecision is what to write to a node.
type NodeDecision struct {
	// Conditions, when not nil, are the node's new status conditions.
	Conditions []corev1.NodeCondition
	// Taints, when TaintsChanged, are the node's new spec.taints.
	Taints        []corev1.Taint
	TaintsChanged bool
	// Unreachable: the node's agent is gone; its pods are marked not
	// ready and evictions from it are forced.
	Unreachable bool
	// BecameUnreachable: this decision marks the node Unknown (the event
	// NodeNotReady is recorded once).
	BecameUnreachable bool
}

// DecideNode is the node health decision. A node whose agent has not been
// seen for the grace period gets its Ready (and pressure) conditions set
// Unknown. Its taints follow: unreachable (NoSchedule and NoExecute) while
// the agent is not seen, not-ready (both effects) while the agent reports
// Ready=False, none of the four otherwise — so a renewed Lease lifts the
// unreachable taints at once, even before the agent posts Ready again.
func DecideNode(node *corev1.Node, o Observed) NodeDecision {
	var d NodeDecision
	now := metav1.NewTime(o.Now)
	ready := readyStatus(node)
	if o.Unreachable() {
		d.Unreachable = true
		conds := append([]corev1.NodeCondition(nil), node.Status.Conditions...)
		changed := false
		if ready == "" {
			conds = append(conds, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown,
				Reason: ReasonNodeStatusNeverUpdated, Message: MessageNeverUpdated, LastHeartbeatTime: node.CreationTimestamp, LastTransitionTime: now})
			changed = true
		}
		for i := range conds {
			c := &conds[i]
			if !marked(c.Type) || c.Status == corev1.ConditionUnknown {
				continue
			}
			c.Status, c.Reason, c.Message, c.LastTransitionTime = corev1.ConditionUnknown, ReasonNodeStatusUnknown, MessageNodeStatusUnknown, now
			changed = true
		}
		if changed {
			d.Conditions = conds
			d.BecameUnreachable = ready != corev1.ConditionUnknown
		}
	}
	var want []corev1.Taint
	switch {
	case d.Unreachable:
		want = []corev1.Taint{{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule}, {Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}}
	case ready == corev1.ConditionFalse:
		want = []corev1.Taint{{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}, {Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute}}
	}
	d.Taints, d.TaintsChanged = reconcileTaints(node.Spec.Taints, want, now)
	return d
}

func marked(t corev1.NodeConditionType) bool {
	for _, m := range conditionsMarkedUnknown {
		if m == t {
			return true
		}
	}
	return false
}

func readyStatus(node *corev1.Node) corev1.ConditionStatus {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

// managed reports whether t is one of the four taints this controller owns.
func managed(t corev1.Taint) bool {
	return (t.Key == corev1.TaintNodeUnreachable || t.Key == corev1.TaintNodeNotReady) &&
		(t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute)
}

// reconcileTaints keeps every taint it does not own, keeps the owned ones
// wanted (with their timeAdded) and adds the missing ones, NoExecute ones
// stamped with now as kube's controller stamps them.
func reconcileTaints(have, want []corev1.Taint, now metav1.Time) ([]corev1.Taint, bool) {
	var out []corev1.Taint
	changed := false
	wanted := func(t corev1.Taint) bool {
		for _, w := range want {
			if w.Key == t.Key && w.Effect == t.Effect {
				return true
			}
		}
		return false
	}
	for _, t := range have {
		if managed(t) && !wanted(t) {
			changed = true
			continue
		}
		out = append(out, t)
	}
	for _, w := range want {
		found := false
		for _, t := range have {
			if t.Key == w.Key && t.Effect == w.Effect {
				found = true
			}
		}
		if !found {
			if w.Effect == corev1.TaintEffectNoExecute {
				w.TimeAdded = &now
			}
			out = append(out, w)
			changed = true
		}
	}
	return out, changed
}

// PodDecision is what to do with one pod of a node.
type PodDecision struct {
	// MarkNotReady: set the pod's Ready condition False (the node's agent
	// is gone and cannot say).
	MarkNotReady bool
	// RestoreReady: the node's agent is back and this controller's mark is
	// still on the pod: set Ready back to what the agent last said of the
	// containers (ContainersReady).
	RestoreReady bool
	// Delete the pod now; Force deletes it with grace period 0 (nobody
	// on the node will finish a graceful deletion).
	Delete, Force bool
	// After, when positive and nothing is deleted, is when to look again
	// (a toleration or a deletion grace period running out).
	After time.Duration
}

// DecidePod is taint-based eviction for a pod bound to a node with the
// given taints (kube's taint manager): a NoExecute taint the pod does not
// tolerate evicts it now; one it tolerates for tolerationSeconds evicts it
// that long after the taint was added; one tolerated without seconds
// never. On an unreachable node the pod is also marked not ready, the
// eviction is a forced deletion, and a pod already terminating there is
// force-deleted once its grace period is over.
func DecidePod(pod *corev1.Pod, taints []corev1.Taint, unreachable bool, now time.Time) PodDecision {
	var d PodDecision
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		if unreachable && pod.DeletionTimestamp != nil {
			d.Delete, d.Force = true, true
		}
		return d
	}
	if pod.DeletionTimestamp != nil {
		if !unreachable {
			return d
		}
		if left := pod.DeletionTimestamp.Sub(now); left > 0 {
			d.After = left
			return d
		}
		d.Delete, d.Force = true, true
		return d
	}
	if unreachable && podReady(pod) {
		d.MarkNotReady = true
	}
	if !unreachable && markedNotReady(pod) {
		d.RestoreReady = true
	}
	deadline, evict := evictionTime(pod, taints, now)
	switch {
	case !evict:
	case !deadline.After(now):
		d.Delete, d.Force = true, unreachable
	default:
		d.After = deadline.Sub(now)
	}
	return d
}

// evictionTime is when pod must leave a node with taints: the earliest,
// over the NoExecute taints, of when the toleration for it runs out;
// false when every such taint is tolerated for ever (or there is none).
func evictionTime(pod *corev1.Pod, taints []corev1.Taint, now time.Time) (time.Time, bool) {
	var earliest time.Time
	evict := false
	for i := range taints {
		t := &taints[i]
		if t.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		added := now
		if t.TimeAdded != nil {
			added = t.TimeAdded.Time
		}
		// The most patient toleration of this taint decides.
		tolerated, forever := false, false
		var longest time.Duration
		for _, tol := range pod.Spec.Tolerations {
			if !tol.ToleratesTaint(klog.Background(), t, false) {
				continue
			}
			tolerated = true
			if tol.TolerationSeconds == nil {
				forever = true
				break
			}
			if s := time.Duration(max(*tol.TolerationSeconds, 0)) * time.Second; s > longest {
				longest = s
			}
		}
		if forever {
			continue
		}
		at := now // not tolerated: at once
		if tolerated {
			at = added.Add(longest)
		}
		if !evict || at.Before(earliest) {
			earliest, evict = at, true
		}
	}
	return earliest, evict
}

// markedNotReady: the pod's Ready condition is this controller's False,
// its containers were ready by the agent's last word, and no readiness
// gate has a say.
func markedNotReady(pod *corev1.Pod) bool {
	var ready, containers bool
	for _, c := range pod.Status.Conditions {
		switch c.Type {
		case corev1.PodReady:
			ready = c.Status == corev1.ConditionFalse && c.Reason == ReasonPodNodeNotReady
		case corev1.ContainersReady:
			containers = c.Status == corev1.ConditionTrue
		}
	}
	return ready && containers && len(pod.Spec.ReadinessGates) == 0
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
