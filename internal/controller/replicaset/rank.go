package replicaset

import (
	"math"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// DeletionCostAnnotation lets users say which pods of a set go first on
// scale-down (lower cost first); an integer.
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// phaseOrder puts pods that are earlier in their life first.
var phaseOrder = map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}

func readyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// IsReady reports whether the pod's Ready condition is True.
func IsReady(p *corev1.Pod) bool {
	c := readyCondition(p)
	return c != nil && c.Status == corev1.ConditionTrue
}

// IsAvailable reports whether the pod has been Ready for minReadySeconds.
func IsAvailable(p *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	c := readyCondition(p)
	if c == nil || c.Status != corev1.ConditionTrue {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	min := time.Duration(minReadySeconds) * time.Second
	return !c.LastTransitionTime.IsZero() && c.LastTransitionTime.Add(min).Before(now)
}

// IsActive reports whether the pod counts towards a set: not finished and
// not being deleted.
func IsActive(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && p.DeletionTimestamp == nil
}

func deletionCost(p *corev1.Pod) int32 {
	v, ok := p.Annotations[DeletionCostAnnotation]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil {
		return 0
	}
	return int32(n)
}

// restarts returns the highest restart count of the pod's regular
// containers and of its sidecars (restartable init containers).
func restarts(p *corev1.Pod) (regular, sidecar int32) {
	for _, s := range p.Status.ContainerStatuses {
		regular = max(regular, s.RestartCount)
	}
	sidecars := map[string]bool{}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars[c.Name] = true
		}
	}
	for _, s := range p.Status.InitContainerStatuses {
		if sidecars[s.Name] {
			sidecar = max(sidecar, s.RestartCount)
		}
	}
	return regular, sidecar
}

// logRank buckets how long ago t was by powers of two (nanoseconds), so
// pods of about the same age compare equal and the choice among them is
// spread (by UID) rather than always the newest.
func logRank(t, now time.Time) int64 {
	d := now.Sub(t)
	if d <= 0 {
		return -1
	}
	return int64(math.Log2(float64(d)))
}

// zeroOrLater orders a zero time first, then later times first.
func zeroOrLater(a, b time.Time) bool {
	if a.IsZero() || b.IsZero() {
		return a.IsZero()
	}
	return a.After(b)
}

// byAge compares two times as scale-down does: a zero time first, then by
// logarithmic age bucket (younger first), ties broken by UID.
func byAge(a, b time.Time, ua, ub string, now time.Time) (less, decided bool) {
	if a.Equal(b) {
		return false, false
	}
	if now.IsZero() || a.IsZero() || b.IsZero() {
		return zeroOrLater(a, b), true
	}
	if d := logRank(a, now) - logRank(b, now); d != 0 {
		return d < 0, true
	}
	return ua < ub, true
}

// deletionLess reports whether pod a should be deleted before pod b. The
// order is Kubernetes': unscheduled before scheduled; Pending before
// Unknown before Running; not ready before ready; lower deletion cost;
// more pods of the same owner on its node (rank) first; ready for less time;
// more restarts; created more recently.
func deletionLess(a, b *corev1.Pod, rankA, rankB int, now time.Time) bool {
	if a.Spec.NodeName != b.Spec.NodeName && (a.Spec.NodeName == "" || b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	if pa, pb := phaseOrder[a.Status.Phase], phaseOrder[b.Status.Phase]; pa != pb {
		return pa < pb
	}
	if ra, rb := IsReady(a), IsReady(b); ra != rb {
		return !ra
	}
	if ca, cb := deletionCost(a), deletionCost(b); ca != cb {
		return ca < cb
	}
	if rankA != rankB {
		return rankA > rankB
	}
	if IsReady(a) && IsReady(b) {
		ta, tb := readyCondition(a).LastTransitionTime.Time, readyCondition(b).LastTransitionTime.Time
		if less, ok := byAge(ta, tb, string(a.UID), string(b.UID), now); ok {
			return less
		}
	}
	ra, sa := restarts(a)
	rb, sb := restarts(b)
	if ra != rb {
		return ra > rb
	}
	if sa != sb {
		return sa > sb
	}
	if less, ok := byAge(a.CreationTimestamp.Time, b.CreationTimestamp.Time, string(a.UID), string(b.UID), now); ok {
		return less
	}
	return false
}

// PodsToDelete picks n of pods to delete, the first to go first. related
// are the active pods of the set and of its siblings (the other sets of the
// same owner): a pod sharing its node with more of them goes first.
func PodsToDelete(pods, related []*corev1.Pod, n int, now time.Time) []*corev1.Pod {
	if n <= 0 {
		return nil
	}
	out := append([]*corev1.Pod(nil), pods...)
	if n >= len(out) {
		return out
	}
	onNode := map[string]int{}
	for _, p := range related {
		if IsActive(p) {
			onNode[p.Spec.NodeName]++
		}
	}
	rank := map[*corev1.Pod]int{}
	for _, p := range out {
		rank[p] = onNode[p.Spec.NodeName]
	}
	sort.SliceStable(out, func(i, j int) bool { return deletionLess(out[i], out[j], rank[out[i]], rank[out[j]], now) })
	return out[:n]
}
